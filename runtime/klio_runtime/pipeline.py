"""A Klio job as Beam: :class:`KlioJobTransform` (the per-message flow around ``run``) and
:func:`build_pipeline` (that transform between the configured event reads and writes).

The transform takes serialized KlioMessages and is the same whatever feeds it: the batch runner's
file reads, the streaming worker's micro-batches, Dataflow or Flink.
"""

from __future__ import annotations

import contextvars
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.options.pipeline_options import PipelineOptions

from klio_runtime import message as kmessage
from klio_runtime.config import (
    AvroEventInput,
    AvroEventOutput,
    BigQueryEventOutput,
    ConfigError,
    EventOutput,
    FileEventInput,
    FileEventOutput,
    KlioConfig,
    PubSubEventInput,
    entries_not_run_here,
    not_run_here,
)
from klio_runtime.context import (
    bind_context,
    bound_context,
    context_is_bound,
    job_context,
    klio_logger,
)
from klio_runtime.decorators import fast_parse
from klio_runtime.io.avro_events import ReadEventAvro, WriteEventAvro
from klio_runtime.io.events import (
    DEAD_LETTER_TAG,
    DeadLetter,
    ReadEventFile,
    WriteDeadLetters,
    WriteEventFile,
)
from klio_runtime.io.pubsub_events import (
    PublishDeadLetters,
    ReadEventPubSub,
    WriteEventPubSub,
    dead_letter_topic,
    input_source,
    output_topic,
    pubsub_project,
)
from klio_runtime.metrics import KlioMetrics, batch_until_bundle_end, bundle_ended
from klio_runtime.transforms.handoff import hand_bytes_to_other_consumers
from klio_runtime.transforms.io import reader_name, writer_names
from klio_runtime.transforms.route import (
    DROPPED,
    INPUT_MISSING,
    PASS_THRU,
    KlioRoute,
    has_pass_thru,
)

RunFn = Callable[[Any, KlioConfig], Any]
OUTPUT = "output"

# While KlioJobTransform calls ``run``: messages that run's steps write to the event output
# themselves (Klio's KlioWriteToEventOutput), handed to the job's own writers instead.
_event_writes: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "klio_event_writes", default=None
)


def to_job_event_output(pcoll: Any) -> bool:
    """Give ``pcoll`` (serialized messages) to the event writers of the job being built, so one
    writer writes each event output (two writers of one file prefix would overwrite each
    other). False when no Klio job is being built around the caller: it writes them itself."""
    found = _event_writes.get()
    if found is None:
        return False
    found.append(pcoll)
    return True


def input_names(config: KlioConfig) -> list[str]:
    """Klio's names for the event inputs: ``<type><index>`` (``file0``, ``pubsub1``)."""
    return [f"{inp.type}{index}" for index, inp in enumerate(config.job_config.events.inputs)]


