"""The one loader of ``klio-job.yaml`` (Klio's version 2 format).

Everything that needs a job's configuration (the runtime, ``klio job verify``, the operator
rendering the worker ConfigMap) goes through `load_config` / `parse_config` and gets a `KlioConfig`;
`dump_config` turns one back into the YAML-shaped dict.

Compatibility with Klio: the same keys and defaults (``pipeline_options.streaming`` defaults
to true, ``skip_klio_*`` to false, ``file_suffix`` to ""); ``file`` event IO accepts
``location`` or Klio's ``file_pattern`` / ``file_path_prefix``; a ``gcs`` data location may be
spelled ``data_location``; custom keys under ``job_config`` and ``pipeline_options`` are kept as
they are. Beyond Klio: several data inputs (one per parent), and every error is reported at
once, each as ``<path>: <message>`` (e.g. ``job_config.data.inputs[1].location: …``).
"""

from __future__ import annotations

import enum
import json
import logging
import re
import string
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from klio_runtime.message import validate_element_id

SUPPORTED_VERSION = 2
DEPRECATED_VERSIONS = (1,)
"""Versions Klio still runs, with a deprecation warning (the same keys as version 2 here)."""
_IO_TAGS = frozenset({"pubsub", "file", "avro", "bq"})


class ConfigError(ValueError):
    """A job config that cannot be used. ``errors`` holds every problem as ``<path>: <message>``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class TemplateVariableMissing(ConfigError):
    """A ``$KEY`` in a config's text that no template value fills (Klio's
    ``KlioConfigTemplatingException``, which is this class)."""

    def __init__(self, key: str, source: str = "config") -> None:
        self.key = key
        super().__init__([f"{source}: template variable ${key} has no value (give -T {key}=VALUE)"])


class _Strict(BaseModel):
    """Sections whose keys are all known: an unknown key is an error (a typo, usually)."""

    # A number where text is wanted is that text (project: 12345, -O ...=12345), as Klio takes it.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


_IO_NAME: Any = Field(
    default=None,
    alias="name",
    description="What overrides may call this entry (Klio's IO ``name`` key); in Python its "
    "``name`` is its type, as in Klio.",
)


class _IOConfig(_Strict):
    """An event or data IO entry; Klio matches its ``type`` case-insensitively.

    As Klio's IO configs: ``name`` is the type (``file``, ``gcs``, ``pubsub``, ``avro``),
    ``as_dict()`` the entry with its type first, and ``to_io_kwargs()`` the keyword arguments of
    the IO transform it configures (no type, no ``skip_klio_*`` flag).
    """

    _IO_KWARGS: ClassVar[Mapping[str, str]] = {}
    """Config keys that the IO transform takes under another name (Klio's attribute names)."""

    @field_validator("type", mode="before", check_fields=False)
    @classmethod
    def _lower_type(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def name(self) -> str:
        return str(getattr(self, "type", ""))

    def as_dict(self) -> dict[str, Any]:
        out = {"type": self.name}
        for field_name, field in type(self).model_fields.items():
            if field_name not in ("type", "io_name"):
                out[field.alias or field_name] = _dump_value(getattr(self, field_name))
        return out

    def to_io_kwargs(self) -> dict[str, Any]:
        return {
            self._IO_KWARGS.get(key, key): value
            for key, value in self.as_dict().items()
            if key != "type" and not key.startswith("skip_klio_")
        }


def _without(*legacy: str) -> Any:
    """A before-validator dropping keys Klio's own loader drops for this kind of entry (left
    in configs from Klio's earlier versions, where one entry held event and data IO)."""

    def drop(cls: Any, value: Any) -> Any:
        if isinstance(value, Mapping) and any(key in value for key in legacy):
            return {key: item for key, item in value.items() if key not in legacy}
        return value

    return model_validator(mode="before")(classmethod(drop))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Event IO: what triggers the job and where its output messages go.


class PubSubEventInput(_IOConfig):
    """Messages pulled from a Pub/Sub subscription (or a topic, the operator then subscribes)."""

    type: Literal["pubsub"] = "pubsub"
    io_name: str | None = _IO_NAME
    topic: str | None = None
    subscription: str | None = None
    skip_klio_read: bool = False
    _drop_legacy = _without("data_location")

    def to_io_kwargs(self) -> dict[str, Any]:
        """Klio's: the subscription, or the topic when there is no subscription (not both)."""
        kwargs = super().to_io_kwargs()
        kwargs.pop("subscription" if self.topic and not self.subscription else "topic", None)
        return kwargs

    @model_validator(mode="after")
    def _topic_or_subscription(self) -> Self:
        if not self.topic and not self.subscription:
            raise ValueError("one of topic, subscription is required")
        return self


class FileEventInput(_IOConfig):
    """A file (local or gs://, globs allowed) of element ids or serialized messages, one a line."""

    type: Literal["file"] = "file"
    io_name: str | None = _IO_NAME
    location: str = Field(min_length=1, validation_alias=AliasChoices("location", "file_pattern"))
    _IO_KWARGS: ClassVar[Mapping[str, str]] = {"location": "file_pattern"}
    skip_klio_read: bool = False

    @property
    def file_pattern(self) -> str:
        """Klio's name for `location` (what Beam's ReadFromText takes)."""
        return self.location

    @property
    def pattern(self) -> str:
        """The files to read (as an avro input's ``pattern``)."""
        return self.location


class PubSubEventOutput(_IOConfig):
    """Output messages published to a Pub/Sub topic (children subscribe to it)."""

    type: Literal["pubsub"] = "pubsub"
    io_name: str | None = _IO_NAME
    topic: str = Field(min_length=1)
    skip_klio_write: bool = False
    _drop_legacy = _without("data_location")


class FileEventOutput(_IOConfig):
    """Output messages written to files under a prefix (local or gs://)."""

    type: Literal["file"] = "file"
    io_name: str | None = _IO_NAME
    location: str = Field(
        min_length=1, validation_alias=AliasChoices("location", "file_path_prefix")
    )
    skip_klio_write: bool = False
    _IO_KWARGS: ClassVar[Mapping[str, str]] = {"location": "file_path_prefix"}

    @property
    def file_path_prefix(self) -> str:
        """Klio's name for `location` (what Beam's WriteToText takes)."""
        return self.location

    @property
    def prefix(self) -> str:
        """Where the files go (as an avro output's ``prefix``)."""
        return self.location


def joined_path(location: str | None, name: str | None) -> str:
    """Klio's rule for event file paths: ``location`` joined with the file name or pattern when
    both are given, else whichever is ("" for neither)."""
    if location and name:
        return f"{location.rstrip('/')}/{name}"
    return location or name or ""


class AvroEventInput(_IOConfig):
    """Avro files (local or gs://, globs allowed): each record is an event, its ``element``
    field the element id, or (without one) the record as JSON (Klio's avro event input)."""

    type: Literal["avro"] = "avro"
    io_name: str | None = _IO_NAME
    location: str | None = None
    file_pattern: str | None = None
    min_bundle_size: int = Field(default=0, ge=0)
    validate_: bool = Field(default=True, alias="validate")
    skip_klio_read: bool = False

    model_config = ConfigDict(populate_by_name=True)

    @property  # Klio's attribute; it shadows pydantic's deprecated v1 classmethod
    def validate(self) -> bool:  # type: ignore[override]
        return self.validate_

    @model_validator(mode="after")
    def _location_or_pattern(self) -> Self:
        if not (self.location or self.file_pattern):
            raise ValueError("one of location, file_pattern is required")
        return self

    @property
    def pattern(self) -> str:
        """The files to read."""
        return joined_path(self.location, self.file_pattern)


class AvroEventOutput(_IOConfig):
    """Avro files under a prefix, one record ``{"element": bytes}`` per output message (Klio's
    avro event output and its schema)."""

    type: Literal["avro"] = "avro"
    io_name: str | None = _IO_NAME
    location: str | None = None
    file_path_prefix: str | None = None
    codec: str = "deflate"
    file_name_suffix: str = ""
    num_shards: int = Field(default=0, ge=0)
    shard_name_template: str | None = None
    mime_type: str = "application/x-avro"
    skip_klio_write: bool = False

    @model_validator(mode="after")
    def _location_or_prefix(self) -> Self:
        if not (self.location or self.file_path_prefix):
            raise ValueError("one of location, file_path_prefix is required")
        return self

    @property
    def prefix(self) -> str:
        """Where the files go (Beam's shard naming follows)."""
        return joined_path(self.location, self.file_path_prefix)


class _BigQueryTable(_IOConfig):
    """Klio's BigQuery event IO (``type: bq``), loaded with Klio's keys so a config naming it can
    be verified, shown and used by job code. The runtime does not read or write BigQuery (there
    is none to test against here): a job runs only if it reads such an input itself
    (``skip_klio_read``) and writes such an output itself (``skip_klio_write``)."""

    type: Literal["bq"] = "bq"
    io_name: str | None = _IO_NAME
    project: str | None = None
    dataset: str | None = None
    table: str | None = None

    model_config = ConfigDict(populate_by_name=True)


class BigQueryEventInput(_BigQueryTable):
    """Klio's BigQuery event input: a table (optionally only some ``columns``) or a ``query``."""

    validate_: bool = Field(default=True, alias="validate")
    coder: str | None = None
    kms_key: str | None = None
    columns: list[str] | None = Field(
        default=None, validation_alias=AliasChoices("columns", "klio_message_columns")
    )
    query: str | None = None
    use_standard_sql: bool = False
    flatten_results: bool = True
    skip_klio_read: bool = False

    @property  # Klio's attribute; it shadows pydantic's deprecated v1 classmethod
    def validate(self) -> bool:  # type: ignore[override]
        return self.validate_

    @property
    def klio_message_columns(self) -> list[str] | None:
        """Klio's attribute name for ``columns``."""
        return self.columns

    @model_validator(mode="after")
    def _table_or_query(self) -> Self:
        table = (self.project, self.dataset, self.table)
        if self.columns is not None and not all(table):
            raise ValueError("columns needs project, dataset and table")
        if self.query is not None and any(table):
            raise ValueError("query and project, dataset, table exclude each other")
        return self


class BigQueryEventOutput(_BigQueryTable):
    """Klio's BigQuery event output: rows into a table, with an optional ``schema``."""

    table_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    create_disposition: str = "CREATE_IF_NEEDED"
    write_disposition: str = "WRITE_EMPTY"
    skip_klio_write: bool = False

    @field_validator("table_schema", mode="before")
    @classmethod
    def _schema_from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value  # Klio takes either

    @field_validator("table_schema")
    @classmethod
    def _schema_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        fields = (value or {}).get("fields", [])
        if not isinstance(fields, list) or not all(
            isinstance(f, Mapping) and {"name", "type", "mode"} <= set(f) for f in fields
        ):
            raise ValueError('fields must each have "name", "type" and "mode"')
        return value

    @property
    def schema(self) -> dict[str, Any] | None:  # type: ignore[override]
        """Klio's attribute (it shadows pydantic's deprecated v1 classmethod)."""
        return self.table_schema


def not_run_here(where: str, entry: _BigQueryTable) -> ConfigError:
    """The error for an event entry whose IO this runtime loads but does not run (BigQuery)."""
    flag = "skip_klio_read" if isinstance(entry, BigQueryEventInput) else "skip_klio_write"
    return ConfigError(
        [
            f"{where}: Klio's {entry.type} event IO is not run here (there is no BigQuery to "
            f"test it against); set {flag}: true and do it in run"
        ]
    )


def entries_not_run_here(config: KlioConfig, inputs: bool = True) -> list[str]:
    """What a run of this config would refuse: its BigQuery event entries that the job does not
    read or write itself (see :func:`not_run_here`); the outputs only, without ``inputs`` (a
    run whose inputs all read another source)."""
    events = config.job_config.events
    found = [
        not_run_here(f"job_config.events.inputs[{index}]", entry)
        for index, entry in enumerate(events.inputs)
        if inputs and isinstance(entry, BigQueryEventInput) and not entry.skip_klio_read
    ] + [
        not_run_here(f"job_config.events.outputs[{index}]", entry)
        for index, entry in enumerate(events.outputs)
        if isinstance(entry, BigQueryEventOutput) and not entry.skip_klio_write
    ]
    return [line for error in found for line in error.errors]


VERSION_1_IO_KEYS = ("inputs", "outputs")
"""``job_config`` keys of Klio's version 1 layout; Klio 21+ reads ``events`` and ``data``."""


_VERSION_1_IO_FIELDS = frozenset({"topic", "subscription", "data_location", "type"})


def version_1_layout(config: KlioConfig) -> list[str]:
    """The ``job_config`` keys in Klio's version 1 IO layout: ``inputs``/``outputs`` listing IO
    entries (a job's own key of that name listing other things is not one). Klio reads them as
    the job's own keys, so they configure no IO: without ``events.inputs`` ``run`` gets the
    pipeline."""
    extra = config.job_config.model_extra or {}

    def io_entries(value: Any) -> bool:
        return isinstance(value, list) and any(
            isinstance(entry, Mapping) and _VERSION_1_IO_FIELDS & set(entry) for entry in value
        )

    return [f"job_config.{key}" for key in VERSION_1_IO_KEYS if io_entries(extra.get(key))]


def version_1_layout_warnings(config: KlioConfig) -> list[str]:
    """One line per version 1 key (:func:`version_1_layout`), saying what it does here."""
    return [
        f"{path}: version 1's layout, read as one of the job's own keys (as Klio does): it"
        " configures no IO; move its entries to job_config.events and job_config.data (Klio's"
        " migration guide)"
        for path in version_1_layout(config)
    ]


def _io_type_tag(value: Any) -> str | None:
    """The union member for an IO entry; None (→ the unsupported-type error) for unknown types."""
    if isinstance(value, Mapping):
        io_type = value.get("type")
        return io_type.lower() if isinstance(io_type, str) and io_type.lower() in _IO_TAGS else None
    if isinstance(value, BaseModel):
        return str(getattr(value, "type", None))
    return "pubsub"  # not a mapping: let the model say it must be one


_UNSUPPORTED_EVENT_TYPE = (
    "type must be pubsub, file, avro or bq (Klio's custom event IO is not supported)"
)

EventInput = Annotated[
    Annotated[PubSubEventInput, Tag("pubsub")]
    | Annotated[FileEventInput, Tag("file")]
    | Annotated[AvroEventInput, Tag("avro")]
    | Annotated[BigQueryEventInput, Tag("bq")],
    Discriminator(
        _io_type_tag,
        custom_error_type="unsupported_io_type",
        custom_error_message=_UNSUPPORTED_EVENT_TYPE,
    ),
]
EventOutput = Annotated[
    Annotated[PubSubEventOutput, Tag("pubsub")]
    | Annotated[FileEventOutput, Tag("file")]
    | Annotated[AvroEventOutput, Tag("avro")]
    | Annotated[BigQueryEventOutput, Tag("bq")],
    Discriminator(
        _io_type_tag,
        custom_error_type="unsupported_io_type",
        custom_error_message=_UNSUPPORTED_EVENT_TYPE,
    ),
]


class _IOLists(_Strict):
    """``inputs`` / ``outputs`` lists; also taken keyed by name (``{"file0": {...}}``), the
    form Klio's config constructors take after its preprocessing, in the keys' order."""

    @field_validator("inputs", "outputs", mode="before", check_fields=False)
    @classmethod
    def _keyed_entries(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        if not all(isinstance(entry, Mapping) for entry in value.values()):
            # one entry's fields (`type: file`) where a list of entries was meant
            raise ValueError(
                "must be a list of entries, each starting with `- ` (`- type: file`), not the"
                f" fields of one ({', '.join(map(str, value))})"
            )
        return list(value.values())


class EventsConfig(_IOLists):
    """``job_config.events``."""

    inputs: list[EventInput] = Field(default_factory=list)
    outputs: list[EventOutput] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Data IO: where the job reads and writes the objects named by element ids.


class _DataLocation(_IOConfig):
    type: Literal["gcs", "file"]
    io_name: str | None = _IO_NAME
    # Optional as in Klio's data docs: only the existence checks need it.
    location: str | None = Field(
        default=None, min_length=1, validation_alias=AliasChoices("location", "data_location")
    )
    file_suffix: str = ""
    skip_klio_existence_check: bool = False
    _drop_legacy = _without("topic", "subscription")

    @model_validator(mode="after")
    def _checked_location(self) -> Self:
        # Klio's own configs park unused entries (skip_klio_existence_check) at a local path
        if self.skip_klio_existence_check:
            return self
        if self.location is None:
            raise self._location_error(
                PydanticCustomError(
                    "checked_location",
                    "required unless skip_klio_existence_check is true (the existence check "
                    "looks there)",
                )
            )
        if self.type == "gcs" and not self.location.startswith("gs://"):
            raise self._location_error(
                PydanticCustomError(
                    "gcs_url",
                    "'{location}' must start with gs:// for type gcs (use type: file for local "
                    "paths)",
                    {"location": self.location},
                )
            )
        return self

    def _location_error(self, problem: PydanticCustomError) -> ValidationError:
        """``problem`` reported at this entry's ``location``, as pydantic reports a field's."""
        return ValidationError.from_exception_data(
            type(self).__name__,
            [InitErrorDetails(type=problem, loc=("location",), input=self.location)],
        )

    def path_shown(self, element_id: str) -> str:
        """Where ``element_id`` would be, as Klio's log lines name it; not checked (never
        opened: :meth:`path_for` is what reads and writes use).

        Raises ValueError for an entry without a ``location``.
        """
        if self.location is None:
            raise ValueError(
                f"data {self.type} entry has no location, so no path for {element_id!r} (give "
                "it a location to read, write or check its data)"
            )
        return f"{self.location.rstrip('/')}/{element_id}{self.file_suffix}"

    def path_for(self, element_id: str) -> str:
        """The object holding `element_id`: ``<location>/<element_id><file_suffix>``.

        Raises klio_runtime.message.InvalidElementId for ids that would escape the location
        (``..``, absolute paths, control characters).
        """
        return self.path_shown(validate_element_id(element_id))


class DataInput(_DataLocation):
    """A data input (``gcs`` or local ``file``). A job may have several, e.g. one per parent."""

    ping: bool = False


class DataOutput(_DataLocation):
    """A data output (``gcs`` or local ``file``)."""

    force: bool = False


class DataConfig(_IOLists):
    """``job_config.data``."""

    inputs: list[DataInput] = Field(default_factory=list)
    outputs: list[DataOutput] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The two sections and the whole file.


class JobConfig(BaseModel):
    """``job_config``: Klio's settings, our runtime knobs and the job's own keys.

    Keys not declared here are the job's custom configuration, kept as they are and readable as
    attributes (``config.job_config.model_file``), as in Klio. The runtime knobs
    (``thread_pool_size``, ``timeout_seconds``, ``retries``) are where a KlioJob's
    ``threadPoolSize`` / ``timeoutSeconds`` / ``retries`` land.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, coerce_numbers_to_str=True)

    allow_non_klio_messages: bool = Field(
        default=False, description="Treat bytes that are not a KlioMessage as a plain element id."
    )
    blocking: bool = Field(
        default=False, description="Wait for the pipeline to finish before exiting."
    )
    wait_for_pipeline_running: bool = Field(
        default=False,
        description="Wait until the pipeline is running before exiting (Klio, Dataflow).",
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Metrics clients' settings (Klio's shape)."
    )
    events: EventsConfig = Field(default_factory=EventsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    thread_pool_size: int | None = Field(
        default=None,
        ge=1,
        description="Elements processed concurrently per worker (None: runtime default).",
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Time limit per element in run(); None means no limit.",
    )
    retries: int = Field(
        default=0, ge=0, description="Retries of a failing element before it is dropped."
    )

    # This runtime's knob, not Klio's: shown only when the file sets it, so as_dict() is Klio's.
    _UNDUMPED_DEFAULTS: ClassVar[frozenset[str]] = frozenset({"retries"})

    _job_name: str = PrivateAttr(default="")
    _version: int = PrivateAttr(default=SUPPORTED_VERSION)

    @property
    def job_name(self) -> str:
        """The job's name (Klio's ``job_config.job_name``)."""
        return self._job_name

    @property
    def version(self) -> int:
        """The config's version (Klio's ``job_config.version``)."""
        return self._version

    def as_dict(self) -> dict[str, Any]:
        """``job_config`` as a plain mapping, the job's own keys included (what Klio's docs tell
        jobs to read custom keys with); IO entries as their ``as_dict()``."""
        out = _dump_model(self)
        for section in ("events", "data"):
            stanza = getattr(self, section)
            out[section] = {
                "inputs": [io.as_dict() for io in stanza.inputs],
                "outputs": [io.as_dict() for io in stanza.outputs],
            }
        return out

    @field_validator("metrics")
    @classmethod
    def _warn_of_unknown_metrics_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A unit or level Klio does not know runs with Klio's default: warned when the config is
        # read, not first when a worker builds its metrics.
        from klio_runtime.metrics import MetricsLogRelay, kmsg_timer_unit

        MetricsLogRelay.from_settings(value)
        kmsg_timer_unit(value)
        return value


DATAFLOW_DEFAULT_REGION = "europe-west1"
"""Klio's region for a Dataflow job that names none."""
DATAFLOW_REGIONS = (
    "asia-east1",
    "asia-northeast1",
    "asia-southeast1",
    "australia-southeast1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "northamerica-northeast1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-west1",
)
"""Klio's regions to look for a job's Dataflow runs in (``klio_core.variables``)."""
WORKER_DISK_TYPES = frozenset({"local-ssd", "pd-ssd", "pd-standard"})


