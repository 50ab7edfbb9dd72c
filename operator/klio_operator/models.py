"""The KlioJob custom resource: its spec and status as pydantic models.

Python uses snake_case; the wire (Kubernetes) uses camelCase: every model has a camelCase alias
generator, accepts both spellings on input, and `to_wire()` dumps by alias. The CRD's
openAPIV3Schema is generated from these classes by `klio_operator.crd`, so every field carries
a description (shown by `kubectl explain`) and every check the schema can express (required,
enums, patterns, minimums, CEL rules) is declared here once. Rules only CEL can say are declared
in `x-kubernetes-validations` *and* checked by a pydantic validator, so the operator refuses the
same objects the API server does when the CRD is older than the operator.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from klio_runtime.config import format_validation_errors
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

GROUP = "klio.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "KlioJob"
PLURAL = "kliojobs"
SINGULAR = "kliojob"
SHORT_NAMES = ("kj",)

# A DNS-1123 label: what Kubernetes requires of names that also become label values and
# Service names (the operator names children after the job).
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL_MAX = 63
# A DNS-1035 label (a DNS-1123 label starting with a letter, as long): Service names.
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# A DNS-1123 subdomain: service account names.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Kubernetes' resource.Quantity grammar (e.g. 500m, 1Gi, 2, 1e3).
QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")

PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
"""Marks a free-form object field (`json_schema_extra`); `klio_operator.crd` keys on it."""
# A Google Cloud project id, or a domain-scoped one (example.com:my-project): it becomes part of
# each topic's and subscription's name. Shorter than Google Cloud's 6 characters is let through
# (the Pub/Sub emulator takes any).
GCP_PROJECT = r"^([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z]([-a-z0-9]*[a-z0-9])?$"
GCP_PROJECT_MAX = 63

Mode = Literal["streaming", "batch"]
Runner = Literal["direct", "dataflow", "flink"]
Phase = Literal["Pending", "Running", "Degraded", "Suspended", "Succeeded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]


def _quantity(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and QUANTITY.match(value):
        return value
    raise ValueError(f"{value!r} is not a Kubernetes quantity (an integer, or e.g. 500m, 1Gi)")


Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    ),
]
"""A Kubernetes resource quantity: an integer or a string such as ``500m`` or ``1Gi``."""


class WireModel(BaseModel):
    """Base of every KlioJob model: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _pubsub_name(kind: str) -> str:
    """A Pub/Sub resource path of ``kind``, or a bare id: ids start with a letter and hold
    letters, digits and - . _ ~ + % (Pub/Sub's own rule, bar its minimum length)."""
    return rf"^(projects/[^/\s]+/{kind}/)?[A-Za-z][-A-Za-z0-9._~+%]*$"


class EventInput(WireModel):
    """An external event source for a root job (a job without parents)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'pubsub' ? (has(self.subscription) || has(self.topic))"
                    " : has(self.location)",
                    "message": "a pubsub input needs subscription or topic; a file input needs"
                    " location",
                }
            ]
        }
    )

    type: Literal["pubsub", "file"] = Field(
        default="pubsub",
        description="Where events come from: a Pub/Sub subscription or a file of ids.",
    )
    subscription: str | None = Field(
        default=None,
        pattern=_pubsub_name("subscriptions"),
        description="Pub/Sub subscription to read (projects/P/subscriptions/S, or S in the job's"
        " project). If only topic is given, the operator creates a subscription for this job on"
        " it.",
    )
    topic: str | None = Field(
        default=None,
        pattern=_pubsub_name("topics"),
        description="Pub/Sub topic (projects/P/topics/T, or T in the job's project).",
    )
    location: str | None = Field(
        default=None,
        description="For type file: a local path or gs:// URL (a glob is allowed) of files with"
        " one element id or serialized KlioMessage per line.",
    )

    @model_validator(mode="after")
    def _source_given(self) -> Self:
        if self.type == "pubsub" and not (self.subscription or self.topic):
            raise ValueError("a pubsub input needs subscription or topic")
        if self.type == "file" and not self.location:
            raise ValueError("a file input needs location")
        return self


class DataLocation(WireModel):
    """Where a job's data lives: the object for element E is <location>/<E><fileSuffix>."""

    location: str = Field(
        min_length=1,
        description="A gs:// URL (GCS) or a local path, the prefix of every data object.",
    )
    file_suffix: str = Field(default="", description="Appended to the element id, e.g. .ogg.")
    skip_klio_existence_check: bool = Field(
        default=False, description="Do not check this location for existence before running."
    )

    @property
    def storage_type(self) -> Literal["gcs", "file"]:
        """`gcs` for gs:// locations, else `file` (the runtime config's data type)."""
        return "gcs" if self.location.startswith("gs://") else "file"


