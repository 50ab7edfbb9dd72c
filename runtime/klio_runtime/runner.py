"""Run a job directory: load config and ``run.py``, map the runner, run, summarize.

Batch runs use Beam's in-process FnApiRunner when the config says ``DirectRunner`` (or Klio's
``DirectGKERunner``, or nothing): Beam 2.77's ``DirectRunner`` would first try to download Prism.
Any other runner and every other pipeline option pass through to Beam unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from klio_runtime.config import (
    CONFIG_FILE_NAME,
    RUN_FUNCTION_NAMES,
    AvroEventInput,
    AvroEventOutput,
    FileEventInput,
    FileEventOutput,
    KlioConfig,
    KlioRunner,
    config_path_of,
    dump_config,
    load_config,
)
from klio_runtime.context import JOB_CONFIG_FILE_ENV
from klio_runtime.io.gcs import ensure_emulator_credentials
from klio_runtime.io.pubsub_events import has_pubsub_input
from klio_runtime.metrics import process_hub
from klio_runtime.pipeline import RunFn, build_pipeline
from klio_runtime.submission import submission_options

GKE_RUNNER = KlioRunner.DIRECT_GKE_RUNNER.value
"""Klio's runner that deploys the job to GKE; a KlioJob does that here."""
LOCAL_RUNNERS = {None, "", KlioRunner.DIRECT_RUNNER.value, GKE_RUNNER, "FnApiRunner"}
"""Runner names that run a job here: on FnApiRunner (batch) or the streaming worker (Pub/Sub)."""
BATCH_RUNNER = "FnApiRunner"
IN_PROCESS_RUNNERS = {BATCH_RUNNER, "BundleBasedDirectRunner", "SwitchingDirectRunner"}
"""Beam runners that run the pipeline in this process: ``klio job run`` waits for them."""
NOTHING_TO_UPDATE = "No running job found with name"
"""Beam's DataflowRunner error for ``update`` with no running job of that name."""


class JobLoadError(RuntimeError):
    """The job directory cannot be run (no run.py, no ``run`` function, import error)."""


def beam_options(
    config: KlioConfig,
    runner: str | None = None,
    extra: Mapping[str, Any] | None = None,
    image_tag: str | None = None,
    inputs_from_file: bool = False,
) -> PipelineOptions:
    """Beam options from ``pipeline_options`` (+ ``extra``); local runners → FnApiRunner (batch);
    a pipeline submitted elsewhere gets Klio's submission rules
    (:func:`klio_runtime.submission.submission_options`, ``image_tag`` included).
    ``inputs_from_file``: every event input reads a file instead (a profiled run), so none
    streams.

    Raises:
        ValueError: Pub/Sub inputs with a local runner (they stream: the worker runs them).
        klio_runtime.config.ConfigError: packaging options Klio refuses, naming the field.
    """
    values = dict(config.pipeline_options.as_dict())
    # Klio's: Dataflow names (and updates) the job so. Unlike Klio, pipeline_options.job_name
    # may say otherwise: the operator keeps two namespaces' jobs of one name apart with it.
    values.setdefault("job_name", config.job_name)
    values.update(extra or {})
    chosen = runner if runner is not None else values.get("runner")
    values["runner"] = BATCH_RUNNER if chosen in LOCAL_RUNNERS else chosen
    streams = has_pubsub_input(config) and not inputs_from_file
    if values["runner"] == BATCH_RUNNER:
        if streams:
            raise ValueError(
                "job_config.events.inputs: Pub/Sub inputs stream, which the in-process batch "
                "runner cannot: run the local streaming worker (`klio job run` or `klio worker`) "
                "or name a streaming Beam runner (DataflowRunner, FlinkRunner, "
                "BundleBasedDirectRunner)"
            )
        values["streaming"] = False
    else:
        if streams:
            values["streaming"] = True  # a Pub/Sub source is unbounded: Beam needs streaming mode
        values = submission_options(values, image_tag)
    values = {k: v for k, v in values.items() if v is not None}
    legacy_image = values.pop("worker_harness_container_image", None)
    if legacy_image is not None:  # Klio's name: Beam takes it too, with a warning every run
        values.setdefault("sdk_container_image", legacy_image)
    if values.get("streaming") is False:
        values.pop("streaming")
    return PipelineOptions.from_dictionary(values)