def worker_disk_type_path(project: str | None, region: str | None, disk_type: str) -> str:
    """The resource path Klio makes of a short ``worker_disk_type`` (Dataflow takes this)."""
    region = region or DATAFLOW_DEFAULT_REGION
    return f"compute.googleapis.com/projects/{project}/regions/{region}/diskTypes/{disk_type}"


class KlioRunner(enum.Enum):
    """Klio's runner names (``klio_core.variables.KlioRunner``), the one place they are spelt;
    ``.value`` is the name Beam and the config take. A member equals a runner's name given
    loosely, as Klio's does: ``KlioRunner.DIRECT_RUNNER == "direct"`` and
    ``== "DirectRunner"``; ``KlioRunner.DATAFLOW_RUNNER == "dataflow"``."""

    DIRECT_GKE_RUNNER = "DirectGKERunner"
    DIRECT_RUNNER = "DirectRunner"
    DATAFLOW_RUNNER = "DataflowRunner"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return self is other
        name = other.lower() if other.lower().endswith("runner") else f"{other.lower()}runner"
        if "direct" in name:  # DirectRunner and DirectGKERunner differ only after "direct"
            return self.value.lower() == name
        return name in self.value.lower()

    __hash__ = enum.Enum.__hash__


class PipelineOptions(BaseModel):
    """``pipeline_options``: Beam's options, passed to Beam as they are (see `as_dict`).

    The common keys are typed (a wrong type is an error); any other key is kept as written and
    readable as an attribute (``config.pipeline_options.max_num_workers``).
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, coerce_numbers_to_str=True)

    runner: str | None = None
    streaming: bool = True  # Klio's default
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    staging_location: str | None = None
    experiments: list[str] = Field(default_factory=list)
    setup_file: str | None = None
    requirements_file: str | None = None
    worker_harness_container_image: str | None = None
    num_workers: int | None = Field(default=None, ge=0)
    max_num_workers: int | None = Field(default=None, ge=0)
    update: bool | None = None
    # The rest of the options Klio's KlioPipelineConfig declares, so job code reads them as
    # attributes. Klio's Dataflow defaults (disk_size_gb 32, n1-standard-2, ...) are not given:
    # unset, Beam's and the runner's own defaults apply, and these read None.
    job_name: str | None = None  # the job's name unless set (Klio's)
    sdk_location: str | None = None
    subnetwork: str | None = None
    dataflow_endpoint: str | None = None
    service_account_email: str | None = None
    no_auth: bool = False
    template_location: str | None = None
    labels: list[Any] = Field(default_factory=list)  # with `label` appended, as Klio's
    label: str | None = None
    transform_name_mapping: Any = None
    enable_streaming_engine: bool = False
    dataflow_kms_key: str | None = None
    flexrs_goal: Literal["COST_OPTIMIZED", "SPEED_OPTIMIZED"] | None = None
    autoscaling_algorithm: Literal["THROUGHPUT_BASED", "NONE"] | None = None
    disk_size_gb: int | None = Field(default=None, ge=0)
    worker_machine_type: str | None = None
    worker_disk_type: str | None = None
    use_public_ips: bool | None = None
    min_cpu_platform: str | None = None
    dataflow_worker_jar: str | None = None
    gke_namespace: str | None = None
    profile_location: str | None = None
    profile_cpu: bool | None = None
    profile_memory: bool | None = None
    profile_sample_rate: float | None = None

    # Defaults given for reading only: Beam is given what the file says (see `as_dict`).
    _UNDUMPED_DEFAULTS: ClassVar[frozenset[str]] = frozenset(
        {"experiments", "job_name", "no_auth", "labels", "enable_streaming_engine"}
    )

    @field_validator("worker_disk_type")
    @classmethod
    def _known_disk_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        # As Klio: a short name, or its path for this job's own project and region.
        if value is None or value in WORKER_DISK_TYPES:
            return value
        project, region = info.data.get("project"), info.data.get("region")
        if value != worker_disk_type_path(project, region, value.split("/")[-1]):
            raise ValueError(
                f"{value!r} is not a disk type: one of {', '.join(sorted(WORKER_DISK_TYPES))}, "
                f"or {worker_disk_type_path(project, region, 'TYPE')}"
            )
        return value

    @field_validator("experiments", "labels", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return [] if value is None else value  # `experiments:` with nothing under it

    @model_validator(mode="after")
    def _label_in_labels(self) -> Self:
        if self.label and self.label not in self.labels:
            # Klio's: `label` is one more of `labels`; read-only, Beam gets both as written
            self.__dict__["labels"] = [*self.labels, self.label]
        return self

    def as_dict(self) -> dict[str, Any]:
        """The options for Beam: every key written (typed or not), unset typed keys left out."""
        return _dump_model(self)


class KlioConfig(_Strict):
    """A whole ``klio-job.yaml``."""

    version: int = SUPPORTED_VERSION
    job_name: str = Field(min_length=1)
    pipeline_options: PipelineOptions = Field(default_factory=PipelineOptions)
    job_config: JobConfig = Field(default_factory=JobConfig)

    @field_validator("version")
    @classmethod
    def _version_2(cls, value: int) -> int:
        if value in DEPRECATED_VERSIONS:
            # as Klio: a warning, and the job runs (its keys are read as version 2's)
            logging.getLogger("klio").warning(
                "Config version %d is deprecated and will be removed in a future release of "
                "klio. Please migrate to a supported version: (%d,)",
                value,
                SUPPORTED_VERSION,
            )
        elif value != SUPPORTED_VERSION:
            raise ValueError(
                f"only version {SUPPORTED_VERSION} of klio-job.yaml is supported (and "
                f"{', '.join(map(str, DEPRECATED_VERSIONS))}, deprecated)"
            )
        return value

    @model_validator(mode="after")
    def _tell_job_config(self) -> Self:
        # Klio's job_config knows the job's name and version too, and its pipeline_options the
        # name (a Dataflow job's, unless set); read-only: not given to Beam unless written
        self.job_config._job_name = self.job_name
        self.job_config._version = self.version
        if self.pipeline_options.job_name is None:
            self.pipeline_options.__dict__["job_name"] = self.job_name
        return self


# ---------------------------------------------------------------------------------------------
# Errors, loading, overrides and dumping.

_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown key",
}


def _format_location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for index, part in enumerate(loc):
        # A tagged union member's tag follows the list index; it is not part of the YAML path.
        if (
            isinstance(part, str)
            and part in _IO_TAGS
            and index > 0
            and isinstance(loc[index - 1], int)
        ):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def format_validation_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """Every error of a pydantic ValidationError as ``<path>: <message>``, in input order.

    Paths use the input's own keys (aliases), dots and ``[index]``; `prefix` is put in front
    (e.g. ``spec``). Also used by the operator for KlioJob specs.
    """
    lines = []
    for error in exc.errors(include_url=False):
        path = _format_location(tuple(error["loc"]))
        if prefix:
            path = f"{prefix}{'' if path.startswith('[') or not path else '.'}{path}"
        message = _MESSAGES.get(error["type"], error["msg"])
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if error["type"] in ("model_type", "dict_type"):  # pydantic names its own classes
            got = error["input"]
            shown = "an empty value" if got is None else type(got).__name__
            message = f"must be a mapping, got {shown}"
        if error["type"] == "unsupported_io_type" and isinstance(error["input"], Mapping):
            message += f" (got {error['input'].get('type')!r})"
        lines.append(f"{path or '(top level)'}: {message}")
    return lines


def parse_config(data: Mapping[str, Any]) -> KlioConfig:
    """Validate a parsed ``klio-job.yaml`` mapping. Raises ConfigError listing every problem."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"(top level): must be a mapping, got {type(data).__name__}"])
    try:
        return KlioConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc)) from None


