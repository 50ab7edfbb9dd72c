"""The shape every audio transform shares: a small DoFn per step, applied as a ParDo.

A step receives an AudioItem (or KlioMessage bytes), computes one thing, and emits an AudioItem.
Any failure for an element drops that element — logged with its id, counted by reason on the job's
metrics (``klio_messages_dropped_total{reason}``) and sent to the ``drop`` tagged output — and the
worker goes on with the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from klio_runtime import message as kmessage
from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError
from klio_runtime.audio.item import AudioItem, as_item
from klio_runtime.config import KlioConfig
from klio_runtime.context import KlioContext, bound_context, handling_element, klio_logger
from klio_runtime.metrics import KlioMetrics
from klio_runtime.transforms import klio_lines

DROP_TAG = "drop"
_KLIO_PROCESS = {
    plot: "KlioPlotBaseDoFn.process" for plot in ("SpecToPlot", "MelSpecToPlot", "MFCCToPlot")
}
RUN_ERROR = "run_error"
_STANDALONE_JOB = "klio-audio"


class StepRuntime:
    """What a step needs at run time: the job config (if any), a logger, the job's metrics."""

    def __init__(
        self, config: KlioConfig | None, logger: logging.Logger, metrics: KlioMetrics
    ) -> None:
        self.config = config
        self.logger = logger
        self.metrics = metrics

    @classmethod
    def resolve(cls, config: KlioConfig | None) -> StepRuntime:
        """From the config given to the transform, else the running job's, else standalone."""
        if config is not None:
            ctx = KlioContext(config)
            return cls(config, ctx.logger, ctx.metrics)
        try:
            ctx = bound_context()
        except RuntimeError:  # plain Beam pipeline, no Klio job: count under a fixed name
            return cls(None, klio_logger(), KlioMetrics(_STANDALONE_JOB))
        return cls(ctx.config, ctx.logger, ctx.metrics)


class AudioDoFn(beam.DoFn):
    """Base of the audio steps: subclasses implement :meth:`apply` (and maybe :meth:`warm_up`)."""

    step = "audio"
    #: load_with_numpy for KlioMessage bytes arriving here (None: recognise the payload).
    payload_numpy: bool | None = None
    #: False for a step that never looks at the payload it receives: it is not decoded.
    reads_payload = True
    # AudioItems in; out, serialized messages as Klio's steps emit, or AudioItems where every
    # reader of this step's output takes them (set by transforms.handoff once a Klio job's
    # pipeline is built: a plain Beam pipeline, a job's own test, gets Klio's bytes).
    emits_klio_objects = True
    reads_klio_objects = True
    hand_on_bytes = True

    def __init__(self, config: KlioConfig | None = None) -> None:
        super().__init__()
        if config is None:
            # Built inside a job's run(): keep the job's config now, so workers do not depend on
            # which DoFn binds the context first.
            try:
                config = bound_context().config
            except RuntimeError:
                config = None
        self._config = config
        self._rt: StepRuntime | None = None

    def setup(self) -> None:
        self._rt = StepRuntime.resolve(self._config)
        self.warm_up()

    def finish_bundle(self) -> None:
        # Klio's per-transform metrics batched in a job's bundle (see process) reach Beam in it
        self.step_runtime().metrics.flush()

    def warm_up(self) -> None:
        """Heavy one-time set-up (decoders, numba kernels), done once per DoFn instance."""

    def apply(self, item: AudioItem) -> Any:
        raise NotImplementedError

    def step_runtime(self) -> StepRuntime:
        """The config, logger and metrics of the run; set up at once when process() is called
        without setup() (direct calls in tests). A method, not a property: Beam reads every
        attribute of a DoFn while it builds the graph, and would set the step up there."""
        if self._rt is None:
            self.setup()
        assert self._rt is not None
        return self._rt

    @property
    def klio_transform(self) -> str:
        """The transform Klio's per-transform metrics name this step after: the method its
        ``@_handle_klio`` decorates (the three spectrogram plots share their base class's)."""
        return _KLIO_PROCESS.get(self.step, f"{self.step}.process")

    def process(self, incoming: Any) -> Iterator[Any]:
        stats = self.step_runtime().metrics.transform(self.klio_transform)
        log = stats.logging()
        batched = stats.arrived()
        if log:
            stats.log_received()
        start = time.perf_counter()
        element = ""
        dropped = None
        try:
            item = as_item(incoming, numpy=self.payload_numpy, decode=self.reads_payload)
            element = item.element
            with handling_element(element):
                out = self.apply(item)
                out = bytes(out) if self.hand_on_bytes and isinstance(out, AudioItem) else out
        except AudioError as err:
            dropped = self._drop(incoming, element or err.element, err.reason, err)
        except Exception as err:
            dropped = self._drop(incoming, element, RUN_ERROR, err)
        # Klio's kmsg-received / -success / -drop-error / -timer, as its audio DoFns count them
        passed = dropped is None
        stats.finished(int(passed), not passed, time.perf_counter() - start, log, batched)
        yield out if dropped is None else dropped

    def _drop(self, incoming: Any, element: str, reason: str, err: Exception) -> Any:
        rt = self.step_runtime()
        # Klio's line (its audio steps drop through @_handle_klio), the element id on the
        # record; an AudioError's text names the element and the counted reason
        rt.logger.error(
            klio_lines.exception_dropped(self.klio_transform, _message_shown(incoming), err, ""),
            exc_info=err if reason == RUN_ERROR else None,
            extra={"element_id": element or "-"},
        )
        rt.metrics.dropped(reason, element or None)
        return pvalue.TaggedOutput(DROP_TAG, _as_message_bytes(incoming))


def _as_message_bytes(incoming: Any) -> Any:
    """What a dropped element leaves by: the KlioMessage bytes it came as, as any reader of
    the drop output gets them (an item another audio step handed on becomes those bytes; one
    whose payload cannot be encoded leaves without it)."""
    if not isinstance(incoming, AudioItem):
        return incoming
    try:
        return bytes(incoming)
    except Exception:
        return kmessage.serialize(incoming.message)


def _message_shown(incoming: Any) -> Any:
    """The message a drop line shows, as Klio shows it, without its payload (audio bytes or
    arrays would fill the log)."""
    if isinstance(incoming, AudioItem):
        msg = incoming.message
    else:
        try:
            msg = kmessage.parse(bytes(incoming))
        except Exception:
            return repr(incoming)[:80]
    shown = kmessage.KlioMessage()
    shown.CopyFrom(msg)
    shown.data.ClearField("payload")
    return shown


class AudioStep(beam.ParDo):
    """``pcoll | Step(...)``: a ParDo of the step's DoFn, as each of Klio's audio transforms is
    (its metaclass wraps the DoFn in ``beam.ParDo``). Dropped elements go to the ``drop`` output:
    ``Step().with_outputs(DROP_TAG, main="main")`` gives them beside the main output."""

    def __init__(self, dofn: AudioDoFn, output_type: Any = AudioItem) -> None:
        super().__init__(dofn)
        self.with_output_types(output_type)

    def default_label(self) -> str:
        return type(self).__name__


def check_array(item: AudioItem, kind: str) -> Any:
    """The payload if it is a numpy array (the previous step's result), else AudioError."""
    import numpy as np

    if not isinstance(item.payload, np.ndarray):
        raise AudioError(
            item.element, errors.BAD_PAYLOAD,
            f"expected {kind} as a numpy array, got {type(item.payload).__name__}",
        )
    return item.payload