def resolve_paths(config: KlioConfig, job_dir: Path) -> KlioConfig:
    """A copy whose relative local locations are relative to ``job_dir`` (as Klio's are). Run in
    the job's directory, as Klio runs a job, they already are: they stay as written, so job code
    and log lines show them as in Klio (``'./klio-quick-start_input_elements.txt'``)."""
    if job_dir.resolve() == Path.cwd().resolve():
        return config
    out = config.model_copy(deep=True)

    def fix(location: str) -> str:
        if "://" in location or os.path.isabs(location):
            return location
        return str((job_dir / location).resolve()) if location not in ("", ".") else str(job_dir)

    for inp in out.job_config.events.inputs:
        if isinstance(inp, FileEventInput):
            inp.location = fix(inp.location)
        elif isinstance(inp, AvroEventInput):  # the location, or the pattern alone
            if inp.location:
                inp.location = fix(inp.location)
            elif inp.file_pattern:
                inp.file_pattern = fix(inp.file_pattern)
    for outp in out.job_config.events.outputs:
        if isinstance(outp, FileEventOutput):
            outp.location = fix(outp.location)
        elif isinstance(outp, AvroEventOutput):
            if outp.location:
                outp.location = fix(outp.location)
            elif outp.file_path_prefix:
                outp.file_path_prefix = fix(outp.file_path_prefix)
    for data in [*out.job_config.data.inputs, *out.job_config.data.outputs]:
        if data.type == "file" and data.location is not None:
            data.location = fix(data.location)
    dead = getattr(out.job_config, "dead_letter_location", None)
    if dead:
        setattr(out.job_config, "dead_letter_location", fix(str(dead)))  # noqa: B010
    options = out.pipeline_options
    if options.setup_file:
        options.setup_file = fix(options.setup_file)
    if options.requirements_file:
        options.requirements_file = fix(options.requirements_file)
    return out