CONFIG_FILE_NAME = "klio-job.yaml"
"""A job directory's config file (Klio's name)."""
RUN_FUNCTION_NAMES = ("run_basic", "run")
"""The job's function in its run.py, in Klio's order: ``run_basic`` when a module has both."""


def config_path_of(job_dir: str | Path, config_file: str | Path | None = None) -> Path:
    """The job's config file: ``klio-job.yaml`` in the job directory, or ``config_file``, which,
    when relative, is looked for in the job directory first (as Klio does), then here."""
    directory = Path(job_dir)
    if config_file is None:
        return directory / CONFIG_FILE_NAME
    given = Path(config_file)
    if given.is_absolute():
        return given
    in_job_dir = directory / given
    # found nowhere: named in the job directory, where it was looked for first
    return in_job_dir if in_job_dir.exists() or not given.exists() else given


def load_config(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    templates: Mapping[str, str] | None = None,
) -> KlioConfig:
    """Read, template, override and validate a ``klio-job.yaml``.

    `templates` (Klio's ``-T KEY=VALUE``) replace ``$KEY`` and ``${KEY}`` in the file's text
    before it is parsed, as Klio's command line does, even when empty: a ``$`` with no value is
    an error (``$$`` is a literal ``$``). None reads the text as it is (a rendered config).
    `overrides` maps dotted paths to values, e.g. ``{"pipeline_options.runner": "FnApiRunner",
    "job_config.events.inputs[0].location": "ids.txt"}``; an IO list item may also be named as
    Klio names it (``job_config.events.inputs.file0.location``); missing mappings on the way are
    created (as Klio does), and an index one past a list's end appends an item. Raises
    ConfigError for a missing file, a template variable without a value, YAML syntax (with line
    and column), a bad override path, or an invalid config.
    """
    data = read_config_data(path, templates)
    if overrides:
        apply_overrides(data, overrides)
    return parse_config(data)


