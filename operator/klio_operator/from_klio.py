"""KlioJob manifests made from Klio job directories (`klio-operator manifest`).

A Klio job deployed itself (`klio job deploy`) and found its place in the DAG through topics: a
child reads the topic its parent writes. Here a KlioJob is the job, and it names its parents; the
operator makes the topics. So the jobs of one DAG are converted together: an event input that
another of the jobs writes becomes a parent, and what a job wrote that the operator now decides
(its output topic, event files) is said in a warning rather than dropped silently.

Pure: parsed configs in, manifests and warnings out; :mod:`klio_operator.klio_job_dirs` reads the
files.
"""

from __future__ import annotations

import fnmatch
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from klio_runtime.config import (
    DATAFLOW_DEFAULT_REGION,
    FileEventInput,
    FileEventOutput,
    JobConfig,
    KlioConfig,
    KlioRunner,
    PubSubEventInput,
    PubSubEventOutput,
    format_validation_errors,
    version_1_layout,
)
from klio_runtime.io.pubsub import resource_path
from klio_runtime.submission import tagged_image, untagged_image
from klio_runtime.worker.settings import DEAD_LETTER_KEY
from pydantic import ValidationError

from klio_operator import dag
from klio_operator.from_klio_kubernetes import kubernetes_settings
from klio_operator.models import (
    API_VERSION,
    KIND,
    EventInput,
    FieldErrors,
    KlioJobSpec,
    Runner,
    SpecError,
    is_dns1123_label,
    parse_spec,
    runner_of_option,
)
from klio_operator.planning import child_name_problem

# job_config keys a KlioJob says in its own fields; every other key goes to spec.config as it is
_SPEC_FIELDS = frozenset(
    {"events", "data", "allow_non_klio_messages", "thread_pool_size", "timeout_seconds", "retries"}
)
# pipeline options a KlioJob says in spec.runner and spec.mode (it refuses options saying else)
_SPEC_OPTIONS = frozenset({"runner", "streaming"})
# where a Klio config names the job's image (Beam's older name first, as Klio writes it)
_IMAGE_OPTIONS = ("worker_harness_container_image", "sdk_container_image")
_SHARD = "-00000-of-00001"  # Beam's name of a one-shard file a file event output writes
# spec paths whose errors are the config's own keys' (each is the same option under two names)
_CONFIG_PATHS = (("spec.pipelineOptions.", "pipeline_options."),)


class ConversionError(FieldErrors):
    """Configs that make no valid KlioJob; `errors` are `<job dir>: <field>: <why>` lines."""


@dataclass(frozen=True)
class KlioJobDir:
    """One Klio job to convert: `where` names it in messages; `config` is as written (its
    relative locations hold in the job's image, whose working directory is the job's);
    `directory`, absolute, is what they are relative to when one job's event files are matched
    against another's."""

    where: str
    directory: str
    config: KlioConfig
    kubernetes: tuple[tuple[str, Any], ...] = ()
    """The documents of its ``kubernetes/*.yaml`` (Klio's DirectGKERunner), with their files."""


@dataclass
class Conversion:
    manifests: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConversionChoices:
    """What the command line chooses for every job (`image` and `name` only with one job)."""

    runner: Runner = "direct"
    image: str | None = None
    image_tag: str | None = None
    name: str | None = None
    namespace: str | None = None


def kliojob_manifests(
    jobs: Sequence[KlioJobDir], choices: ConversionChoices = ConversionChoices()
) -> Conversion:
    """The KlioJob of each job, its parents found among `jobs` (see the module's docstring).

    Raises ConversionError listing every job's problems, by field.
    """
    if len(jobs) > 1 and (choices.image or choices.name):
        raise ConversionError(["--image and --name name one job's; give one job directory"])
    names = [choices.name or job.config.job_name for job in jobs]
    errors = [
        f"job_name: '{name}' is the name of several jobs given: "
        + ", ".join(job.where for job, n in zip(jobs, names, strict=True) if n == name)
        for name in sorted({n for n in names if names.count(n) > 1})
    ]
    if choices.namespace and not is_dns1123_label(choices.namespace):
        errors.append(f"--namespace: {choices.namespace!r} is not a namespace name")
    feeders = [_feeders(index, jobs) for index in range(len(jobs))]
    parents_of = {
        names[index]: [names[writer] for writer, _ in found.values()]
        for index, found in enumerate(feeders)
    }
    for name in dict.fromkeys(names):
        cycle = dag.find_cycle(name, parents_of)
        if cycle and cycle[0] == name:
            errors.append(
                f"job_name: '{name}' reads what it writes, through {dag.format_cycle(cycle)}:"
                " KlioJobs form a DAG (the operator blocks a cycle)"
            )
    outcome = Conversion()
    for index, job in enumerate(jobs):
        parents = list(dict.fromkeys(names[writer] for writer, _ in feeders[index].values()))
        try:
            spec, warnings, namespace = _spec(job, set(feeders[index]), parents, choices)
            manifest = _manifest(names[index], choices.namespace or namespace, choices, spec)
        except ConversionError as err:
            errors += [f"{job.where}: {line}" for line in err.errors]
            continue
        outcome.manifests.append(manifest)
        outcome.warnings += [f"{job.where}: {line}" for line in warnings]
    read = {edge for found in feeders for edge in found.values()}
    for index, job in enumerate(jobs):
        outcome.warnings += [
            f"{job.where}: {line}" for line in _outputs_not_kept(job.config, index, read)
        ]
    if errors:
        raise ConversionError(errors)
    return outcome


