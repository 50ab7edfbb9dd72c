"""The built-in steps before ``run``: recipients → audit log → ping → output exists/force → input
exists.

One DoFn applies the pure decisions of :mod:`klio_runtime.routing` in the design's order. Existence
is checked in batches (``batch_size`` messages; :mod:`klio_runtime.io.storage`) before each batch
is decided. Outputs (tags): ``process`` (bytes for ``run``), ``pass_thru`` (ping / output exists, to
the event output), ``input_missing`` (the hook for bottom-up requests), ``dropped``
(:class:`Dropped`), ``dead_letter`` (bytes that are not a KlioMessage, ids that cannot be paths).

As in Klio (its ``run.py`` builds the ping and output-exists filters only for a job with data
inputs or checked data outputs), a job with neither has no ``pass_thru``: its ping messages go to
``run``. There every ``handle_klio`` step passes a ping on without calling the job's function, as
Klio's docs say of a ping (no transformation work); Klio's own decorator would call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from klio_runtime import message as kmessage
from klio_runtime.config import DataInput, DataOutput, KlioConfig
from klio_runtime.context import bind_context, handling_element, job_context, printable
from klio_runtime.io.events import DEAD_LETTER_TAG, DeadLetter
from klio_runtime.io.storage import DataStore
from klio_runtime.message import V2, element_id
from klio_runtime.metrics import Counter, batch_until_bundle_end, bundle_ended, element_progress
from klio_runtime.routing import (
    AuditStamper,
    Decision,
    JobRef,
    decide,
    is_recipient,
    resume_top_down,
)
from klio_runtime.transforms import klio_lines
from klio_runtime.transforms.io import writer_names

PROCESS = "process"
PASS_THRU = "pass_thru"
INPUT_MISSING = "input_missing"
DROPPED = "dropped"
TAGS = (PASS_THRU, INPUT_MISSING, DROPPED, DEAD_LETTER_TAG)


KLIO_STEP_COUNTERS = {
    "kmsg-drop-not-recipient": "KlioCheckRecipients",
    "kmsg-drop": "KlioDrop",
    "kmsg-process-ping": "KlioFilterPing",
    "kmsg-skip-ping": "KlioFilterPing",
    "kmsg-data-found-output": "KlioGcsCheckOutputExists",
    "kmsg-data-not-found-output": "KlioGcsCheckOutputExists",
    "kmsg-process-force": "KlioFilterForce",
    "kmsg-skip-force": "KlioFilterForce",
    "kmsg-data-found-input": "KlioGcsCheckInputExists",
    "kmsg-data-not-found-input": "KlioGcsCheckInputExists",
}
"""Klio's default counters of its built-in steps, each under the helper transform that counts
it in Klio's pipeline (metrics.rst): only the steps a job has count, as in Klio."""


@dataclass(frozen=True)
class Dropped:
    """A message the job will not handle, and why (``reason`` is the counted label)."""

    element: str
    reason: str


def job_ref_of(config: KlioConfig) -> JobRef:
    return JobRef(config.job_name, str(config.pipeline_options.project or ""))


def data_inputs(config: KlioConfig) -> list[DataInput]:
    return [d for d in config.job_config.data.inputs if not d.skip_klio_existence_check]


def data_outputs(config: KlioConfig) -> list[DataOutput]:
    return [d for d in config.job_config.data.outputs if not d.skip_klio_existence_check]


def has_pass_thru(config: KlioConfig) -> bool:
    """Whether messages can skip ``run`` to the event output: a ping needs a data input and
    "output exists" a checked data output, as in Klio."""
    return bool(config.job_config.data.inputs) or bool(data_outputs(config))