def read_config_data(
    path: str | Path, templates: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A ``klio-job.yaml`` as the mapping it holds, templated (see :func:`load_config`) and not
    validated. Raises ConfigError for a missing file, YAML syntax, or a file that is no mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    if templates is not None:
        text = fill_templates(text, templates, str(path))
    data = _load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must be a YAML mapping, got {type(data).__name__}"])
    return data


class _KeyCheckingLoader(yaml.SafeLoader):
    """A safe loader that notes each key given twice in one mapping. YAML (and so Klio, whose
    own example configs have some) keeps the last; the caller warns about each."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[Any, yaml.Mark]] = []


def _construct_noting_duplicates(
    loader: _KeyCheckingLoader, node: yaml.MappingNode
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # construct_mapping refuses it below, with its line
        if key in seen:
            loader.duplicates.append((key, key_node.start_mark))
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_KeyCheckingLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_noting_duplicates,
)


EXPANDED_VALUES_MAX = 100_000
"""The most values a config may hold once its YAML aliases are expanded (a real one holds
hundreds): aliases of aliases grow exponentially, and showing or converting such a config would
take all memory."""


def _expanded_values(node: yaml.Node, counted: dict[int, int]) -> int:
    """How many values ``node`` holds with every alias in it expanded (each shared node counted
    once per use, computed once; a node inside itself counts as one)."""
    known = counted.get(id(node))
    if known is not None:
        return known
    counted[id(node)] = 1
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_expanded_values(k, counted) + _expanded_values(v, counted)
                     for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_values(item, counted) for item in node.value)
    counted[id(node)] = total
    return total


def _load_yaml(text: str, source: str) -> Any:
    loader = _KeyCheckingLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_values(node, {}) > EXPANDED_VALUES_MAX:
            raise ConfigError([
                f"{source}: its YAML aliases expand to more than {EXPANDED_VALUES_MAX:,} values"
            ])
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError([f"{source}: {where}: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    for key, mark in loader.duplicates:
        logging.getLogger("klio").warning(
            "%s: line %d, column %d: duplicate key %r: the last one is used (as YAML and Klio do)",
            source,
            mark.line + 1,
            mark.column + 1,
            key,
        )
    return data


def fill_templates(text: str, templates: Mapping[str, str], source: str) -> str:
    """``$KEY`` and ``${KEY}`` in a config's text replaced by their values (``$$``: a ``$``).

    Raises TemplateVariableMissing naming a variable with no value; ConfigError for a lone ``$``.
    """
    # Klio lowercases -T keys: KEY=VALUE fills ${key}, and here ${KEY} too
    values = {**{key.lower(): value for key, value in templates.items()}, **templates}
    try:
        return string.Template(text).substitute(values)
    except KeyError as exc:
        raise TemplateVariableMissing(exc.args[0], source) from None
    except ValueError as exc:  # a lone "$" not followed by a name
        raise ConfigError([f"{source}: {exc} (write $$ for a literal $)"]) from None


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    position = 0
    for match in _PATH_PART.finditer(path):
        gap = path[position : match.start()]
        if gap not in ("", ".") or (gap == "." and not parts):
            raise ValueError(f"cannot parse near {path[position:]!r}")
        key, index = match.groups()
        parts.append(int(index) if index is not None else key)
        position = match.end()
    if not parts or position != len(path):
        raise ValueError("expected keys separated by dots, with [index] for list items")
    return parts


def apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, Any], what: str = "override"
) -> None:
    """Set each dotted-path override in the raw config mapping `data`, in place.

    Raises ConfigError naming every override path that cannot be applied (as `what`).
    """
    errors = []
    for dotted, value in overrides.items():
        try:
            parts = _split_path(dotted)
            _assign(data, parts, value)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            errors.append(f"{what} {dotted}: {exc}")
    if errors:
        raise ConfigError(errors)


def config_value(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path (as overrides spell them) in a config mapping.

    Raises ConfigError naming the path when it cannot be parsed or leads nowhere.
    """
    try:
        parts = _split_path(dotted)
    except ValueError as exc:
        raise ConfigError([f"{dotted}: {exc}"]) from None
    try:
        return _walk(data, parts)
    except (KeyError, IndexError, TypeError) as exc:  # each names where the path stops
        raise ConfigError([str(exc.args[0])]) from None


def remove_config_key(data: dict[str, Any], dotted: str) -> bool:
    """Delete the key or list item at a dotted path from a config mapping, in place; False if
    there was none. Raises ConfigError for a path that cannot be parsed."""
    try:
        parts = _split_path(dotted)
    except ValueError as exc:
        raise ConfigError([f"{dotted}: {exc}"]) from None
    try:
        parent = _walk(data, parts[:-1])
        last = parts[-1]
        if isinstance(parent, list):
            del parent[_list_index(parent, last, dotted)]
            return True
        if isinstance(parent, dict) and last in parent:
            del parent[last]
            return True
    except (KeyError, IndexError, TypeError):
        pass
    return False


def _walk(data: Any, parts: list[str | int]) -> Any:
    node = data
    for depth, part in enumerate(parts):
        shown = _format_location(tuple(parts[: depth + 1]))
        if isinstance(node, list):
            index = _list_index(node, part, shown)
            if index >= len(node):
                raise IndexError(f"{shown}: no such item (the list has {len(node)})")
            node = node[index]
        elif isinstance(node, Mapping):
            if part not in node:
                raise KeyError(f"{shown}: not set")
            node = node[part]
        else:
            raise TypeError(f"{shown}: not a mapping or a list")
    return node


def _list_index(items: list[Any], part: str | int, shown: str) -> int:
    """A list item's position: ``[2]``, ``.2`` (Klio's own path spelling) or Klio's IO name."""
    if isinstance(part, int):
        return part
    if part.isdigit():
        return int(part)
    return _klio_io_index(items, part, shown)


def _assign(data: Any, parts: list[str | int], value: Any) -> None:
    node = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        shown = _format_location(tuple(parts[: depth + 1]))
        if isinstance(part, str) and isinstance(node, list):
            name = part
            try:
                part = _list_index(node, name, shown)
            except IndexError:
                added = _add_next_io_entry(node, name)
                if added is None:
                    raise
                part = added
        if isinstance(part, int):
            if not isinstance(node, list):
                raise TypeError(f"{shown}: not a list")
            if part == len(node):  # one past the end appends, as Klio's `config set` does
                node.append(value if last else {})
            elif part > len(node):
                raise IndexError(f"{shown}: no such item (the list has {len(node)})")
        elif not isinstance(node, dict):
            raise TypeError(f"{shown}: not a mapping")
        if last:
            node[part] = value
        elif isinstance(part, str) and node.get(part) is None:
            node[part] = {}
        node = node[part]


_NEXT_IO_NAME = re.compile(r"(pubsub|file|avro|bq)(\d+)")


def _add_next_io_entry(items: list[Any], name: str) -> int | None:
    """An override naming the next IO entry of a type (``file2`` after ``file0`` and ``file1``)
    adds one of that type, as Klio's overrides add an IO by its name; its position, or None for
    any other name (a typo, or a number past the next)."""
    found = _NEXT_IO_NAME.fullmatch(name)
    if found is None:
        return None
    kind, number = found.group(1), int(found.group(2))
    of_kind = [
        item for item in items
        if isinstance(item, Mapping) and not item.get("name") and item.get("type") == kind
    ]
    if number != len(of_kind):
        return None
    items.append({"type": kind})
    return len(items) - 1


def _klio_io_index(items: list[Any], name: str, shown: str) -> int:
    """The position of the IO entry Klio calls ``name``: the entry's own ``name``, else its type
    and its position among the unnamed entries of that type (``file0``, ``pubsub0``, ``file1``)."""
    names: list[str] = []
    unnamed: dict[str, int] = {}
    for item in items:
        entry = item if isinstance(item, Mapping) else {}
        own = entry.get("name")
        if own:
            names.append(str(own))
            continue
        kind = str(entry.get("type", ""))
        names.append(f"{kind}{unnamed.get(kind, 0)}")
        unnamed[kind] = unnamed.get(kind, 0) + 1
    if name not in names:
        raise IndexError(f"{shown}: no such item (named here: {', '.join(names) or 'none'})")
    return names.index(name)


def _key_values(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` strings → {KEY: VALUE} (VALUE as given).

    Raises ConfigError naming every pair without a key or an ``=``.
    """
    found: dict[str, str] = {}
    errors = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            errors.append(f"{what} {pair!r}: expected KEY=VALUE")
            continue
        found[key.strip()] = value
    if errors:
        raise ConfigError(errors)
    return found


def parse_overrides(
    pairs: Iterable[str], what: str = "override", custom_as_text: bool = True
) -> dict[str, Any]:
    """``KEY=VALUE`` strings (e.g. from ``-O``) into an overrides mapping (``what`` names them in
    errors).

    VALUE gets a type only when it plainly has one: ``true``/``false``, ``null``, a decimal
    number, or a YAML flow list or mapping (``[a, b]``, ``{k: v}``). Anything else stays the
    text given: ``no``, ``0755``, ``12:30`` or a date are not turned into a boolean, an octal,
    a sexagesimal or a date, as YAML 1.1 would.

    With ``custom_as_text`` a custom ``job_config`` key (one not declared by :class:`JobConfig`)
    gets the text given, as Klio's overrides give every value: the job's own code reads it,
    written for Klio. (Klio's ``config set`` types every value: it passes False.)
    """
    return {
        key: raw if custom_as_text and _is_custom_job_config_key(key) else _typed(raw)
        for key, raw in _key_values(pairs, what).items()
    }


def _is_custom_job_config_key(dotted: str) -> bool:
    try:
        parts = _split_path(dotted)
    except ValueError:
        return False  # apply_overrides says what is wrong with it
    if len(parts) < 2 or parts[0] != "job_config" or not isinstance(parts[1], str):
        return False
    fields = JobConfig.model_fields
    return parts[1] not in fields and all(f.alias != parts[1] for f in fields.values())


_PLAIN_NUMBER = re.compile(r"[-+]?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _typed(raw: str) -> Any:
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text) if any(mark in lowered for mark in ".e") else int(text)
    if text[:1] in ("[", "{"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return raw
    return raw


def parse_templates(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (Klio's ``-T``) into template values, kept as text."""
    return _key_values(pairs, "template")


def _dump_model(model: BaseModel, keep_unset: bool = False) -> dict[str, Any]:
    """A model as a plain dict in input spelling: declared fields that are None are left out
    (kept, as None, with ``keep_unset``), extra (custom) keys are kept exactly, even when None."""
    out: dict[str, Any] = {}
    undumped: frozenset[str] = getattr(model, "_UNDUMPED_DEFAULTS", frozenset())
    undumped -= model.model_fields_set
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name in undumped and not keep_unset:
            continue
        if value is not None or keep_unset:
            out[field.alias or name] = _dump_value(value, keep_unset)
    for name, value in (model.model_extra or {}).items():
        out[name] = _dump_value(value, keep_unset)
    return out


def _dump_value(value: Any, keep_unset: bool = False) -> Any:
    if isinstance(value, BaseModel):
        return _dump_model(value, keep_unset)
    if isinstance(value, list):
        return [_dump_value(item, keep_unset) for item in value]
    if isinstance(value, dict):
        return {key: _dump_value(item, keep_unset) for key, item in value.items()}
    return value


def dump_config(config: KlioConfig, keep_unset: bool = False) -> dict[str, Any]:
    """The config as a ``klio-job.yaml``-shaped dict; ``parse_config(dump_config(c)) == c``.
    ``keep_unset``: the settings the model declares but the config leaves unset are there too,
    as None (what ``klio job config get`` reads)."""
    return _dump_model(config, keep_unset)


__all__ = [
    "ConfigError",
    "DataConfig",
    "DataInput",
    "DataOutput",
    "EventInput",
    "EventOutput",
    "EventsConfig",
    "FileEventInput",
    "FileEventOutput",
    "JobConfig",
    "KlioConfig",
    "PipelineOptions",
    "PubSubEventInput",
    "PubSubEventOutput",
    "apply_overrides",
    "dump_config",
    "format_validation_errors",
    "load_config",
    "parse_config",
    "parse_overrides",
]