def load_run_function(job_dir: Path) -> RunFn:
    """``run`` (or Klio's ``run_basic``) from ``<job_dir>/run.py``, importable siblings
    (``import transforms``) included."""
    run_py = job_dir / "run.py"
    if not run_py.is_file():
        raise JobLoadError(f"{run_py}: no such file (a Klio job needs run.py defining run)")
    job_dir_s, parent_s = str(job_dir.resolve()), str(job_dir.resolve().parent)
    for path in (parent_s, job_dir_s):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    forget_other_jobs_modules(job_dir_s)
    spec = importlib.util.spec_from_file_location("run", run_py)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules["run"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise JobLoadError(f"{run_py}: import failed: {type(err).__name__}: {err}") from err
    for name in RUN_FUNCTION_NAMES:
        run_fn = getattr(module, name, None)
        if callable(run_fn):
            return run_fn
    raise JobLoadError(f"{run_py}: defines no function `run(pcoll, config)`")


def forget_other_jobs_modules(job_dir: str | None) -> None:
    """Drop cached ``run``/``transforms`` modules that are not this job directory's (None: every
    job's, so that the next import runs the job's decorators again)."""
    # Jobs name their modules alike (run, transforms); another job's cached copy must not win.
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name.split(".")[0] in ("run", "transforms") and (
            job_dir is None or not file.startswith(job_dir)
        ):
            del sys.modules[name]


@dataclass
class JobSummary:
    """What a run did, from the job's Beam metrics."""

    received: int = 0
    processed: int | None = 0
    """Messages sent to ``run``; None when not counted (the streaming worker's summary)."""
    output: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_ids: dict[str, list[str]] = field(default_factory=dict)
    dead_letter: dict[str, int] = field(default_factory=dict)
    dead_letter_ids: dict[str, list[str]] = field(default_factory=dict)
    state: str = ""
    submitted: bool = False
    """Handed to a runner elsewhere (Dataflow, Flink) and not waited for: no counts."""


def _label(name: str) -> tuple[str, str | None]:
    if "[reason=" in name:
        base, _, rest = name.partition("[reason=")
        return base, rest.rstrip("]")
    return name, None


def summarize(result: PipelineResult, job_name: str) -> JobSummary:
    metrics = result.metrics().query(MetricsFilter().with_namespace(job_name))
    summary = JobSummary(state=str(result.state))
    buckets: dict[str, dict[str, int]] = {
        "klio_messages_skipped": summary.skipped,
        "klio_messages_dropped": summary.dropped,
        "klio_dead_letter": summary.dead_letter,
    }
    processed = 0
    for counter in metrics.get("counters", []):
        base, reason = _label(counter.key.metric.name)
        value = int(counter.committed or 0)
        if base == "klio_messages_received":
            summary.received += value
        elif base == "klio_messages_to_run":
            processed += value
        elif base == "klio_messages_output":
            summary.output += value
        elif base in buckets and reason:
            buckets[base][reason] = buckets[base].get(reason, 0) + value
    ids: dict[str, dict[str, set[str]]] = {
        "dropped_ids": defaultdict(set),
        "dead_letter_ids": defaultdict(set),
    }
    for string_set in metrics.get("string_sets", []):
        base, reason = _label(string_set.key.metric.name)
        if base in ids and reason:
            ids[base][reason].update(string_set.committed or ())
    summary.processed = processed
    summary.dropped_ids = {k: sorted(v) for k, v in ids["dropped_ids"].items()}
    summary.dead_letter_ids = {k: sorted(v) for k, v in ids["dead_letter_ids"].items()}
    return summary


def streaming_summary(
    job_name: str, since: Mapping[str, float] | None = None, processed: int | None = None
) -> JobSummary:
    """What the streaming worker did, from this process's prometheus registry (counted since
    ``since``, a :func:`hub_counts` snapshot), and ``processed``, the messages its router sent
    to ``run`` (None: not known). Element ids are not kept there."""
    now = hub_counts(job_name)
    before = since or {}
    summary = JobSummary(processed=processed, state="DRAINED")
    buckets = {
        "klio_messages_skipped_total": summary.skipped,
        "klio_messages_dropped_total": summary.dropped,
        "klio_dead_letter_total": summary.dead_letter,
    }
    for key, value in now.items():
        count = int(value - before.get(key, 0.0))
        name, _, reason = key.partition("|")
        if name == "klio_messages_received_total":
            summary.received = count
        elif name == "klio_messages_output_total":
            summary.output = count
        elif name in buckets and count:
            buckets[name][reason] = count
    return summary


def hub_counts(job_name: str) -> dict[str, float]:
    """The job's standard counters in this process's registry: ``name`` or ``name|reason`` →
    value."""
    counts: dict[str, float] = {}
    for family in process_hub().registry.collect():
        for sample in family.samples:
            if sample.labels.get("job") != job_name or not sample.name.endswith("_total"):
                continue
            reason = sample.labels.get("reason")
            counts[f"{sample.name}|{reason}" if reason else sample.name] = sample.value
    return counts


def load_job_config(
    job_dir: str | Path = ".",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    templates: Mapping[str, str] | None = None,
) -> KlioConfig:
    """A job directory's config: templated, overridden, its paths resolved against the job dir.

    Raises:
        klio_runtime.config.ConfigError: every problem, by field.
    """
    directory = Path(job_dir).resolve()
    config_path = config_path_of(directory, config_file)
    return resolve_paths(load_config(config_path, overrides, templates), directory)


@contextlib.contextmanager
def in_job_directory(
    job_dir: str | Path, config_file: str | Path | None = None
) -> Iterator[tuple[Path, Path | None]]:
    """What follows runs in the job's directory, from importing ``run.py`` on, as Klio runs a
    job (its image's working directory): the job's own relative paths (a model beside
    ``run.py``, opened at import or in ``setup``) hold wherever the command was given. Yields the
    job directory and the config file (:func:`config_path_of`), both absolute, named from where
    the command was given."""
    directory = Path(job_dir).resolve()
    config = None if config_file is None else config_path_of(directory, config_file).resolve()
    if not directory.is_dir():  # nothing to run in: load_job says so
        yield directory, config
        return
    with contextlib.chdir(directory):
        yield directory, config


def load_job(
    job_dir: str | Path = ".",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    templates: Mapping[str, str] | None = None,
) -> tuple[KlioConfig, RunFn, Path]:
    """The job's config (:func:`load_job_config`) and its ``run``."""
    directory = Path(job_dir).resolve()
    config = load_job_config(directory, config_file, overrides, templates)
    return config, load_run_function(directory), directory


def run_job(
    config: KlioConfig,
    run_fn: RunFn,
    runner: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
    on_start: Callable[[], None] | None = None,
    blocking: bool = False,
    image_tag: str | None = None,
    events_from: str | None = None,
) -> JobSummary:
    """Build and run the pipeline. As Klio does, it waits until the pipeline ends on a runner in
    this process (or with ``blocking``); on another (Dataflow, Flink) it returns once submitted,
    with the submitted state and no counts, after waiting for a streaming pipeline to run if the
    job config says ``wait_for_pipeline_running``. With ``update`` and no running job of the
    job's name to update, it submits a new one (Klio's rule). ``image_tag``: the worker image's
    tag (Klio's ``--image-tag``), see :func:`beam_options`. ``events_from``: see
    :func:`~klio_runtime.pipeline.build_pipeline`."""
    ensure_emulator_credentials()
    options = beam_options(config, runner, extra_options, image_tag, events_from is not None)
    pipeline = build_pipeline(config, run_fn, options, events_from)
    if on_start:
        on_start()
    chosen = options.get_all_options()
    with _config_for_step_processes(config, chosen):
        try:
            result = pipeline.run()
        except ValueError as err:
            if chosen.get("update") and NOTHING_TO_UPDATE in str(err):
                # Klio's rule: no running job of this name to update yet, so submit a new one
                no_update = {**(extra_options or {}), "update": False}
                return run_job(
                    config, run_fn, runner, no_update, None, blocking, image_tag, events_from
                )
            raise
        if blocking or chosen["runner"] in IN_PROCESS_RUNNERS:
            result.wait_until_finish()
            return summarize(result, config.job_name)
    if chosen.get("streaming") and getattr(config.job_config, "wait_for_pipeline_running", False):
        wait_for_running(result)
    return JobSummary(processed=None, state=str(result.state), submitted=True)


@contextlib.contextmanager
def _config_for_step_processes(config: KlioConfig, chosen: Mapping[str, Any]) -> Iterator[None]:
    """In Beam's ``multi_processing`` mode the steps run in child processes, where this process's
    bound context is not: they make theirs from the job's config, written to a file named by
    :data:`~klio_runtime.context.JOB_CONFIG_FILE_ENV` while the run lasts."""
    if chosen.get("direct_running_mode") != "multi_processing":
        yield
        return
    with tempfile.TemporaryDirectory(prefix="klio-job-") as directory:
        config_file = Path(directory) / CONFIG_FILE_NAME
        config_file.write_text(yaml.safe_dump(dump_config(config), sort_keys=False))
        before = os.environ.get(JOB_CONFIG_FILE_ENV)
        os.environ[JOB_CONFIG_FILE_ENV] = str(config_file)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(JOB_CONFIG_FILE_ENV, None)
            else:
                os.environ[JOB_CONFIG_FILE_ENV] = before


def wait_for_running(
    result: PipelineResult, timeout: float = 600.0, poll_seconds: float = 10.0
) -> None:
    """Wait until a submitted pipeline runs (Klio's ``wait_for_pipeline_running``).

    Raises:
        RuntimeError: it ended first, or is not running after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = result.state
        if state == PipelineState.RUNNING:
            return
        if PipelineState.is_terminal(state):
            raise RuntimeError(f"the pipeline ended ({state}) before it was running")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pipeline is {state}, not running, after {timeout:.0f} s")
        time.sleep(poll_seconds)