def _feeders(index: int, jobs: Sequence[KlioJobDir]) -> dict[int, tuple[int, int]]:
    """Which of the job's event inputs another job writes: input index → (job index, output
    index). A topic matches the topic written; a file input matches the file output it names, or
    the shards that output writes."""
    found: dict[int, tuple[int, int]] = {}
    reader = jobs[index]
    for in_index, inp in enumerate(reader.config.job_config.events.inputs):
        for other_index, writer in enumerate(jobs):
            if other_index == index:
                continue
            for out_index, out in enumerate(writer.config.job_config.events.outputs):
                if _feeds(writer, out, reader, inp):
                    found.setdefault(in_index, (other_index, out_index))
    return found


def _feeds(writer: KlioJobDir, out: Any, reader: KlioJobDir, inp: Any) -> bool:
    if isinstance(out, PubSubEventOutput) and isinstance(inp, PubSubEventInput):
        return inp.topic is not None and _topic(inp.topic, reader.config) == _topic(
            out.topic, writer.config
        )
    if isinstance(out, FileEventOutput) and isinstance(inp, FileEventInput):
        written = _local(writer.directory, out.location)
        pattern = _local(reader.directory, inp.location)
        return pattern == written or fnmatch.fnmatchcase(written + _SHARD, pattern)
    return False


def _local(directory: str, location: str) -> str:
    """A location as one name: a relative local path joined to the job's directory."""
    if "://" in location or posixpath.isabs(location):
        return location
    return posixpath.normpath(posixpath.join(directory, location))


def _topic(topic: str, config: KlioConfig) -> str:
    """The topic's full path (a bare id is in the job's project); as written when it has none."""
    try:
        return resource_path(topic, "topics", config.pipeline_options.project)
    except ValueError:
        return topic


def _manifest(
    name: str, namespace: str | None, choices: ConversionChoices, spec: dict[str, Any]
) -> dict[str, Any]:
    """The KlioJob, validated as the operator validates it: what is printed can be applied."""
    try:
        model: KlioJobSpec = parse_spec(spec)
    except SpecError as err:
        raise ConversionError([_config_path(line) for line in err.errors]) from err
    problem = child_name_problem(name, model)
    if problem:
        given = "--name" if choices.name else "job_name"
        raise ConversionError([f"{given}: {problem} (--name gives the KlioJob another name)"])
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    wire = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if model.event_inputs:  # each says its type, though pubsub is the default
        wire["eventInputs"] = [event_input.to_wire() for event_input in model.event_inputs]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": wire}


def _config_path(error: str) -> str:
    """A KlioJob spec error as the config's key says it where the two are the same option."""
    for spec_path, config_path in _CONFIG_PATHS:
        if error.startswith(spec_path):
            return config_path + error[len(spec_path) :]
    return f"the KlioJob's {error}"