class _PrepareOutput(beam.DoFn):
    """Run's output → serialized KlioMessages for the event outputs, counted; anything else is a
    dead letter naming what run returned."""

    reads_klio_objects = True  # an object standing for a message becomes its bytes here

    def __init__(self, config: KlioConfig) -> None:
        self.config = config

    def setup(self) -> None:
        self.metrics = KlioMetrics.of_job(self.config)
        self.metrics.written_by = writer_names(self.config)

    def start_bundle(self) -> None:
        batch_until_bundle_end()  # finish_bundle flushes what run's steps count meanwhile
        self.metrics.refresh_log_io()

    def process(self, data: Any) -> Iterable[Any]:
        # A list, not a generator: this runs once per message and Beam iterates either.
        # made by a handle_klio step: left carried for the event writer; else checked here
        if not kmessage.is_carried(data):
            if not isinstance(data, bytes | bytearray):
                converted = self._to_bytes(data)
                if not isinstance(converted, bytes):
                    return converted
                data = converted
            try:
                fast_parse(bytes(data))
            except kmessage.MessageDecodeError as err:
                return self._bad(str(err), repr(bytes(data)[:60]))
        self.metrics.output()
        return [data if type(data) is bytes else bytes(data)]

    def finish_bundle(self) -> None:
        self.metrics.flush()
        # What run's decorated steps counted (in the bound context) before this bundle ended: for
        # an input read by run itself (skip_klio_read) no router's bundle end hands it on.
        if context_is_bound():
            bound_context().metrics.flush()
        bundle_ended()

    def _to_bytes(self, data: Any) -> bytes | list[pvalue.TaggedOutput]:
        """An object that defines ``__bytes__`` (e.g. audio's AudioItem: the serialized message it
        stands for) becomes those bytes, so a run ending on such a step needs no ``Map(bytes)``;
        anything else is a dead letter."""
        if not hasattr(type(data), "__bytes__"):
            return self._bad(
                f"run returned {type(data).__name__}, not serialized KlioMessage bytes (nor an "
                "object defining __bytes__)",
                repr(data)[:80],
            )
        try:
            return bytes(data)
        except Exception as err:
            return self._bad(
                f"bytes() of the {type(data).__name__} run returned raised "
                f"{type(err).__name__}: {err}",
                repr(data)[:80],
            )

    def _bad(self, detail: str, element: str) -> list[pvalue.TaggedOutput]:
        if not self.metrics.written_by:
            # Klio writes none of what run returns (no event output, or skip_klio_write): what
            # is not a message is the job's own business (e.g. the file names WriteToText gives)
            return []
        self.metrics.dead_lettered("bad_output", element)
        return [
            pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter("bad_output", "run", detail, element))
        ]


class CountDeadLetters(beam.DoFn):
    """Counts dead letters made before the job's context exists (the event readers')."""

    def __init__(self, config: KlioConfig) -> None:
        self.config = config

    def setup(self) -> None:
        self.metrics = KlioMetrics.of_job(self.config)

    def process(self, letter: DeadLetter) -> Iterator[DeadLetter]:
        self.metrics.dead_lettered(letter.reason, letter.where)
        yield letter


