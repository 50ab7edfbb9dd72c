"""The micro-batch executor: a job's :class:`KlioJobTransform` run over one batch at a time on
Beam's in-process FnApiRunner, with the SDK worker kept warm between batches.

Why not a streaming pipeline: Beam's streaming DirectRunner acks Pub/Sub messages before it runs
them (a kill loses them), calls DoFn ``setup`` per bundle, and a long-lived pipeline with a pulling
source never runs stages after a GroupByKey (see design.md, "Workers in pods").

How: the pipeline is built and translated into fused stages once. Its inputs are ``Impulse`` →
"take the current batch" and its outputs end in collectors, both reaching the executor through a
process-local table (the embedded SDK worker runs in this process). Each :meth:`run` executes the
same stages with the same worker-handler manager, so the SDK worker's bundle-processor cache hands
back the DoFns already set up: ``setup`` runs once per worker, ``start_bundle``/``finish_bundle``
per batch. ``close`` tears the DoFns down. A GroupByKey inside ``run`` groups within one batch.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, TypeOptions
from apache_beam.options.value_provider import RuntimeValueProvider
from apache_beam.runners.pipeline_utils import (
    group_by_key_input_visitor,
    merge_common_environments,
    merge_superset_dep_environments,
    validate_pipeline_graph,
)
from apache_beam.runners.portability.fn_api_runner import execution
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.portability.fn_api_runner.worker_handlers import WorkerHandlerManager

from klio_runtime.config import KlioConfig
from klio_runtime.io.events import DEAD_LETTER_TAG
from klio_runtime.io.pubsub_events import side_publishes_through
from klio_runtime.metrics import prometheus_writes_held
from klio_runtime.pipeline import OUTPUT, KlioJobTransform, RunFn
from klio_runtime.transforms.route import DROPPED, INPUT_MISSING

RESULT_TAGS = (OUTPUT, DROPPED, INPUT_MISSING, DEAD_LETTER_TAG)
SIDE_PUBLISHES = "side_publishes"
"""(topic, message bytes) that the job's own steps publish (Klio's ``KlioTriggerUpstream``)."""
COLLECTED = (*RESULT_TAGS, SIDE_PUBLISHES)

# token → {"inputs": {name: [bytes]}, "results": {tag: [values]}}; one entry per executor.
_TABLE: dict[str, dict[str, Any]] = {}
_TABLE_LOCK = threading.Lock()
_TOKENS = itertools.count()


class _TakeBatch(beam.DoFn):
    """Impulse → the messages of the current batch for one input."""

    def __init__(self, token: str, name: str) -> None:
        self.token = token
        self.name = name

    def process(self, _: bytes) -> Iterator[bytes]:
        yield from _TABLE[self.token]["inputs"].get(self.name, ())


class _Collect(beam.DoFn):
    """One result PCollection → the executor's result list for its tag."""

    def __init__(self, token: str, tag: str) -> None:
        self.token = token
        self.tag = tag

    def process(self, value: Any) -> None:
        results = _TABLE[self.token]["results"][self.tag]
        with _TABLE_LOCK:
            results.append(value)


class _CollectSidePublishes(beam.PTransform):
    """What the job publishes to ``topic`` from within its pipeline → the executor's result list
    (the worker publishes it before it acknowledges the batch)."""

    def __init__(self, token: str, topic: str) -> None:
        super().__init__()
        self.token = token
        self.topic = topic

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return (
            pcoll
            | "To topic" >> beam.Map(lambda data, topic: (topic, bytes(data)), self.topic)
            | "Collect" >> beam.ParDo(_Collect(self.token, SIDE_PUBLISHES))
        )