def _spec(
    job: KlioJobDir, fed: set[int], parents: list[str], choices: ConversionChoices
) -> tuple[dict[str, Any], list[str], str | None]:
    """The KlioJob spec of one job (snake_case, not yet validated), what it leaves out, and the
    namespace its Kubernetes objects name; `fed`: the event inputs another job given writes,
    which `parents` replace."""
    config = job.config
    options = config.pipeline_options
    job_config = config.job_config
    warnings: list[str] = []
    errors: list[str] = []
    old_layout = version_1_layout(config)
    if old_layout:
        # a KlioJob made of it would have no inputs at all
        raise ConversionError(
            [
                f"{path}: version 1's layout; a KlioJob is made of version 2's"
                " job_config.events and job_config.data (Klio's migration guide)"
                for path in old_layout
            ]
        )
    event_inputs: list[dict[str, Any]] = []
    for index, inp in enumerate(job_config.events.inputs):
        path = f"job_config.events.inputs[{index}]"
        if index in fed:
            if isinstance(inp, PubSubEventInput) and inp.subscription:
                warnings.append(
                    f"{path}.subscription: {inp.subscription} is not read: the operator"
                    " subscribes the KlioJob to its parent's topic (a backlog left there stays)"
                )
            continue
        if isinstance(inp, PubSubEventInput) and not inp.topic:
            warnings.append(
                f"{path}: a subscription without its topic: if another job writes that topic,"
                " name it here (topic:) so that converting both makes that job a parent"
            )
        if getattr(inp, "skip_klio_read", False):
            warnings.append(
                f"{path}.skip_klio_read: not kept: the workers read the KlioJob's inputs themselves"
            )
        if isinstance(inp, PubSubEventInput):
            entry = {"type": "pubsub", "topic": inp.topic, "subscription": inp.subscription}
        elif isinstance(inp, FileEventInput):
            entry = {"type": "file", "location": inp.location}
        else:
            errors.append(
                f"{path}.type: {inp.type} is not a KlioJob's event input (pubsub or file)"
            )
            continue
        entry = {key: value for key, value in entry.items() if value is not None}
        try:
            EventInput.model_validate(entry)
        except ValidationError as err:
            errors += format_validation_errors(err, prefix=path)
            continue
        event_inputs.append(entry)
    objects = kubernetes_settings(job.kubernetes, keeps_workers=choices.runner == "direct")
    warnings += objects.warnings
    errors += objects.errors
    if objects.namespace_error and not choices.namespace:
        errors.append(objects.namespace_error)
    image = _image(config, choices, objects.image, warnings, errors)
    spec: dict[str, Any] = {
        "image": image,
        "mode": "streaming" if options.streaming else "batch",
        "runner": choices.runner,
        "parents": parents,
        "event_inputs": event_inputs,
        "data_inputs": _data(config, "inputs", "ping", warnings, errors),
        "data_outputs": _data(config, "outputs", "force", warnings, errors),
        "retries": job_config.retries,
        "allow_non_klio_messages": job_config.allow_non_klio_messages,
        "pipeline_options": _pipeline_options(config, choices.runner, image, warnings),
        "config": _custom_keys(job_config, warnings),
    }
    if not spec["data_inputs"] and not parents:
        del spec["data_inputs"]  # a root job: no parents' outputs to default to
    if job_config.thread_pool_size is not None:
        spec["thread_pool_size"] = job_config.thread_pool_size
    if job_config.timeout_seconds is not None:
        spec["timeout_seconds"] = math.ceil(job_config.timeout_seconds)
        if spec["timeout_seconds"] != job_config.timeout_seconds:
            warnings.append(
                f"job_config.timeout_seconds: {job_config.timeout_seconds} becomes"
                f" {spec['timeout_seconds']} (a KlioJob counts whole seconds)"
            )
    spec.update(_workers(config, choices.runner, warnings))
    spec.update(_on_the_cluster(objects.spec, config, choices.runner))
    if errors:
        raise ConversionError(errors)
    return spec, warnings, objects.namespace


def _on_the_cluster(objects: dict[str, Any], config: KlioConfig, runner: Runner) -> dict[str, Any]:
    """What the job's Kubernetes objects said (it wins over Dataflow's worker counts), and one
    element at a time per pod, as Klio's GKE runner ran a job that sets no thread pool."""
    out = dict(objects)
    on_gke = config.pipeline_options.runner == KlioRunner.DIRECT_GKE_RUNNER
    if runner == "direct" and on_gke and config.job_config.thread_pool_size is None:
        out["thread_pool_size"] = 1
    return out


def _image(
    config: KlioConfig,
    choices: ConversionChoices,
    deployed: str | None,
    warnings: list[str],
    errors: list[str],
) -> str:
    """The job's image: --image, else the config's (as Klio builds it), else its Deployment's."""
    options = config.pipeline_options
    image = choices.image or options.worker_harness_container_image
    if not image:
        extra = options.model_extra or {}
        image = extra.get(_IMAGE_OPTIONS[1])
    if (
        image
        and deployed
        and not choices.image
        and untagged_image(deployed) != untagged_image(str(image))
    ):
        warnings.append(
            f"pipeline_options.worker_harness_container_image: {image} is the image, not the"
            f" Deployment's {deployed} (Klio warned of the same mismatch)"
        )
    image = image or deployed
    if not image:
        errors.append(
            "pipeline_options.worker_harness_container_image: not set, and a KlioJob needs the"
            " job's image (set it, or give --image)"
        )
        return ""
    return tagged_image(str(image), choices.image_tag) if choices.image_tag else str(image)