class KlioJobTransform(beam.PTransform):
    """Serialized KlioMessages → routing → ``run`` → output messages.

    Input: one PCollection (one event input) or a mapping ``{"file0": pcoll, ...}`` keyed by
    :func:`input_names`; an input with ``skip_klio_read`` is given to ``run`` as it is (Klio passes
    the pipeline there). Output: a dict of PCollections — ``output`` (messages for the event
    outputs: run's results plus pings and already-done messages), ``dropped`` (route.Dropped),
    ``input_missing`` (messages whose data input is missing: the bottom-up hook) and
    ``dead_letter`` (DeadLetter).
    """

    def __init__(self, config: KlioConfig, run_fn: RunFn, batch_size: int = 500) -> None:
        super().__init__()
        if not callable(run_fn):
            raise TypeError(f"run_fn must be callable, not {type(run_fn).__name__}")
        self.config = config
        self.run_fn = run_fn
        self.batch_size = batch_size

    def expand(self, inputs: Any) -> dict[str, beam.PCollection]:
        names = input_names(self.config) or ["input0"]
        if not isinstance(inputs, Mapping):
            inputs = {names[0]: inputs}
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise ValueError(f"KlioJobTransform: inputs {unknown} are not in the config ({names})")
        configs = dict(zip(names, self.config.job_config.events.inputs, strict=False))
        bind_context(job_context(self.config))

        to_run: dict[str, Any] = {}
        pass_thru, dropped, missing, dead = [], [], [], []
        for name, pcoll in inputs.items():
            conf = configs.get(name)
            if (conf is not None and conf.skip_klio_read) or isinstance(pcoll, beam.pvalue.PBegin):
                # Klio gives run the pipeline itself for an input it does not read (and for a
                # job with no event inputs at all)
                to_run[name] = pcoll.pipeline if isinstance(pcoll, beam.pvalue.PBegin) else pcoll
                continue
            read_by = reader_name(conf.type if conf is not None else None)
            routed = pcoll | f"[{name}] Klio route" >> KlioRoute(
                self.config, self.batch_size, read_by
            )
            to_run[name] = routed.process
            pass_thru.append(routed[PASS_THRU])
            dropped.append(routed[DROPPED])
            missing.append(routed[INPUT_MISSING])
            dead.append(routed[DEAD_LETTER_TAG])

        if len(to_run) == 1 and len(names) == 1:
            run_input = next(iter(to_run.values()))
        else:
            tuple_type = namedtuple("MultiInputPCollTuple", names)  # type: ignore[misc]
            run_input = tuple_type(**{n: to_run[n] for n in names})
        token = _event_writes.set([])
        try:
            ran = self.run_fn(run_input, self.config)
            written = _event_writes.get() or []
        finally:
            _event_writes.reset(token)

        pipeline = self._pipeline_of(inputs)
        # run's output is prepared in the same fused stage as run, so the message its last step
        # carries is taken, not parsed again. Pass-thru messages are ready as they are.
        to_prepare = [ran, *written] if isinstance(ran, beam.PCollection) else written
        if not to_prepare and writer_names(self.config):
            # Klio would fail on it (it applies the event writer to what run returned)
            klio_logger().warning(
                "run() returned %s, not a PCollection: what it processes is not written to the"
                " event outputs (job_config.events.outputs)",
                type(ran).__name__,
            )
        if to_prepare:
            merged = self._merge(to_prepare, "Merge run and its event writes", pipeline)
            ready = merged | "Prepare output" >> beam.ParDo(
                _PrepareOutput(self.config)
            ).with_outputs(DEAD_LETTER_TAG, main=OUTPUT)
            outputs = [ready[OUTPUT]]
            dead.append(ready[DEAD_LETTER_TAG])
        else:
            outputs = []
        if has_pass_thru(self.config):
            # A runner may materialize this merge (FnApiRunner always does for a Flatten of
            # several inputs): a job without pass-thru outputs does not pay for it.
            outputs += pass_thru
        hand_bytes_to_other_consumers(pipeline)  # run's steps are all applied by now
        return {
            OUTPUT: self._merge(outputs, "Merge run and pass-thru", pipeline),
            DROPPED: dropped | "Merge dropped" >> beam.Flatten(pipeline=pipeline),
            INPUT_MISSING: missing | "Merge input missing" >> beam.Flatten(pipeline=pipeline),
            DEAD_LETTER_TAG: dead | "Merge dead letters" >> beam.Flatten(pipeline=pipeline),
        }

    @staticmethod
    def _merge(pcolls: list[Any], label: str, pipeline: beam.Pipeline) -> Any:
        if len(pcolls) == 1:
            return pcolls[0]
        return pcolls | label >> beam.Flatten(pipeline=pipeline)

    @staticmethod
    def _pipeline_of(inputs: Mapping[str, Any]) -> beam.Pipeline:
        first = next(iter(inputs.values()))
        return first if isinstance(first, beam.Pipeline) else first.pipeline


def dead_letter_location(config: KlioConfig) -> str | None:
    """``job_config.dead_letter_location``, else ``dead-letter/`` beside the first file or avro
    event output.

    A sub-directory, so a child reading ``<output>*`` never reads the dead letters as events.
    """
    configured = getattr(config.job_config, "dead_letter_location", None)
    if configured:
        return str(configured)
    for out in config.job_config.events.outputs:
        if isinstance(out, FileEventOutput | AvroEventOutput):
            parent, _, name = out.prefix.rpartition("/")
            return f"{parent}/dead-letter/{name}" if parent else f"dead-letter/{name}"
    return None