class DataInput(DataLocation):
    """A data input. A child's data inputs default to its parents' data outputs."""

    ping: bool = Field(default=False, description="Treat every message as a ping (skip the work).")


class DataOutput(DataLocation):
    """A data output; children of this job read it as their data input by default."""

    force: bool = Field(default=False, description="Run even when the output already exists.")


class Autoscaling(WireModel):
    """Scale workers on the Pub/Sub backlog (KEDA when installed) or on CPU (HPA)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.maxReplicas >= self.minReplicas",
                    "message": "maxReplicas must be at least minReplicas",
                }
            ]
        }
    )

    min_replicas: int = Field(
        default=1, ge=0, description="Fewest workers (0 allows scale to zero)."
    )
    max_replicas: int = Field(ge=1, description="Most workers.")
    target_backlog_per_replica: int = Field(
        default=100, ge=1, description="Undelivered Pub/Sub messages per worker to aim for."
    )
    # No upper bound, as in the HPA: utilization is of the CPU request, and a worker whose limit
    # is above its request may be meant to run above 100%.
    target_cpu_utilization_percentage: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Average CPU utilization to aim for when scaling on CPU (no KEDA), in percent of"
            " the workers' CPU request."
        ),
    )

    @model_validator(mode="after")
    def _max_not_below_min(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError("maxReplicas must be at least minReplicas")
        return self


class ResourceClaim(WireModel):
    """core/v1 ResourceClaim: a dynamic resource claim the container uses."""

    name: str = Field(min_length=1, description="Name of an entry in the pod's resourceClaims.")
    request: str | None = Field(default=None, description="A request within that claim.")


class ResourceRequirements(WireModel):
    """core/v1 ResourceRequirements of each worker container."""

    limits: dict[str, Quantity] | None = Field(
        default=None, description="Most compute resources allowed, e.g. {cpu: 2, memory: 4Gi}."
    )
    requests: dict[str, Quantity] | None = Field(
        default=None, description="Compute resources reserved, e.g. {cpu: 500m, memory: 1Gi}."
    )
    claims: list[ResourceClaim] | None = Field(
        default=None, description="Dynamic resource claims used by the container."
    )


class EnvVar(WireModel):
    """core/v1 EnvVar for the worker container."""

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...).",
        json_schema_extra=PRESERVE_UNKNOWN,
    )


def is_dns1123_label(value: object) -> bool:
    """Whether ``value`` is a DNS-1123 label: a KlioJob's name, or a namespace's."""
    return (
        isinstance(value, str)
        and len(value) <= DNS1123_LABEL_MAX
        and re.fullmatch(DNS1123_LABEL, value) is not None
    )


def _parent_name(value: str) -> str:
    if not is_dns1123_label(value):
        raise ValueError(f"parent {value!r} is not a DNS-1123 label (a KlioJob name)")
    return value


ParentName = Annotated[
    str,
    AfterValidator(_parent_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DNS1123_LABEL,
            "minLength": 1,
            "maxLength": DNS1123_LABEL_MAX,
            "description": "Name of a KlioJob in this namespace.",
        }
    ),
]


class KlioJobSpec(WireModel):
    """What a team asks for: one Klio job, its place in the DAG and how its workers run."""

    image: str = Field(min_length=1, description="Container image with the job's run.py.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="core/v1 imagePullPolicy of the worker container."
    )
    mode: Mode = Field(
        default="streaming",
        description="streaming: a Deployment of workers reading Pub/Sub; batch: a Job that"
        " processes its event inputs and exits.",
    )
    runner: Runner = Field(
        default="direct",
        description="Beam runner: direct (in the worker pods), dataflow or flink (a launcher Job"
        " submits the pipeline to that engine: dataflow needs pipelineOptions region and a gs://"
        " temp_location, flink needs flink_master).",
    )
    parents: list[ParentName] = Field(
        default_factory=list,
        description="Names of KlioJobs in this namespace whose output messages trigger this job.",
        json_schema_extra={"x-kubernetes-list-type": "set", "maxItems": 64},
    )
    event_inputs: list[EventInput] = Field(
        default_factory=list,
        description="External event sources (usually for root jobs): Pub/Sub or files.",
        json_schema_extra={"maxItems": 64},
    )
    data_inputs: list[DataInput] | None = Field(
        default=None,
        description="Where input data is read. When unset, the operator uses the dataOutputs"
        " of each parent, in the order of parents (one input per parent).",
        json_schema_extra={"maxItems": 64},
    )
    data_outputs: list[DataOutput] = Field(
        default_factory=list,
        description="Where this job writes its results.",
        json_schema_extra={"maxItems": 64},
    )
    replicas: int = Field(
        default=1,
        ge=0,
        description="Number of workers: a streaming job's Deployment replicas, a batch job's"
        " Job parallelism (0 pauses it). The scale subresource points here, so kubectl scale"
        " and an HPA work; ignored while autoscaling is set.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scale workers automatically."
    )
    suspend: bool = Field(
        default=False,
        description="Scale workers to zero; subscriptions are kept, so no message is lost.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="core/v1 ResourceRequirements of each worker container."
    )
    thread_pool_size: int | None = Field(
        default=None, ge=1, description="Elements processed concurrently per worker."
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, description="Per-element time limit for the job's run function."
    )
    retries: int = Field(
        default=0, ge=0, description="Retries of a failed element before dropping it."
    )
    allow_non_klio_messages: bool = Field(
        default=False, description="Treat messages that are not KlioMessages as plain element ids."
    )
    pipeline_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Beam pipeline options, passed to the runner as-is.",
        json_schema_extra={
            **PRESERVE_UNKNOWN,
            "properties": {
                "project": {
                    "type": "string",
                    "pattern": GCP_PROJECT,
                    "maxLength": GCP_PROJECT_MAX,
                    "description": "The Google Cloud project of the job's topics and"
                    " subscriptions (and of its Dataflow job); the operator's by default.",
                }
            },
        },
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment variables of the worker container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    service_account_name: str | None = Field(
        default=None,
        pattern=DNS1123_SUBDOMAIN,
        max_length=253,
        description="ServiceAccount the workers run as (e.g. for Workload Identity).",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="The job's custom keys, available in run() as config.job_config.<key>.",
        json_schema_extra=PRESERVE_UNKNOWN,
    )

    @field_validator("parents")
    @classmethod
    def _parents_unique(cls, value: list[str]) -> list[str]:
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"parents listed twice: {', '.join(duplicates)}")
        return value

    @field_validator("env")
    @classmethod
    def _env_unique(cls, value: list[EnvVar]) -> list[EnvVar]:
        names = [var.name for var in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"env names listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _options_usable(self) -> Self:
        # The launcher's Beam refuses to submit without these, after the pod has started, and
        # Pub/Sub refuses names with a bad project on every retry: say so at apply time
        # instead, naming the option.
        problems = [
            InitErrorDetails(
                type=PydanticCustomError("runner_option", message),
                loc=("pipelineOptions", option),
                input=self.pipeline_options.get(option),
            )
            for option, message in [
                *project_problems(self.pipeline_options),
                *runner_option_problems(self.runner, self.pipeline_options),
                *option_conflicts(self.runner, self.mode, self.pipeline_options),
            ]
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    @property
    def is_root(self) -> bool:
        """A root job has no parents: only event inputs trigger it."""
        return not self.parents


_RUNNER_OF_OPTION: dict[str, Runner] = {
    "directrunner": "direct",
    "fnapirunner": "direct",
    "direct": "direct",
    "dataflowrunner": "dataflow",
    "dataflow": "dataflow",
    "flinkrunner": "flink",
    "flink": "flink",
}


def runner_of_option(value: Any) -> Runner | None:
    """The spec.runner a ``pipeline_options.runner`` names (``DataflowRunner``, ``flink``…), or
    None for one a KlioJob has no runner for (Klio's ``DirectGKERunner`` among them)."""
    return _RUNNER_OF_OPTION.get(str(value).lower())


def option_conflicts(runner: Runner, mode: str, options: dict[str, Any]) -> list[tuple[str, str]]:
    """(option, why) for a ``runner`` or ``streaming`` option (as a Klio config writes them)
    that says otherwise than ``spec.runner`` / ``spec.mode``, which choose: refused, rather than
    silently overridden."""
    problems: list[tuple[str, str]] = []
    given = options.get("runner")
    if given is not None and runner_of_option(given) != runner:
        problems.append(
            (
                "runner",
                f"{given!r} is not spec.runner ({runner}): choose the runner with"
                " spec.runner (direct, dataflow or flink), and leave this option out",
            )
        )
    streaming = options.get("streaming")
    if streaming is not None and bool(streaming) != (mode == "streaming"):
        problems.append(
            (
                "streaming",
                f"{streaming!r} is not spec.mode ({mode}): choose with spec.mode"
                " (streaming or batch), and leave this option out",
            )
        )
    return problems


def project_problems(options: dict[str, Any]) -> list[tuple[str, str]]:
    """("project", why) if the project option cannot name Pub/Sub topics (the CRD's own check,
    for a spec read without the API server: klio-operator render, an older CRD)."""
    project = options.get("project")
    if project is None:
        return []
    if (
        not isinstance(project, str)
        or len(project) > GCP_PROJECT_MAX
        or not re.fullmatch(GCP_PROJECT, project)
    ):
        return [("project", f"{project!r} is not a Google Cloud project id (e.g. my-project)")]
    return []


def runner_option_problems(runner: Runner, options: dict[str, Any]) -> list[tuple[str, str]]:
    """(option, why) for each pipeline option the runner needs to accept a job: Dataflow a
    region and a gs:// temp or staging location, Flink the cluster's address."""
    problems: list[tuple[str, str]] = []
    if runner == "dataflow":
        if not options.get("region"):
            problems.append(("region", "required by the dataflow runner (e.g. europe-west1)"))
        locations = [name for name in ("temp_location", "staging_location") if options.get(name)]
        if not locations:
            why = "required by the dataflow runner (or staging_location): a gs:// path"
            problems.append(("temp_location", why))
        for name in locations:
            if not str(options[name]).startswith("gs://"):
                why = f"must be a gs:// path for the dataflow runner, not {options[name]!r}"
                problems.append((name, why))
    elif runner == "flink" and not options.get("flink_master"):
        problems.append(
            ("flink_master", "required by the flink runner: the Flink cluster's host:port")
        )
    return problems


class Condition(WireModel):
    """A metav1.Condition: one aspect of the job's state."""

    type: str = Field(
        min_length=1,
        description="Ready, Progressing, Degraded, Succeeded (batch), ParentsResolved,"
        " TopicsReady or WorkersReady.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="CamelCase reason for the last transition.",
    )
    message: str | None = Field(default=None, description="Human-readable details.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )


class KlioJobStatus(WireModel):
    """What the operator observed, written only through the status subresource."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the status was computed from."
    )
    phase: Phase | None = Field(
        default=None,
        description="Pending (children being created), Running (ready), Degraded (some workers"
        " down), Suspended, Succeeded / Failed (batch jobs).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="One per type: Ready, Progressing, Degraded, Succeeded (batch),"
        " ParentsResolved, TopicsReady, WorkersReady.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    ready_workers: int | None = Field(default=None, ge=0, description="Workers ready.")
    desired_workers: int | None = Field(default=None, ge=0, description="Workers wanted.")
    replicas: int | None = Field(
        default=None, ge=0, description="Workers running (the scale subresource's status replicas)."
    )
    selector: str | None = Field(
        default=None, description="Label selector of the workers (for the scale subresource / HPA)."
    )
    topics: list[str] = Field(
        default_factory=list, description="Pub/Sub topics this job publishes to."
    )
    subscriptions: list[str] = Field(
        default_factory=list, description="Pub/Sub subscriptions this job reads."
    )
    parents: list[str] = Field(default_factory=list, description="Parents found and resolved.")
    run: str | None = Field(
        default=None,
        description="The run this status describes: the name of its Job (batch mode, or the"
        " launcher of runner dataflow / flink). A run is made once: once its Job is gone"
        " (deleted by its ttlSecondsAfterFinished, or by someone stopping it) it is not made"
        " again; a spec that changes the Job's pod template (config, image, env, resources)"
        " is a new run.",
    )


class KlioJob(WireModel):
    """A whole KlioJob object, as the API server returns it."""

    api_version: Literal["klio.io/v1alpha1"] = Field(
        default="klio.io/v1alpha1", alias="apiVersion", description="klio.io/v1alpha1"
    )
    kind: Literal["KlioJob"] = Field(default="KlioJob", description="KlioJob")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Standard object metadata.", json_schema_extra={}
    )
    spec: KlioJobSpec = Field(description="The desired job.")
    status: KlioJobStatus | None = Field(default=None, description="Observed state.")


class FieldErrors(ValueError):
    """Problems by field: `errors` are `<path>: <message>` lines, the message joins them."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


class SpecError(FieldErrors):
    """A KlioJob spec that does not validate."""


def parse_spec(spec: Any) -> KlioJobSpec:
    """Validate a KlioJob `spec` (camelCase, as stored) into the model.

    Raises SpecError listing every problem, paths prefixed with `spec.`.
    """
    if spec is None:
        raise SpecError(["spec: required"])
    try:
        return KlioJobSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(format_validation_errors(exc, prefix="spec")) from exc