def _data(
    config: KlioConfig, direction: str, flag: str, warnings: list[str], errors: list[str]
) -> list[dict[str, Any]]:
    entries = []
    for index, entry in enumerate(getattr(config.job_config.data, direction)):
        path = f"job_config.data.{direction}[{index}]"
        if not entry.location:
            errors.append(f"{path}.location: not set, and a KlioJob's data needs one")
            continue
        if not entry.location.startswith("gs://"):
            warnings.append(
                f"{path}.location: {entry.location!r} is kept, but it is a path inside each"
                " worker's container, whose filesystem is read-only but for /tmp: data the"
                " workers share belongs on gs://"
            )
        entries.append(
            {
                "location": entry.location,
                "file_suffix": entry.file_suffix,
                "skip_klio_existence_check": entry.skip_klio_existence_check,
                flag: getattr(entry, flag),
            }
        )
    return entries


def _pipeline_options(
    config: KlioConfig, runner: Runner, image: str, warnings: list[str]
) -> dict[str, Any]:
    options = config.pipeline_options
    written = options.model_dump(mode="json", exclude_unset=True, exclude=set(_SPEC_OPTIONS))
    engine = runner_of_option(options.runner)
    if engine and engine != "direct" and engine != runner:
        warnings.append(
            f"pipeline_options.runner: {options.runner} is not kept: this KlioJob runs its"
            f" workers on the cluster (spec.runner {runner}); --runner {engine} submits the"
            f" pipeline to {engine.title()} instead"
        )
    for key in _IMAGE_OPTIONS:
        if key in written:
            if runner == "direct":
                del written[key]  # spec.image: the workers' own pods run it
            elif image:
                written[key] = image  # the engine's workers run the image, tagged as asked
    if runner == "dataflow" and image and not any(key in written for key in _IMAGE_OPTIONS):
        written[_IMAGE_OPTIONS[0]] = image  # else Dataflow's workers lack the job's code
    if runner == "dataflow" and not written.get("region"):
        written["region"] = DATAFLOW_DEFAULT_REGION  # what Klio submits to when none is given
    return written


def _custom_keys(job_config: JobConfig, warnings: list[str]) -> dict[str, Any]:
    """The job's own keys, and Klio's settings a KlioJob has no field for, as written; not the
    dead-letter topic, which the operator makes for each KlioJob."""
    dumped = job_config.model_dump(mode="json", exclude_unset=True)
    dead_letter = dumped.pop(DEAD_LETTER_KEY, None)
    if dead_letter is not None:
        warnings.append(
            f"job_config.{DEAD_LETTER_KEY}: {dead_letter} is not kept: a KlioJob's workers"
            " dead-letter to the topic the operator makes for it (klio.<namespace>.<name>"
            ".dead-letter, in the job's project)"
        )
    return {key: value for key, value in dumped.items() if key not in _SPEC_FIELDS}


def _workers(config: KlioConfig, runner: Runner, warnings: list[str]) -> dict[str, Any]:
    """Dataflow's worker counts, as the cluster's: `num_workers` workers, and for a streaming
    job with Dataflow's autoscaling, up to `max_num_workers`. A job submitted to an engine keeps
    them as options."""
    options = config.pipeline_options
    if runner != "direct" or options.runner == KlioRunner.DIRECT_GKE_RUNNER:
        return {}  # the engine scales its workers; under Klio's GKE runner, the Deployment did
    out: dict[str, Any] = {}
    if options.num_workers is not None:
        out["replicas"] = options.num_workers
    most = options.max_num_workers
    if options.autoscaling_algorithm != "THROUGHPUT_BASED" or not most:
        return out
    if not options.streaming:
        warnings.append(
            f"pipeline_options.max_num_workers: {most} is not kept: a batch KlioJob runs"
            " `replicas` workers (num_workers)"
        )
        return out
    least = options.num_workers or 1
    if least > most:
        warnings.append(
            f"pipeline_options.num_workers: {least} is above max_num_workers ({most}): the"
            f" KlioJob scales between {most} and {most}"
        )
    out["autoscaling"] = {"min_replicas": min(least, most), "max_replicas": most}
    return out


def _outputs_not_kept(config: KlioConfig, index: int, consumed: set[tuple[int, int]]) -> list[str]:
    """A warning for each event output no other job given reads: the operator decides where a
    KlioJob's output messages go (its own topic, which children name it to read)."""
    lines = []
    for out_index, out in enumerate(config.job_config.events.outputs):
        if out.skip_klio_write:
            lines.append(
                f"job_config.events.outputs[{out_index}].skip_klio_write: not kept: the workers"
                " publish the KlioJob's output messages themselves"
            )
        if (index, out_index) in consumed:
            continue
        where = getattr(out, "topic", None) or getattr(out, "location", None) or out.type
        lines.append(
            f"job_config.events.outputs[{out_index}]: {where} is not written: a KlioJob's"
            " output messages go to the topic the operator makes for it, which a child KlioJob"
            " reads by naming this job in spec.parents (`klio-operator manifest` with one -j"
            " per job of a DAG wires them; a child that names only a subscription is not"
            " matched)"
        )
    return lines