def event_writer(out: EventOutput, index: int, project: str | None) -> beam.PTransform:
    """The writer of event output ``index`` (files, Avro files or a Pub/Sub topic).

    Raises:
        klio_runtime.config.ConfigError: a topic that is not a topic path, or an output this
            runtime does not write (BigQuery), naming the field.
    """
    if isinstance(out, BigQueryEventOutput):
        raise not_run_here(f"job_config.events.outputs[{index}]", out)
    if isinstance(out, FileEventOutput):
        return WriteEventFile(out.location)
    if isinstance(out, AvroEventOutput):
        return WriteEventAvro(out)
    return WriteEventPubSub(output_topic(out, index, project))


def build_pipeline(
    config: KlioConfig,
    run_fn: RunFn,
    options: PipelineOptions | None = None,
    events_from: str | None = None,
) -> beam.Pipeline:
    """A pipeline reading the configured event inputs, running the job, writing its event
    outputs: files (a bounded run), or Pub/Sub through the runner's own source and sink (a
    streaming run on Dataflow, Flink or another Beam runner; on Kubernetes with the direct
    runner, ``klio worker`` reads Pub/Sub itself). A job with no event inputs gets the pipeline
    itself, as in Klio.

    ``events_from``: a file of events (element ids, or base64 KlioMessages) that every event
    input reads in place of its own source, its config unchanged for the job (what ``klio job
    profile`` runs the job over, as Klio's profiler feeds each input the same elements).

    Raises:
        klio_runtime.config.ConfigError: a topic or subscription that is not a path of its kind,
            or a BigQuery entry the job does not read or write itself, naming the field.
    """
    refused = entries_not_run_here(config, inputs=events_from is None)
    if refused:
        raise ConfigError(refused)
    pipeline = beam.Pipeline(options=options)
    names = input_names(config)
    project = pubsub_project(config)
    inputs: dict[str, Any] = {}
    dead: list[Any] = []
    for name, conf in zip(names, config.job_config.events.inputs, strict=True):
        if conf.skip_klio_read:
            inputs[name] = beam.pvalue.PBegin(pipeline)
        elif events_from is not None or isinstance(conf, FileEventInput | AvroEventInput):
            reader: beam.PTransform
            if events_from is not None:
                reader = ReadEventFile(events_from)
            elif isinstance(conf, FileEventInput):
                reader = ReadEventFile(conf.location)
            else:
                assert isinstance(conf, AvroEventInput)  # the elif's condition
                reader = ReadEventAvro(conf)
            read = pipeline | f"[{name}] Read events" >> reader
            inputs[name] = read.events
            dead.append(
                read[DEAD_LETTER_TAG]
                | f"[{name}] Count dead letters" >> beam.ParDo(CountDeadLetters(config))
            )
        else:  # Pub/Sub: the runner's own source (Dataflow, Flink, a streaming DirectRunner)
            assert isinstance(conf, PubSubEventInput)  # BigQuery was refused above
            kind, path = input_source(conf, names.index(name), project)
            inputs[name] = pipeline | f"[{name}] Read events" >> ReadEventPubSub(**{kind: path})
    if not inputs:  # run builds its own pipeline from the pipeline itself
        inputs["input0"] = beam.pvalue.PBegin(pipeline)
    result = inputs | "Klio job" >> KlioJobTransform(config, run_fn)

    for index, out in enumerate(config.job_config.events.outputs):
        if out.skip_klio_write:
            continue
        _ = result[OUTPUT] | f"[output{index}] Write events" >> event_writer(out, index, project)

    # A dead-letter topic when there is one (the job streams), else files.
    dead_topic, where = dead_letter_topic(config), dead_letter_location(config)
    write_dead: beam.PTransform | None = (
        PublishDeadLetters(dead_topic, config.job_name)
        if dead_topic
        else WriteDeadLetters(where)
        if where
        else None
    )
    if write_dead is not None:
        _ = (
            [*dead, result[DEAD_LETTER_TAG]]
            | "Merge all dead letters" >> beam.Flatten(pipeline=pipeline)
            | "Write dead letters" >> write_dead
        )
    return pipeline