class _WarmFnApiRunner(FnApiRunner):
    """FnApiRunner whose stages and worker handlers outlive one run."""

    def prepare(self, pipeline: beam.Pipeline, options: PipelineOptions) -> None:
        RuntimeValueProvider.set_runtime_options({})
        debug = options.view_as(DebugOptions)
        debug.experiments = sorted(set(debug.experiments or []) | {"beam_fn_api"})
        pipeline.visit(group_by_key_input_visitor(
            not options.view_as(TypeOptions).allow_non_deterministic_key_coders))
        proto = pipeline.to_runner_api(default_environment=self._default_environment)
        validate_pipeline_graph(proto)
        self._validate_requirements(proto)
        self._check_requirements(proto)
        self._split_managers = []
        proto = merge_common_environments(
            self.resolve_any_environments(merge_superset_dep_environments(proto)))
        self.proto = proto
        # Translated once: with several inputs (a Flatten of Impulses) a fresh translation may
        # not match the bundle processors the SDK worker cached under the same descriptor ids.
        self._translated = self.create_stages(proto)
        stage_context, _ = self._translated
        self.handlers = WorkerHandlerManager(stage_context.components.environments,
                                             self._provision_info)

    def run_once(self) -> None:
        """Run every stage to completion (one batch), as FnApiRunner.run_stages does."""
        # A run rewrites its stages' protos (data endpoints, buffers): each run gets a copy of
        # the one translation, so every run registers identical bundle descriptors.
        stage_context, stages = copy.deepcopy(self._translated)
        context = execution.FnApiRunnerExecutionContext(
            stages, self.handlers, stage_context.components,
            stage_context.safe_coders, stage_context.data_channel_coders,
            self._num_workers, split_managers=self._split_managers)
        context.setup()
        queues = context.queues
        while len(queues.ready_inputs) > 0:
            stage_name, bundle_input = queues.ready_inputs.deque()
            manager = context.bundle_manager_for(context.stages[stage_name])
            self._execute_bundle(context, manager, bundle_input)
            if len(queues.ready_inputs) == 0:
                self._schedule_ready_bundles(context)
        leftover = (len(queues.watermark_pending_inputs), len(queues.time_pending_inputs))
        if any(leftover):
            raise RuntimeError(f"batch left bundles unrun (watermark, time): {leftover}")

    def close(self) -> None:
        self.handlers.close_all()


class BatchResult:
    """What one batch produced, by KlioJobTransform's output tag."""

    def __init__(self, results: Mapping[str, list[Any]]) -> None:
        self.output: list[bytes] = list(results[OUTPUT])
        self.dropped: list[Any] = list(results[DROPPED])
        self.input_missing: list[bytes] = list(results[INPUT_MISSING])
        self.dead_letter: list[Any] = list(results[DEAD_LETTER_TAG])
        self.side_publishes: list[tuple[str, bytes]] = list(results.get(SIDE_PUBLISHES, ()))

    @classmethod
    def empty(cls) -> BatchResult:
        return cls({tag: [] for tag in RESULT_TAGS})

    def add(self, other: BatchResult) -> None:
        """Take ``other``'s results too (another run of part of the same batch)."""
        self.output += other.output
        self.dropped += other.dropped
        self.input_missing += other.input_missing
        self.dead_letter += other.dead_letter
        self.side_publishes += other.side_publishes


class BatchExecutor:
    """Runs ``KlioJobTransform(config, run_fn)`` over batches of serialized messages.

    ``input_names`` are the transform's inputs fed by the worker (e.g. ``["pubsub0"]``). Not
    thread-safe: one batch at a time (the worker's loop is the only caller).
    """

    def __init__(self, config: KlioConfig, run_fn: RunFn, input_names: Sequence[str],
                 options: PipelineOptions | None = None) -> None:
        if not input_names:
            raise ValueError("BatchExecutor: at least one input name is needed")
        self.input_names = list(input_names)
        self.token = f"executor-{next(_TOKENS)}"
        _TABLE[self.token] = {"inputs": {}, "results": {tag: [] for tag in COLLECTED}}
        self._runner = _WarmFnApiRunner()
        pipeline = beam.Pipeline(runner=self._runner, options=options)
        inputs = {
            name: pipeline
            | f"[{name}] Impulse" >> beam.Impulse()
            | f"[{name}] Take batch" >> beam.ParDo(_TakeBatch(self.token, name))
            for name in self.input_names
        }
        token = self.token
        with side_publishes_through(lambda topic: _CollectSidePublishes(token, topic)):
            result = inputs | "Klio job" >> KlioJobTransform(config, run_fn)
        for tag in RESULT_TAGS:
            _ = result[tag] | f"Collect {tag}" >> beam.ParDo(_Collect(self.token, tag))
        self._runner.prepare(pipeline, options or PipelineOptions())
        self._closed = False

    def run(self, batch: Mapping[str, Sequence[bytes]]) -> BatchResult:
        """Run one batch (``{input name: [message bytes]}``) through the job; block until done."""
        if self._closed:
            raise RuntimeError("BatchExecutor.run after close")
        unknown = sorted(set(batch) - set(self.input_names))
        if unknown:
            raise ValueError(f"BatchExecutor.run: unknown inputs {unknown} "
                             f"(known: {self.input_names})")
        entry = _TABLE[self.token]
        entry["inputs"] = {name: list(values) for name, values in batch.items()}
        entry["results"] = {tag: [] for tag in COLLECTED}
        try:
            with prometheus_writes_held():  # a failed run is run again: count only one that ends
                self._runner.run_once()
            return BatchResult(entry["results"])
        finally:
            entry["inputs"] = {}
            entry["results"] = {tag: [] for tag in COLLECTED}

    def close(self) -> None:
        """Tear the DoFns down (``teardown``) and forget the batch table entry."""
        if not self._closed:
            self._closed = True
            try:
                self._runner.close()
            finally:
                _TABLE.pop(self.token, None)
