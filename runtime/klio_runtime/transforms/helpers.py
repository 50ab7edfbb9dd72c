"""Klio's helper transforms, for jobs that compose the built-in steps themselves.

Each is a small DoFn over serialized KlioMessages, wrapped in a PTransform with Klio's output tags
(``process``/``pass_thru``, ``found``/``not_found``). The job's config comes from the ``config``
argument or, for Klio code that passes none, from the running job's context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from klio_runtime import message as kmessage
from klio_runtime.config import KlioConfig
from klio_runtime.context import KlioContext, bound_context, handling_element
from klio_runtime.io.pubsub_events import publish_to
from klio_runtime.io.storage import DataStore
from klio_runtime.metrics import in_job_bundle
from klio_runtime.routing import (
    JobRef,
    is_recipient,
    resume_top_down,
    trigger_upstream_request,
    with_audit_entry,
)
from klio_runtime.transforms import klio_lines
from klio_runtime.transforms.route import job_ref_of, placed

PROCESS, PASS_THRU, FOUND, NOT_FOUND, DROP = "process", "pass_thru", "found", "not_found", "drop"


class _KlioDoFn(beam.DoFn):
    transform_name = ""
    """Klio's name of the helper (its class name there): its counters' ``transform``."""
    counted: tuple[str, ...] = ()
    """Klio's counters of the helper (``kmsg-…``), made in setup as ``self.counters[name]``."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        self._config = config

    def setup(self) -> None:
        self._klio = KlioContext(self._config) if self._config is not None else bound_context()
        self.job = job_ref_of(self._klio.config)
        self.counters = {
            name: self._klio.metrics.counter(name, transform=self.transform_name)
            for name in self.counted
        }

    def parse(self, data: bytes) -> kmessage.KlioMessage:
        """As Klio's helpers read a message: whatever protobuf parses (even a message with no
        element) is taken, upgraded from v1; only bytes that are not protobuf at all raise."""
        try:
            return kmessage.parse(
                data, allow_non_klio=self._klio.config.job_config.allow_non_klio_messages
            )
        except kmessage.MessageDecodeError:
            return kmessage.upgrade(kmessage.KlioMessage.FromString(data))


def _tagged(dofn: beam.DoFn, *tags: str, main: str | None = None) -> Any:
    return (
        beam.ParDo(dofn).with_outputs(*tags, main=main)
        if main
        else beam.ParDo(dofn).with_outputs(*tags)
    )


class _CheckRecipients(_KlioDoFn):
    transform_name, counted = "KlioCheckRecipients", ("kmsg-drop-not-recipient",)

    def process(self, data: bytes) -> Iterator[Any]:
        msg = self.parse(data)
        if is_recipient(msg, self.job):
            # back at the job that asked its parents: top-down again (the message may change)
            yield pvalue.TaggedOutput(PROCESS, kmessage.serialize(resume_top_down(msg, self.job)))
            return
        with handling_element(msg.data.element):
            why = klio_lines.not_recipient(msg)
            if why is not None:
                self._klio.logger.log(*why)
            if msg.version == kmessage.V2:  # Klio's V1 check counts none
                self.counters["kmsg-drop-not-recipient"].inc()
            self._klio.metrics.dropped("not_recipient", kmessage.element_id(msg))
        yield pvalue.TaggedOutput(DROP, data)


class KlioCheckRecipients(beam.PTransform):
    """As Klio's: messages meant for this job → ``process`` (one whose ``trigger_children_of``
    is this job turned back to ``anyone``); the rest → ``drop``, counted."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def expand(self, pcoll: Any) -> Any:
        return pcoll | _tagged(_CheckRecipients(self.config), PROCESS, DROP)


class _UpdateAuditLog(_KlioDoFn):
    def process(self, data: bytes) -> Iterator[bytes]:
        msg = with_audit_entry(self.parse(data), self.job, datetime.now(UTC))
        if self._klio.logger.isEnabledFor(logging.DEBUG):
            self._klio.logger.debug(
                klio_lines.audit_log(msg), extra={"element_id": kmessage.element_id(msg)}
            )
        yield kmessage.serialize(msg)


class KlioUpdateAuditLog(beam.PTransform):
    """Append (now, this job) to each message's audit log."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def expand(self, pcoll: Any) -> Any:
        return pcoll | beam.ParDo(_UpdateAuditLog(self.config))