class RouteMessages(beam.DoFn):
    """Serialized KlioMessage in; the decision's tagged output out."""

    # (timestamp, window) of the message in process, for one that waits for its batch's checks;
    # None here: Beam passes them only to a process that asks (RouteCheckingData), at a cost
    _where: tuple[Any, Any] | None = None

    def __init__(
        self, config: KlioConfig, batch_size: int = 500, read_by: str | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.config = config
        self.batch_size = batch_size
        self.read_by = read_by

    def setup(self) -> None:
        self.ctx = job_context(self.config)
        bind_context(self.ctx)
        self.metrics = self.ctx.metrics
        self.metrics.read_by = self.read_by
        self.metrics.written_by = writer_names(self.config)  # pings and done ones are written too
        self.job = job_ref_of(self.config)
        self.stamp_audit = AuditStamper(self.job.to_proto())
        self.inputs: Sequence[DataInput] = data_inputs(self.config)
        self.outputs: Sequence[DataOutput] = data_outputs(self.config)
        self.passes_thru = has_pass_thru(self.config)
        self.ping = any(d.ping for d in self.config.job_config.data.inputs)
        self.force = any(d.force for d in self.config.job_config.data.outputs)
        self.allow_non_klio = self.config.job_config.allow_non_klio_messages
        self.checks_data = bool(self.inputs or self.outputs)
        self.store = DataStore()
        self.to_run = Metrics.counter(self.config.job_name, "klio_messages_to_run")
        self.klio_counters: dict[str, Counter] = {}

    def start_bundle(self) -> None:
        batch_until_bundle_end()  # finish_bundle flushes what the job's steps count meanwhile
        self.metrics.refresh_log_io()
        self.logger = self.ctx.logger
        self.debug = self.logger.isEnabledFor(logging.DEBUG)  # Klio's DEBUG lines cost a format
        # messages waiting for their batch's existence checks, with where each was (see _where)
        self.pending: list[tuple[kmessage.KlioMessage, tuple[Any, Any] | None]] = []
        self.to_run_count = 0  # Beam's counter gets the bundle's total at its end

    def process(self, data: bytes) -> Iterable[Any]:
        # A list, not a generator: this runs once per message and Beam iterates either.
        self.metrics.received()
        msg = kmessage.take_carried(data)  # decoded by the job's own event reader
        if msg is None:
            try:
                msg = kmessage.parse(data, allow_non_klio=self.allow_non_klio)
            except kmessage.MessageDecodeError as err:
                self.ctx.logger.error(klio_lines.CANNOT_PARSE)
                return [self._dead_letter("decode_error", str(err), repr(data[:60]))]
        if self.checks_data:  # its id becomes paths here; else the element may be any bytes
            try:
                kmessage.validate_element_id(msg.data.element)
            except kmessage.InvalidElementId as err:
                return [self._dead_letter("invalid_element_id", str(err), element_id(msg))]
        metadata = msg.metadata  # one wrapper object for the checks below
        kind = metadata.intended_recipients.WhichOneof("recipients")
        # the common message, checked inline: V2 for anyone (else is_recipient's rules)
        if not ((kind == "anyone" and msg.version == V2) or is_recipient(msg, self.job)):
            return [self._not_recipient(msg)]
        if kind == "limited":
            msg = resume_top_down(msg, self.job)
            metadata = msg.metadata
        # the message was parsed here, so it is ours to change: no copy
        self.stamp_audit(msg, time.time_ns())
        if self.debug:
            self.logger.debug(klio_lines.audit_log(msg), extra={"element_id": element_id(msg)})
        if metadata.ping or self.ping:
            if self.passes_thru:
                with handling_element(msg.data.element):
                    return list(self._act(Decision.PASS_PING, msg))
            self.metrics.skipped("ping")
            # not carried: run's handle_klio steps parse it, see the ping and pass it on untouched
            return [kmessage.serialize(msg)]
        if self.config.job_config.data.inputs:  # where Klio's ping filter runs
            self._count("kmsg-process-ping")
            if self.debug:
                element = element_id(msg)
                self.logger.debug(klio_lines.ping_off(element), extra={"element_id": element})
        if not self.checks_data:
            self.to_run_count += 1
            return [kmessage.carry(msg)]
        self.pending.append((msg, self._where))
        element_progress.waiting += 1
        if len(self.pending) >= self.batch_size:
            return self._flush()  # consumed at once, each output handed on as it is made
        return []

    def finish_bundle(self) -> Iterator[Any]:
        for out in self._flush():
            value = out.value if isinstance(out, pvalue.TaggedOutput) else out
            yield out if isinstance(value, WindowedValue) else placed(out, 0, GlobalWindow())
        # After the yields: the job's fused steps have handled these last messages by now, so
        # what they counted in this context (their per-transform metrics) is handed on too.
        self.metrics.flush()
        bundle_ended()
        if self.to_run_count:
            self.to_run.inc(self.to_run_count)
            element_progress.sent_to_run += self.to_run_count
            self.to_run_count = 0

    def _flush(self) -> Iterator[Any]:
        batch, self.pending = self.pending, []
        if not batch:
            return
        force_all = self.force
        wanted: list[str] = []
        for msg, _ in batch:
            element = kmessage.element_id(msg)
            # forced or not, as Klio: the output is looked at (and logged) before the force filter
            wanted.extend(d.path_for(element) for d in self.outputs)
            wanted.extend(d.path_for(element) for d in self.inputs)
        found = self.store.exists_many(wanted) if wanted else {}
        # In Klio's order: its output check and force filter see the whole batch first, then its
        # input check and run take each message in turn (run's lines follow each input line).
        looked = []
        for msg, where in batch:
            with handling_element(msg.data.element):
                looked.append((msg, where, self._output_checked(msg, found, force_all)))
        for msg, where, (forced, outputs_found) in looked:
            with handling_element(msg.data.element):
                # made before the yields: the job's fused steps run inside each yield
                outs = list(self._decide_checked(msg, found, forced, outputs_found))
            element_progress.waiting -= 1
            for out in outs:
                yield out if where is None else placed(out, *where)

    def _output_checked(
        self, msg: kmessage.KlioMessage, found: Mapping[str, bool], force_all: bool
    ) -> tuple[bool, bool | None]:
        """Whether ``msg`` is forced and its outputs exist, logged as Klio's output check and
        force filter log them."""
        element = kmessage.element_id(msg)
        forced = msg.metadata.force or force_all
        outputs_found = self._checked("output", element, self.outputs, found)
        if outputs_found:
            path = self.outputs[0].path_for(element)
            shown = klio_lines.output_exists_forced if forced else klio_lines.output_exists_passes
            self.logger.info(shown(element, path))
            self._count("kmsg-process-force" if forced else "kmsg-skip-force")
        return forced, outputs_found

    def _decide_checked(
        self,
        msg: kmessage.KlioMessage,
        found: Mapping[str, bool],
        forced: bool,
        outputs_found: bool | None,
    ) -> Iterator[Any]:
        if outputs_found and not forced:
            yield from self._emit(msg, True, None)
            return
        inputs_found = self._checked("input", kmessage.element_id(msg), self.inputs, found)
        yield from self._emit(msg, None if forced else outputs_found, inputs_found)

    def _checked(
        self, direction: str, element: str, locations: Sequence[Any], found: Mapping[str, bool]
    ) -> bool | None:
        """Whether every location holds the element (None: none to check), each logged as
        Klio's existence checks log it."""
        if not locations:
            return None
        every = True
        for location in locations:
            path = location.path_for(element)
            self.logger.info(klio_lines.data_checked(direction, found[path], path))
            every = every and found[path]
        self._count(f"kmsg-data-found-{direction}" if every else f"kmsg-data-not-found-{direction}")
        return every

    def _emit(
        self, msg: kmessage.KlioMessage, outputs_exist: bool | None, inputs_exist: bool | None
    ) -> Iterator[Any]:
        decision = decide(
            msg,
            self.job,
            outputs_exist=outputs_exist,
            inputs_exist=inputs_exist,
            ping=self.ping,
            force=self.force,
        )
        yield from self._act(decision, msg)

    def _act(self, decision: Decision, msg: kmessage.KlioMessage) -> Iterator[Any]:
        if decision is Decision.PROCESS:
            self.to_run_count += 1
            yield kmessage.carry(msg)
        elif decision is Decision.PASS_PING:
            self.logger.info(klio_lines.ping_passes(kmessage.element_id(msg)))
            if self.config.job_config.data.inputs:
                self._count("kmsg-skip-ping")
            self.metrics.skipped("ping")
            self.metrics.output()  # ready for the event output as it is
            yield pvalue.TaggedOutput(PASS_THRU, kmessage.serialize(msg))
        elif decision is Decision.PASS_OUTPUT_EXISTS:
            self.metrics.skipped("output_exists")
            self.metrics.output()
            yield pvalue.TaggedOutput(PASS_THRU, kmessage.serialize(msg))
        elif decision is Decision.INPUT_MISSING:
            element = kmessage.element_id(msg)
            # as Klio's built-in flow drops it (a streaming worker then asks the parents)
            self.logger.info(klio_lines.dropping(msg.data.element), extra={"element_id": element})
            self._count("kmsg-drop")
            yield pvalue.TaggedOutput(INPUT_MISSING, kmessage.serialize(msg))
            yield self._drop(element, "input_missing")
        else:
            yield self._not_recipient(msg)

    def _not_recipient(self, msg: kmessage.KlioMessage) -> pvalue.TaggedOutput:
        """Logged and counted as Klio's recipient check and its KlioDrop log and count it."""
        element = element_id(msg)
        why = klio_lines.not_recipient(msg)
        if why is not None:
            self.logger.log(*why, extra={"element_id": element})
        self.logger.info(klio_lines.dropping(msg.data.element), extra={"element_id": element})
        if msg.version == V2:  # Klio's V1 check counts none
            self._count("kmsg-drop-not-recipient")
        self._count("kmsg-drop")
        return self._drop(element, "not_recipient")

    def _count(self, name: str) -> None:
        """One of :data:`KLIO_STEP_COUNTERS`, made when first counted."""
        counter = self.klio_counters.get(name)
        if counter is None:
            counter = self.klio_counters[name] = self.ctx.metrics.counter(
                name, transform=KLIO_STEP_COUNTERS[name]
            )
        counter.inc()

    def _drop(self, element: str, reason: str) -> pvalue.TaggedOutput:
        self.metrics.dropped(reason, element)
        return pvalue.TaggedOutput(DROPPED, Dropped(element, reason))

    def _dead_letter(self, reason: str, detail: str, element: str) -> pvalue.TaggedOutput:
        self.metrics.dead_lettered(reason, element)
        self.ctx.logger.warning(  # an id refused for its control characters is shown escaped
            "dead letter (%s) %s: %s", reason, printable(element), printable(detail),
            extra={"element_id": element},
        )
        return pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter(reason, "message", detail, element))