class _FilterPing(_KlioDoFn):
    transform_name, counted = "KlioFilterPing", ("kmsg-process-ping", "kmsg-skip-ping")

    def process(self, data: bytes) -> Iterator[Any]:
        msg = self.parse(data)
        data = kmessage.serialize(msg)  # as Klio's helpers hand it on: upgraded from v1
        element = kmessage.element_id(msg)
        config_ping = any(d.ping for d in self._klio.config.job_config.data.inputs)
        with handling_element(msg.data.element):
            if msg.metadata.ping or config_ping:
                self._klio.logger.info(klio_lines.ping_passes(element))
                self.counters["kmsg-skip-ping"].inc()
                if not in_job_bundle():  # in a job's run, its router counted every ping
                    self._klio.metrics.skipped("ping")
                tag = PASS_THRU
            else:
                if self._klio.logger.isEnabledFor(logging.DEBUG):
                    self._klio.logger.debug(klio_lines.ping_off(element))
                self.counters["kmsg-process-ping"].inc()
                tag = PROCESS
        yield pvalue.TaggedOutput(tag, data)


class KlioFilterPing(beam.PTransform):
    """Pings → ``pass_thru``; the rest → ``process``."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def expand(self, pcoll: Any) -> Any:
        return pcoll | _tagged(_FilterPing(self.config), PROCESS, PASS_THRU)


class _FilterForce(_KlioDoFn):
    transform_name, counted = "KlioFilterForce", ("kmsg-process-force", "kmsg-skip-force")

    def process(self, data: bytes) -> Iterator[Any]:
        msg = self.parse(data)
        data = kmessage.serialize(msg)  # as Klio's helpers hand it on: upgraded from v1
        element = kmessage.element_id(msg)
        outputs = self._klio.config.job_config.data.outputs
        path = outputs[0].path_shown(element) if outputs else element
        config_force = any(d.force for d in outputs)
        with handling_element(msg.data.element):
            if msg.metadata.force or config_force:
                self._klio.logger.info(klio_lines.output_exists_forced(element, path))
                self.counters["kmsg-process-force"].inc()
                tag = PROCESS
            else:
                self._klio.logger.info(klio_lines.output_exists_passes(element, path))
                self.counters["kmsg-skip-force"].inc()
                self._klio.metrics.skipped("output_exists")
                tag = PASS_THRU
        yield pvalue.TaggedOutput(tag, data)


class KlioFilterForce(beam.PTransform):
    """For messages whose output exists: forced → ``process``, else → ``pass_thru``."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def expand(self, pcoll: Any) -> Any:
        return pcoll | _tagged(_FilterForce(self.config), PROCESS, PASS_THRU)


class _CheckExists(_KlioDoFn):
    """Tags ``found``/``not_found`` per message, checking ``batch_size`` messages at a time."""

    def __init__(
        self, direction: str, config: KlioConfig | None = None, batch_size: int = 500
    ) -> None:
        super().__init__(config)
        self.direction = direction
        self.batch_size = batch_size
        self.transform_name = f"KlioGcsCheck{direction.title()}Exists"
        self.counted = (f"kmsg-data-found-{direction}", f"kmsg-data-not-found-{direction}")

    def setup(self) -> None:
        super().setup()
        data = self._klio.config.job_config.data
        locations = data.inputs if self.direction == "input" else data.outputs
        if not locations:
            raise ValueError(
                f"job_config.data.{self.direction}s: the existence check needs one configured"
            )
        if locations[0].location is None:
            raise ValueError(
                f"job_config.data.{self.direction}s[0].location: the existence check looks there"
            )
        self.location = locations[0]
        self.store = DataStore()

    def start_bundle(self) -> None:
        # (message, element, its path, timestamp, window)
        self.pending: list[tuple[bytes, bytes, str, Any, Any]] = []

    def process(
        self,
        data: bytes,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[Any]:
        msg = self.parse(data)
        data = kmessage.serialize(msg)  # as Klio's helpers hand it on: upgraded from v1
        element = kmessage.element_id(msg)
        try:
            path = self.location.path_for(element)
        except kmessage.InvalidElementId as err:  # never a path: its data cannot be there
            with handling_element(msg.data.element):
                self._klio.logger.warning("%s not checked: %s", self.direction.title(), err)
                self.counters[self.counted[1]].inc()
            yield pvalue.TaggedOutput(NOT_FOUND, data)
            return
        # each message leaves in its own window, at its own time, whenever its batch is checked
        self.pending.append((data, msg.data.element, path, timestamp, window))
        if len(self.pending) >= self.batch_size:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._flush()

    def _flush(self) -> Iterator[pvalue.TaggedOutput]:
        batch, self.pending = self.pending, []
        found = self.store.exists_many(path for _, _, path, _, _ in batch) if batch else {}
        found_counter, not_found_counter = (self.counters[name] for name in self.counted)
        for data, element, path, timestamp, window in batch:
            with handling_element(element):
                self._klio.logger.info(klio_lines.data_checked(self.direction, found[path], path))
                (found_counter if found[path] else not_found_counter).inc()
            tag = FOUND if found[path] else NOT_FOUND
            yield placed(pvalue.TaggedOutput(tag, data), timestamp, window)


class _ExistenceCheck(beam.PTransform):
    direction = "input"

    def __init__(self, config: KlioConfig | None = None, batch_size: int = 500) -> None:
        super().__init__()
        self.config = config
        self.batch_size = batch_size

    def expand(self, pcoll: Any) -> Any:
        return pcoll | _tagged(
            _CheckExists(self.direction, self.config, self.batch_size), FOUND, NOT_FOUND
        )


class KlioCheckInputExists(_ExistenceCheck):
    """``found`` / ``not_found`` for the first data input (local or gs://), batched."""


class KlioCheckOutputExists(_ExistenceCheck):
    """``found`` / ``not_found`` for the first data output (local or gs://), batched."""

    direction = "output"


KlioGcsCheckInputExists = KlioCheckInputExists
KlioGcsCheckOutputExists = KlioCheckOutputExists


class _Drop(_KlioDoFn):
    transform_name, counted = "KlioDrop", ("kmsg-drop",)

    def process(self, data: bytes) -> Iterator[Any]:
        start = time.perf_counter()
        stats = self._klio.metrics.transform("KlioDrop.process")
        batched = stats.arrived()
        log = stats.logging()
        if log:  # Klio's [kmsg-received] line, before its drop line, as handle_klio logs it
            stats.log_received()
        msg = self.parse(data)
        element = kmessage.element_id(msg)
        with handling_element(msg.data.element):
            self._klio.logger.info(klio_lines.dropping(msg.data.element))
            self.counters["kmsg-drop"].inc()
        self._klio.metrics.dropped("klio_drop", element)
        # Klio's KlioDrop is a handle_klio step: its per-transform metrics too
        stats.finished(1, False, time.perf_counter() - start, log, batched)
        return iter(())


class KlioDrop(beam.PTransform):
    """Drop messages on purpose: logged and counted under reason ``klio_drop``."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def expand(self, pcoll: Any) -> Any:
        return pcoll | beam.ParDo(_Drop(self.config))


class KlioMessageCounter(beam.PTransform, beam.DoFn):  # type: ignore[misc]
    """Count elements passing by under ``kmsg-<suffix>`` (Klio's name); elements pass unchanged.

    A DoFn, as Klio's: ``beam.ParDo(KlioMessageCounter(suffix="x", bind_transform="T"))``. Klio's
    docs also show ``pcoll | KlioMessageCounter(...)``, so it is a PTransform as well (applying
    itself as that ParDo).
    """

    def __init__(
        self, suffix: str, bind_transform: str | None = None, config: KlioConfig | None = None
    ) -> None:
        beam.PTransform.__init__(self)
        self.suffix = suffix
        self.bind_transform = bind_transform
        self.name = f"kmsg-{suffix}"
        self._config = config

    def setup(self) -> None:
        self._klio = KlioContext(self._config) if self._config is not None else bound_context()
        self.counter = self._klio.metrics.counter(self.name, transform=self.bind_transform)

    def process(self, item: Any) -> Iterator[Any]:
        self.counter.inc()
        yield item

    def expand(self, pcoll: Any) -> Any:
        return pcoll | beam.ParDo(self)


class _TriggerUpstream(_KlioDoFn):
    def __init__(self, parent: JobRef, log_level: int | None, config: KlioConfig | None) -> None:
        super().__init__(config)
        self.parent = parent
        self.log_level = log_level

    def process(self, data: bytes) -> Iterator[bytes]:
        msg = self.parse(data)
        request = trigger_upstream_request(msg, self.job, self.parent)
        if self.log_level is not None:
            element = kmessage.element_id(msg)
            self._klio.logger.log(
                self.log_level, "Triggering upstream %s for %s", self.parent.job_name, element
            )
        yield kmessage.serialize(request)


def _upstream_project(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not all(parts):
        raise ValueError(
            f"KlioTriggerUpstream: upstream_topic must be 'projects/<GCP_PROJECT>/topics/<TOPIC>',"
            f" not {topic!r}"
        )
    return parts[1]


def _log_level(level: str | int | None) -> int | None:
    if level is None:
        return None
    found = logging.getLevelName(level.upper() if isinstance(level, str) else level)
    if isinstance(found, int):
        return found
    if isinstance(level, int) and isinstance(found, str) and not found.startswith("Level "):
        return level
    raise ValueError(f"KlioTriggerUpstream: unknown log_level {level!r}")


class KlioTriggerUpstream(beam.PTransform):
    """Messages whose input is missing → bottom-up requests for ``upstream_job_name``, logged
    (``log_level``; None: not logged), counted (``kmsg-trigger-upstream``) and published to
    ``upstream_topic``, as Klio's: through the runner's Pub/Sub sink, or, in ``klio worker``,
    by the worker before it acknowledges the batch. Returns the requests.

    As in Klio, only a streaming job may trigger its parents, ``upstream_topic`` must be a topic
    path (its project is the parent's) and ``log_level`` a logging level: anything else is an
    error when the pipeline is built.
    """

    def __init__(
        self,
        upstream_job_name: str,
        upstream_topic: str,
        log_level: str | int | None = "INFO",
        config: KlioConfig | None = None,
    ) -> None:
        super().__init__()
        self.parent = JobRef(upstream_job_name, _upstream_project(upstream_topic))
        self.upstream_topic = upstream_topic
        self.log_level = _log_level(log_level)
        self.config = config

    def default_label(self) -> str:
        return f"KlioTriggerUpstream(upstream={self.parent.job_name})"

    def expand(self, pcoll: Any) -> Any:
        config = self.config if self.config is not None else bound_context().config
        if not config.pipeline_options.streaming:
            raise ValueError(
                "KlioTriggerUpstream: only a streaming job can trigger its parents "
                "(pipeline_options.streaming is false)"
            )
        name = self.parent.job_name
        counter = KlioMessageCounter("trigger-upstream", "KlioTriggerUpstream", self.config)
        requests = (
            pcoll
            | f"Update KlioMessage for Upstream {name}"
            >> beam.ParDo(_TriggerUpstream(self.parent, self.log_level, self.config))
            | "Write Counter" >> counter
        )
        _ = requests | f"Publish KlioMessage to Upstream {name}" >> publish_to(self.upstream_topic)
        return requests


class KlioWriteToEventOutput(beam.PTransform):
    """Write messages to the job's event output, counted under ``kmsg-output``. Exactly one event
    output must be configured, as in Klio. Inside a Klio job whose output Klio writes too (no
    ``skip_klio_write``), the messages join that writer's (one writer per file prefix, so
    neither overwrites the other); else this writes them itself."""

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def expand(self, pcoll: Any) -> Any:
        from klio_runtime.io.pubsub_events import pubsub_project
        from klio_runtime.pipeline import event_writer, to_job_event_output

        config = self.config if self.config is not None else bound_context().config
        outputs = config.job_config.events.outputs
        if len(outputs) != 1:
            raise ValueError(
                "KlioWriteToEventOutput needs exactly one job_config.events.outputs entry, not "
                f"{len(outputs)}"
            )
        out = outputs[0]
        counted = pcoll | "Write Counter" >> KlioMessageCounter(
            "output", "KlioWriteToEventOutput", config
        )
        if not out.skip_klio_write and to_job_event_output(counted):
            return counted
        return counted | f"Writing to '{out.type}'" >> event_writer(out, 0, pubsub_project(config))


class _DebugMessage(_KlioDoFn):
    def __init__(self, prefix: str, level: int, config: KlioConfig | None) -> None:
        super().__init__(config)
        self.prefix = prefix
        self.level = level

    def process(self, data: bytes) -> Iterator[bytes]:
        msg = self.parse(data)
        element = kmessage.element_id(msg)
        # the message as its protobuf text, as Klio's KlioDebugMessage shows it
        self._klio.logger.log(self.level, "%s%s", self.prefix, msg, extra={"element_id": element})
        yield data


class KlioDebugMessage(beam.PTransform):
    """Log each message (its protobuf text, after ``prefix``, at ``log_level``) on the job's logger
    and pass it on; counted under ``kmsg-debug``."""

    def __init__(
        self,
        prefix: str = "DEBUG: ",
        log_level: str | int = "INFO",
        config: KlioConfig | None = None,
    ) -> None:
        super().__init__()
        level = logging.getLevelName(log_level.upper()) if isinstance(log_level, str) else log_level
        if not isinstance(level, int):
            raise ValueError(f"KlioDebugMessage: unknown log_level {log_level!r}")
        self.prefix, self.level, self.config = prefix, level, config

    def expand(self, pcoll: Any) -> Any:
        counter = KlioMessageCounter("debug", "KlioDebugMessage", self.config)
        return (
            pcoll
            | "Debug Message Counter" >> counter
            | "Log" >> beam.ParDo(_DebugMessage(self.prefix, self.level, self.config))
        )


def _set_trace(data: Any) -> Any:
    import pdb  # only when a job asks for a debugger

    pdb.set_trace()
    return data


class KlioSetTrace(beam.PTransform):
    """A Python debugger stop at each element (for a local run)."""

    def expand(self, pcoll: Any) -> Any:
        return pcoll | beam.Map(_set_trace)


class KlioAckInputMessage(beam.DoFn):
    """Klio's acknowledgement step (``beam.ParDo(KlioAckInputMessage())``), which its GKE runner
    appended to mark a Pub/Sub message done. Here ``klio worker`` acknowledges each message once
    its work is done, so this step passes each element on unchanged."""

    def process(self, element: Any) -> Iterator[Any]:
        yield element