class RouteCheckingData(RouteMessages):
    """RouteMessages for a job with existence checks: a message decided when its batch is
    checked still leaves in its own window, at its own time."""

    def process(
        self,
        data: bytes,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterable[Any]:
        self._where = (timestamp, window)
        return super().process(data)


def placed(out: Any, timestamp: Any, window: Any) -> Any:
    """``out`` (a TaggedOutput or a value) as the WindowedValue Beam takes from a DoFn that
    emits a message other than the one it is processing."""
    if isinstance(out, pvalue.TaggedOutput):
        return pvalue.TaggedOutput(out.tag, WindowedValue(out.value, timestamp, (window,)))
    return WindowedValue(out, timestamp, (window,))


class KlioRoute(beam.PTransform):
    """The built-in steps as one transform; see the module docstring for its outputs."""

    def __init__(
        self, config: KlioConfig, batch_size: int = 500, read_by: str | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.batch_size = batch_size
        self.read_by = read_by
        """Klio's name of the transform that read the messages (their ``kmsg-read``)."""

    def expand(self, pcoll: beam.PCollection) -> pvalue.DoOutputsTuple:
        checks = data_inputs(self.config) or data_outputs(self.config)
        route = RouteCheckingData if checks else RouteMessages
        return pcoll | "Route" >> beam.ParDo(
            route(self.config, self.batch_size, self.read_by)
        ).with_outputs(*TAGS, main=PROCESS)
