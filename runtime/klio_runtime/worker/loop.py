"""The streaming worker: pull a micro-batch, run the job, publish, wait, then acknowledge.

At-least-once: a message is acknowledged only after every message it produced (outputs, dead
letters, bottom-up requests) is confirmed published; if anything fails, the batch is handed back
(ack deadline 0) for redelivery. So a kill at any point loses nothing, and may repeat a batch:
job outputs must be idempotent. At most two batches are held, each bounded by count and bytes:
one running while the previous one's publishes are confirmed, so memory and concurrency stay
bounded (the subscription holds the backlog). A batch is up to ``max_messages`` (fewer for a job
of long elements: what runs in about ``target_batch_seconds``, see :class:`_BatchSizer`) gathered
for at most ``max_wait_ms`` after the first, cut short when the subscription has no more. SIGTERM
(``stop``) ends the loop after the held batches are published and acknowledged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import ClassVar

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import if_transient_error
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram

from klio_runtime import message as kmessage
from klio_runtime.config import (
    ConfigError,
    KlioConfig,
    PubSubEventInput,
    PubSubEventOutput,
)
from klio_runtime.context import klio_logger, printable
from klio_runtime.io.events import DeadLetter
from klio_runtime.io.gcs import ensure_emulator_credentials
from klio_runtime.io.pubsub import LeaseKeeper, PubSubClient, Pulled, resource_path
from klio_runtime.io.pubsub_events import (
    DETAIL_LIMIT,
    cut_to_bytes,
    dead_letter_message,
    input_source,
    output_topic,
    pubsub_project,
)
from klio_runtime.io.pubsub_events import dead_letter_topic as dead_letter_topic_of
from klio_runtime.io.storage import DataStore
from klio_runtime.metrics import KlioMetrics, element_progress, process_hub
from klio_runtime.pipeline import RunFn, input_names
from klio_runtime.transforms import klio_lines
from klio_runtime.transforms.route import job_ref_of
from klio_runtime.worker.bottom_up import Parent, PendingRequests, parents_of, requests_for
from klio_runtime.worker.executor import BatchExecutor, BatchResult
from klio_runtime.worker.health import HealthState
from klio_runtime.worker.settings import (
    DEAD_LETTER_KEY,
    ENV_DEAD_LETTER_TOPIC,
    WorkerSettings,
)

log = logging.getLogger("klio.worker")


class WorkerMetrics:
    """The worker's own series, beside the job's standard ones on the same registry."""

    _by_registry: ClassVar[dict[int, WorkerMetrics]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.batches = PromCounter("klio_worker_batches", "Micro-batches run.", ["job"],
                                   registry=r)
        self.batch_size = PromHistogram(
            "klio_worker_batch_messages", "Messages per micro-batch.", ["job"], registry=r,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
        self.batch_seconds = PromHistogram(
            "klio_worker_batch_seconds", "Pull-to-ack time of a micro-batch.", ["job"],
            registry=r,  # up to minutes: a batch holds ~20 s of a slow job's work
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300))
        self.acked = PromCounter("klio_worker_acked", "Messages acknowledged.", ["job"],
                                 registry=r)
        self.nacked = PromCounter("klio_worker_nacked",
                                  "Messages handed back for redelivery, by reason.",
                                  ["job", "reason"], registry=r)
        self.published = PromCounter("klio_worker_published",
                                     "Messages published, by kind (output, dead_letter, "
                                     "bottom_up, trigger_upstream).", ["job", "kind"], registry=r)
        self.bottom_up = PromCounter("klio_worker_bottom_up_requests",
                                     "Bottom-up requests sent to a parent.", ["job", "parent"],
                                     registry=r)
        self.bottom_up_pending = PromCounter(
            "klio_worker_bottom_up_suppressed",
            "Bottom-up requests not sent because one is pending.", ["job", "parent"],
            registry=r)
        self.in_flight = PromGauge("klio_worker_in_flight_messages",
                                   "Messages pulled and not yet acknowledged.", ["job"],
                                   registry=r)
        self.pull_errors = PromCounter(
            "klio_worker_pull_errors",
            "Pulls (and checks of the subscriptions at startup) that failed because Pub/Sub "
            "could not be reached (retried).", ["job"], registry=r)

    @classmethod
    def on(cls, registry: CollectorRegistry) -> WorkerMetrics:
        with cls._lock:
            found = cls._by_registry.get(id(registry))
            if found is None:
                found = cls._by_registry[id(registry)] = cls(registry)
            return found


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    data: bytes
    attributes: Mapping[str, str]
    kind: str
    source: str | None = None
    """The ack id of the pulled message this comes from (None: not known, so a failed publish
    hands the whole batch back)."""
    letter: DeadLetter | None = None
    """For a dead letter: its record (sent alone if the original's bytes are too large)."""


@dataclass
class _InFlight:
    """A batch whose outputs are being published."""

    batch: Sequence[Pulled]
    started: float
    outgoing: list[_Outgoing] = field(default_factory=list)
    nacked: set[str] = field(default_factory=set)
    futures: list[Future[str]] = field(default_factory=list)

    def published(self) -> bool:
        """Whether every publish of the batch has settled (confirmed or failed)."""
        return all(future.done() for future in self.futures)


PULL_RETRY_FIRST_SECONDS = 0.5
PULL_RETRY_MAX_SECONDS = 10.0
PIPELINE_RETRY_FIRST_SECONDS = 1.0
PIPELINE_RETRY_MAX_SECONDS = 30.0


class _Backoff:
    """Pauses that double from ``first`` up to ``most`` while failures last."""

    def __init__(self, first: float, most: float) -> None:
        self.first, self.most = first, most
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return min(self.most, self.first * 2.0 ** min(self.failures - 1, 30))

    def reset(self) -> None:
        self.failures = 0


class _BatchSizer:
    """How many messages the next batch may hold: what runs in about ``target_seconds`` at the
    pace of the last batch, at least one, at most ``most``, and at most twice as many as a batch
    has held so far. It starts at one, as nothing is known of the job's pace yet.

    Why: a batch is published and acknowledged only when all of it has run. With elements of
    seconds each (audio), a full batch would hold its outputs back for many minutes, and a
    drain (SIGTERM: a rolling update, a scale-down) would outlast the pod's grace period, so
    the kill would hand the whole batch back to run again. ``target_seconds`` 0: always
    ``most``.

    The pace is that of the messages sent to ``run`` once some were: messages that skip the work
    (output exists, pings) take next to nothing, and a batch grown on them would hold many times
    the target's work when the next messages are new."""

    def __init__(self, target_seconds: float, most: int) -> None:
        self.target_seconds, self.most = target_seconds, most
        self.size = 1 if target_seconds else most
        self.seconds_per_run: float | None = None  # the last batch's that sent any to run

    def ran(self, count: int, seconds: float, to_run: int | None = None) -> None:
        """A batch of ``count`` messages, ``to_run`` of which were sent to ``run`` (None: all),
        ran in ``seconds``."""
        if not self.target_seconds or count < 1:
            return
        sent = count if to_run is None else to_run
        if sent > 0:
            self.seconds_per_run = seconds / sent
        fits = self.target_seconds * count / seconds if seconds > 0 else float(self.most)
        if self.seconds_per_run:  # as if all of the next batch were sent to run
            fits = min(fits, self.target_seconds / self.seconds_per_run)
        self.size = max(1, min(self.most, max(self.size, 2 * count), int(fits)))


class StreamingWorker:
    """One job's pull → run → publish → ack loop (see the module docstring)."""

    def __init__(self, config: KlioConfig, run_fn: RunFn,
                 settings: WorkerSettings | None = None, client: PubSubClient | None = None,
                 health: HealthState | None = None,
                 dead_letter_topic: str | None = None) -> None:
        self.config = config
        self.settings = settings or WorkerSettings()
        self.health = health or HealthState()
        self.project = pubsub_project(config)
        self.inputs, self.output_topics = self._event_io(config)
        self.dead_letter_topic = dead_letter_topic_of(config, dead_letter_topic)
        self.parents: list[Parent] = [
            Parent(p.job, resource_path(p.topic, "topics", self.project), p.data_input)
            for p in parents_of(config)
        ]
        self.job = job_ref_of(config)
        self.pending = PendingRequests(self.settings.pending_ttl_seconds)
        self.client = client or PubSubClient()
        self.lease = LeaseKeeper(self.client, self.settings.ack_deadline_seconds,
                                 self.settings.lease_every_seconds)
        self.job_metrics = KlioMetrics.of_job(config)
        self.metrics = WorkerMetrics.on(process_hub().registry)
        self.stop_event = threading.Event()
        self.pull_backoff = _Backoff(PULL_RETRY_FIRST_SECONDS, PULL_RETRY_MAX_SECONDS)
        self._pull_turn = 0  # the input the next batch is pulled from first
        # pauses between trials of a pipeline that fails before any message; growing until a
        # run goes through, across the batches pulled meanwhile (see _wait_for_pipeline)
        self.pipeline_backoff = _Backoff(PIPELINE_RETRY_FIRST_SECONDS, PIPELINE_RETRY_MAX_SECONDS)
        self.batch_sizer = _BatchSizer(self.settings.target_batch_seconds,
                                       self.settings.max_messages)
        self.store = DataStore()
        # before the job's steps are set up: a GCS client of the job's own (Beam's GcsIO) would
        # otherwise look for credentials for ~20 s on the emulator (as runner.run_job does)
        ensure_emulator_credentials()
        self.executor = BatchExecutor(config, run_fn, [name for name, _ in self.inputs])

    # -- configuration ----------------------------------------------------------------------
    def _event_io(self, config: KlioConfig) -> tuple[list[tuple[str, str]], list[str]]:
        names = input_names(config)
        inputs: list[tuple[str, str]] = []
        errors: list[str] = []
        for index, (name, conf) in enumerate(zip(names, config.job_config.events.inputs,
                                                 strict=True)):
            where = f"job_config.events.inputs[{index}]"
            if not isinstance(conf, PubSubEventInput):
                errors.append(f"{where}: a {conf.type} input runs as a batch job, not beside "
                              "Pub/Sub inputs in a streaming worker")
                continue
            if not conf.subscription:
                errors.append(f"{where}.subscription: required by the worker (the operator "
                              "creates one per topic input)")
                continue
            try:
                inputs.append((name, input_source(conf, index, self.project)[1]))
            except ConfigError as err:
                errors.extend(err.errors)
        outputs: list[str] = []
        for index, out in enumerate(config.job_config.events.outputs):
            where = f"job_config.events.outputs[{index}]"
            if out.skip_klio_write:
                continue
            if not isinstance(out, PubSubEventOutput):
                errors.append(f"{where}: the streaming worker writes pubsub outputs only "
                              f"(got {out.type})")
                continue
            try:
                outputs.append(output_topic(out, index, self.project))
            except ConfigError as err:
                errors.extend(err.errors)
        if not inputs and not errors:
            errors.append("job_config.events.inputs: the streaming worker needs a pubsub input")
        if errors:
            raise ConfigError(errors)
        return inputs, outputs

    # -- the loop ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop pulling; the in-flight batch still finishes (SIGTERM)."""
        self.health.draining = True
        self.stop_event.set()

    def run(self) -> None:
        """Until :meth:`stop`: wait for the subscriptions, then pull, run, publish, ack."""
        try:
            if not self._wait_for_subscriptions():
                return
            self.lease.start()
            self.health.subscribed = True
            log.info("worker %s pulling %s", self.config.job_name,
                     ", ".join(sub for _, sub in self.inputs))
            # Two batches at most: while one's publishes are confirmed, the next is pulled and
            # run. Each is acknowledged only after its own publishes (see _finish).
            in_flight: _InFlight | None = None
            while not self.stop_event.is_set():
                self.health.tick()
                batch = self._pull_batch(may_wait=in_flight is None)
                if in_flight is not None and in_flight.published():
                    # nothing to wait for: acknowledged now, not after the next batch's run
                    # (~20 s of a slow job's work later, a window for duplicates on a kill)
                    self._finish(in_flight)
                    in_flight = None
                started = self._start(batch) if batch else None
                if in_flight is not None:
                    self._finish(in_flight)
                in_flight = started
                if in_flight is None and self.health.pipeline_failing is not None:
                    self._wait_for_pipeline()
            if in_flight is not None:
                self._finish(in_flight)
        finally:
            self.lease.stop()
            self.executor.close()
            self.client.close()

    def _wait_for_pipeline(self) -> None:
        """The job's pipeline fails before any message (see :meth:`_execute`): nothing is pulled,
        as each hand-back costs the messages a delivery attempt (a subscription's dead-letter
        policy counts them), and it is tried with no message after pauses that grow, until it
        runs (ready again, pulling) or the worker stops."""
        log.warning("%s; not pulling until it runs", self.health.pipeline_failing)
        while self._paused(self.pipeline_backoff.next_delay()):
            try:
                self._execute({name: [] for name, _ in self.inputs})
            except PipelineFailsBeforeAnyMessage:
                continue
            except Exception as err:
                # Set up, then failed on no message (a step that needs one): messages may run.
                log.info("the job's pipeline sets up again (%s: %s on no message); pulling",
                         type(err).__name__, err)
                self.health.pipeline_failing = None
                return
            log.info("the job's pipeline runs again; pulling")
            return

    def _paused(self, seconds: float) -> bool:
        """Wait ``seconds``, alive for the liveness probe all along; False if stopped."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.stop_event.wait(min(left, self.health.stall_seconds / 4)):
                return False
            self.health.tick()
        return True

    def _wait_for_subscriptions(self) -> bool:
        missing = [sub for _, sub in self.inputs]
        while missing:
            try:
                deadline = self.client.ack_deadline_of(missing[0])
                # The first extension must come before the subscription's own deadline ends.
                self.lease.every = min(self.lease.every, deadline / 2)
                missing.pop(0)
            except Exception as err:
                if not _waited_out(err):
                    raise
                if isinstance(err, api_exceptions.NotFound):
                    reason = f"subscription {missing[0]} does not exist (yet)"
                else:
                    self.metrics.pull_errors.labels(job=self.config.job_name).inc()
                    reason = f"Pub/Sub did not answer: {type(err).__name__}"
                if reason != self.health.reason:  # said once, not at every try
                    log.warning("%s (%s); retrying until it does", reason, err)
                self.health.reason = reason
                if self.stop_event.wait(2.0):
                    return False
            self.health.tick()
        return True

    def _pull_batch(self, may_wait: bool = True) -> list[Pulled]:
        settings = self.settings
        batch: list[Pulled] = []
        size = 0
        # Each batch starts at the next input: one input's backlog (a parent's backfill) must
        # not hold back another's messages until it is drained.
        turn = self._pull_turn % len(self.inputs)
        self._pull_turn = turn + 1
        subscriptions = [sub for _, sub in [*self.inputs[turn:], *self.inputs[:turn]]]
        deadline: float | None = None
        most = self.batch_sizer.size
        while len(batch) < most and size < settings.max_batch_bytes:
            got_any = False
            for subscription in subscriptions:
                want = most - len(batch)
                if want <= 0:
                    break
                # Block (server-side wait) only while nothing is held and one input exists.
                wait = may_wait and not batch and len(subscriptions) == 1
                try:
                    pulled = self.client.pull(subscription, want, wait=wait)
                except Exception as err:
                    if not _waited_out(err):
                        raise
                    self._pull_failed(subscription, err)
                    return batch
                if self.pull_backoff.failures:
                    self.pull_backoff.reset()
                    self.health.unavailable = None
                    log.info("pulling from %s again", subscription)
                got_any = got_any or bool(pulled)
                for index, message in enumerate(pulled):
                    if size + message.size > settings.max_batch_bytes and batch:
                        # nothing failed: the next batch may take them at once
                        self._nack(pulled[index:], "batch_bytes", delay=0)
                        return batch
                    batch.append(message)
                    size += message.size
            if batch and deadline is None:
                deadline = time.monotonic() + settings.max_wait_ms / 1000
            if not batch and (self.stop_event.is_set() or not (got_any or may_wait)):
                return batch
            if deadline is not None and (time.monotonic() >= deadline or not got_any):
                break
            if not got_any and self.stop_event.wait(0.05):
                break
            self.health.tick()
        return batch

    def _pull_failed(self, subscription: str, err: Exception) -> None:
        """A transient error (Pub/Sub unavailable, the subscription gone): not ready, said once
        per outage, and tried again after a growing pause. The loop keeps ticking, so the pod
        is not restarted for an outage a restart cannot mend; what it holds is not lost (see
        the module)."""
        self.metrics.pull_errors.labels(job=self.config.job_name).inc()
        self.health.unavailable = f"pulling {subscription} failed: {type(err).__name__}: {err}"
        if not self.pull_backoff.failures:
            log.warning("%s; retrying until it answers", self.health.unavailable)
        delay = self.pull_backoff.next_delay()
        self.health.tick()
        self.stop_event.wait(delay)

    # -- one batch --------------------------------------------------------------------------
    def process(self, batch: Sequence[Pulled]) -> None:
        """Run, publish and acknowledge one batch (or hand it back if publishing fails)."""
        started = self._start(batch)
        if started is not None:
            self._finish(started)

    def _start(self, batch: Sequence[Pulled]) -> _InFlight | None:
        """Run the batch and send what it publishes; None if it was handed back."""
        self.lease.hold(batch)
        self.metrics.in_flight.labels(job=self.config.job_name).inc(len(batch))
        in_flight = _InFlight(batch, time.monotonic())
        sent_before = element_progress.sent_to_run
        try:
            in_flight.outgoing, in_flight.nacked = self._outgoing(batch)
            self.batch_sizer.ran(len(batch), time.monotonic() - in_flight.started,
                                 element_progress.sent_to_run - sent_before)
            in_flight.futures = self.client.publish_nowait(
                (o.topic, o.data, o.attributes) for o in in_flight.outgoing)
            self._dead_letter_too_large(in_flight)
        except Exception:
            log.exception("the batch of %d failed before publishing; handed back", len(batch))
            self._forget_requests(in_flight.outgoing)
            self._nack(batch, "run_error")
            self._done(in_flight, completed=False)
            return None
        self.health.tick()
        return in_flight

    def _dead_letter_too_large(self, in_flight: _InFlight) -> None:
        """A message whose output Pub/Sub refuses as too large (over 10 MB) would be refused
        again on every redelivery, and hold back the batch around it: it is dead-lettered
        instead (``output_too_large``), in place of what it published."""
        by_ack_id = {m.ack_id: m for m in in_flight.batch}
        too_large: dict[str, tuple[_Outgoing, BaseException]] = {}
        for o, future in zip(in_flight.outgoing, in_flight.futures, strict=True):
            error = _too_large(future)
            if error is not None and o.source in by_ack_id:
                too_large.setdefault(o.source, (o, error))
        if not too_large:
            return
        kept = [(o, future) for o, future in zip(in_flight.outgoing, in_flight.futures, strict=True)
                if o.source not in too_large]
        in_flight.outgoing = [o for o, _ in kept]
        in_flight.futures = [future for _, future in kept]
        for source, (o, error) in too_large.items():
            original = by_ack_id[source]
            if o.letter is not None:
                # the message's own dead letter, too large with its bytes: its record alone
                # (counted already, under its reason)
                log.warning("dead letter (%s) %s: the original's %d bytes are too large to "
                            "keep; its record alone goes", o.letter.reason,
                            printable(o.letter.element),
                            len(original.data))
                dead = self._dead_letter(None, o.letter, source)
            else:
                element = kmessage.element_id(_made(o.data))
                log.warning("dead letter (output_too_large) %s: its %s to %s: %s",
                            printable(element), o.kind, o.topic, error)
                letter = DeadLetter("output_too_large", o.kind, str(error)[:500], element)
                if self.dead_letter_topic is None:
                    in_flight.nacked.add(source)  # Pub/Sub's dead-letter policy takes it
                    continue
                self.job_metrics.dead_lettered(letter.reason, element)
                self.job_metrics.flush()
                dead = self._dead_letter(original, letter)
            futures = self.client.publish_nowait([(dead.topic, dead.data, dead.attributes)])
            if dead.letter is not None and _too_large(futures[0]) is not None:
                # the original was near the limit itself: its record alone, as above
                dead = self._dead_letter(None, dead.letter, source)
                futures = self.client.publish_nowait([(dead.topic, dead.data, dead.attributes)])
            in_flight.outgoing.append(dead)
            in_flight.futures += futures

    def _finish(self, in_flight: _InFlight) -> None:
        """Wait for the batch's publishes, then acknowledge each message whose publishes all
        went out; the others go back for redelivery (their outputs may then be sent twice:
        at least once, never lost)."""
        job, batch = self.config.job_name, in_flight.batch
        outcomes = self.client.publish_outcomes(
            in_flight.futures, self.settings.publish_timeout_seconds)
        failed: list[tuple[_Outgoing, BaseException]] = []
        kinds: dict[str, int] = {}
        for o, error in zip(in_flight.outgoing, outcomes, strict=True):
            if error is None:
                kinds[o.kind] = kinds.get(o.kind, 0) + 1
            else:
                failed.append((o, error))
        for kind, count in kinds.items():
            self.metrics.published.labels(job=job, kind=kind).inc(count)
        sources = {o.source for o, _ in failed}
        back = batch if None in sources else [m for m in batch if m.ack_id in sources]
        if failed:
            first, error = failed[0]
            self.health.publish_failing = (
                f"publishing to {first.topic} failed: {type(error).__name__}: {error}")
            log.error("publishing %d of %d messages failed (first: %s to %s: %s): %d of the "
                      "batch of %d go back for redelivery in %d s", len(failed),
                      len(in_flight.outgoing), first.kind, first.topic, error, len(back),
                      len(batch), self.settings.redelivery_delay_seconds)
            # their bottom-up requests may be asked again when they come back
            self._forget_requests([o for o in in_flight.outgoing
                                   if None in sources or o.source in sources])
            self._nack(back, "publish_error")
        elif in_flight.outgoing:
            self.health.publish_failing = None
        returned = {m.ack_id for m in back}
        nacked = in_flight.nacked - returned
        self._ack([m for m in batch if m.ack_id not in nacked and m.ack_id not in returned])
        if nacked:
            self._nack([m for m in batch if m.ack_id in nacked], "no_dead_letter_topic")
        self._done(in_flight, completed=not failed)

    def _done(self, in_flight: _InFlight, completed: bool) -> None:
        job, batch = self.config.job_name, in_flight.batch
        self.lease.release(batch)
        self.metrics.in_flight.labels(job=job).dec(len(batch))
        self.health.tick()
        if completed:
            self.metrics.batches.labels(job=job).inc()
            self.metrics.batch_size.labels(job=job).observe(len(batch))
            self.metrics.batch_seconds.labels(job=job).observe(
                time.monotonic() - in_flight.started)

    def _outgoing(self, batch: Sequence[Pulled]) -> tuple[list[_Outgoing], set[str]]:
        """What this batch publishes, and the ack ids to hand back (dead letters with nowhere
        to go: Pub/Sub's dead-letter policy then takes them).

        A message for an element already in the batch runs in a later round, after the first:
        as in Klio's flow, which takes one message at a time, it then finds the output the
        first one made and passes it on to its own recipients (two children asking one parent
        for the same element both get their answer, from one run).
        """
        allow_non_klio = self.config.job_config.allow_non_klio_messages
        by_input = {sub: name for name, sub in self.inputs}
        rounds: list[tuple[dict[str, list[bytes]], dict[str, Pulled]]] = []
        seen: dict[str, int] = {}
        letters: list[tuple[Pulled | None, DeadLetter]] = []
        for message in batch:
            try:
                msg = kmessage.parse(message.data, allow_non_klio=allow_non_klio)
            except kmessage.MessageDecodeError as err:
                klio_logger().error(klio_lines.CANNOT_PARSE)
                log.warning("dead letter (decode_error) %r: %s", message.data[:60], err)
                where = repr(message.data[:60])
                self._count_dead_letter("decode_error", where)
                letters.append((message, DeadLetter("decode_error", "message", str(err), where)))
                continue
            element = kmessage.element_id(msg)
            index = seen[element] = seen.get(element, -1) + 1
            if index == len(rounds):
                rounds.append(({name: [] for name, _ in self.inputs}, {}))
            feed, originals = rounds[index]
            originals[element] = message
            feed[by_input[message.subscription]].append(message.data)

        out: list[_Outgoing] = []
        for feed, originals in rounds:
            result = self._run(feed, originals)
            out += self._results_out(result, originals)
            for letter in result.dead_letter:
                if isinstance(letter, DeadLetter):
                    letters.append((originals.get(letter.element), letter))
                else:
                    letters.append((None, DeadLetter("unknown", "run", repr(letter)[:200])))
        nacked: set[str] = set()
        for original, letter in letters:
            if self.dead_letter_topic is None:
                log.warning("dead letter (%s) %s: no dead-letter topic configured "
                            "(%s / job_config.%s); handed back to Pub/Sub", letter.reason,
                            printable(letter.element), ENV_DEAD_LETTER_TOPIC, DEAD_LETTER_KEY)
                if original is not None:
                    nacked.add(original.ack_id)
                continue
            out.append(self._dead_letter(original, letter))
        return out, nacked

    def _results_out(self, result: BatchResult, originals: Mapping[str, Pulled]
                     ) -> list[_Outgoing]:
        """The outputs, bottom-up requests and side publishes of one run, each with the ack id
        of the message it came from."""
        out: list[_Outgoing] = []
        ran: list[str] = []
        for data in result.output:
            element = kmessage.element_id(_made(data))
            ran.append(element)
            original = originals.get(element)
            attrs = original.attributes if original is not None else {}
            out += [_Outgoing(topic, data, attrs, "output", _ack_id(original))
                    for topic in self.output_topics]
        if len(self.pending):  # the elements this job ran for: their parents have answered
            self.pending.settle(ran)
        out += self._bottom_up(result.input_missing, originals)
        out += [_Outgoing(topic, data, {}, "trigger_upstream",  # KlioTriggerUpstream's
                          _ack_id(originals.get(kmessage.element_id(_made(data)))))
                for topic, data in result.side_publishes]
        return out

    def _run(self, feed: Mapping[str, list[bytes]], originals: Mapping[str, Pulled]
             ) -> BatchResult:
        if not any(feed.values()):
            return BatchResult.empty()
        try:
            return self._execute(feed)
        except PipelineFailsBeforeAnyMessage:
            raise
        except Exception as err:
            # One bad element must not block the others forever: run the batch again in
            # groups, down to the messages that fail alone, and dead-letter those.
            log.warning("batch failed (%s: %s); running it again in groups to find the messages "
                        "that fail", type(err).__name__, err)
        return self._run_apart([(n, d) for n, values in feed.items() for d in values])

    def _run_apart(self, messages: Sequence[tuple[str, bytes]]) -> BatchResult:
        """``messages`` (input name, bytes), whose run failed: in about √n groups, then each
        message of a group that fails on its own. One bad message among n costs about 2√n runs,
        of which 3 fail (Beam sets the job's DoFns up again after a failed run, which may load
        a model: halving, with its log2(n) failures, would cost more of those)."""
        merged = BatchResult.empty()
        size = math.isqrt(len(messages) - 1) + 1  # ⌈√n⌉
        for start in range(0, len(messages), size):
            group = messages[start:start + size]
            part, failed = self._try_run(group)
            if failed is not None:  # outside the except block: no chain of failures in the log
                part = (self._pipeline_error(group[0][1], failed) if len(group) == 1
                        else self._one_by_one(group))
            merged.add(part)
        return merged

    def _one_by_one(self, messages: Sequence[tuple[str, bytes]]) -> BatchResult:
        merged = BatchResult.empty()
        for name, data in messages:
            part, failed = self._try_run([(name, data)])
            merged.add(part if failed is None else self._pipeline_error(data, failed))
        return merged

    def _try_run(self, messages: Sequence[tuple[str, bytes]]
                 ) -> tuple[BatchResult, Exception | None]:
        try:
            return self._execute(_feed_of(messages)), None
        except PipelineFailsBeforeAnyMessage:
            raise
        except Exception as err:
            return BatchResult.empty(), err

    def _execute(self, feed: Mapping[str, Sequence[bytes]]) -> BatchResult:
        """The job's run of ``feed``. A run that fails before any message (a DoFn's setup fails:
        its model store is down, say) is no message's fault, and each would fail alike: the
        worker is not ready, and PipelineFailsBeforeAnyMessage tells the caller to hand the batch
        back rather than dead-letter it."""
        try:
            result = self.executor.run(feed)
        except Exception as err:
            if not _before_any_message(err):
                raise
            self.health.pipeline_failing = (
                f"the job's pipeline fails before any message: {type(err).__name__}: {err}")
            raise PipelineFailsBeforeAnyMessage(self.health.pipeline_failing) from err
        self.health.pipeline_failing = None
        self.pipeline_backoff.reset()
        return result

    def _pipeline_error(self, data: bytes, err: Exception) -> BatchResult:
        """The result of a message whose run fails alone: a dead letter."""
        # bytes as they came: read as the intake read them (Klio's allow_non_klio_messages
        # makes a message of any bytes)
        element = kmessage.element_id(kmessage.parse(
            data, allow_non_klio=self.config.job_config.allow_non_klio_messages))
        log.warning("dead letter (pipeline_error) %s: %s: %s", printable(element),
                    type(err).__name__, printable(str(err)))
        # read, as its failed runs' counts were dropped (prometheus_writes_held)
        self._count_dead_letter("pipeline_error", element)
        result = BatchResult.empty()
        result.dead_letter.append(DeadLetter(
            "pipeline_error", "run", f"{type(err).__name__}: {err}"[:500], element))
        return result

    def _count_dead_letter(self, reason: str, where: str) -> None:
        """Count a message the worker itself dead-letters as read, and as dead-lettered only
        when there is a topic to send it to. Without one the message goes back to Pub/Sub
        (counted as handed back), and each redelivery must not count it as dead-lettered once
        more. Counted outside any bundle: the batched counts are handed on at once."""
        self.job_metrics.received()
        if self.dead_letter_topic is not None:
            self.job_metrics.dead_lettered(reason, where)
        self.job_metrics.flush()

    def _dead_letter(self, original: Pulled | None, letter: DeadLetter,
                     source: str | None = None) -> _Outgoing:
        """The dead letter of ``letter``: the original bytes and attributes, so the message can
        be replayed, with the record's attributes; without an original, the record (as JSON),
        acknowledging ``source`` once sent."""
        assert self.dead_letter_topic is not None
        if original is None:  # the record alone: it must fit however long the element's id
            letter = dataclasses.replace(letter, element=cut_to_bytes(letter.element, DETAIL_LIMIT),
                                         detail=cut_to_bytes(letter.detail, DETAIL_LIMIT))
        record = dead_letter_message(letter, self.config.job_name)
        if original is not None:
            return _Outgoing(self.dead_letter_topic, original.data,
                             {**original.attributes, **record.attributes}, "dead_letter",
                             original.ack_id, letter)
        return _Outgoing(self.dead_letter_topic, record.data, record.attributes, "dead_letter",
                         source)

    def _bottom_up(self, missing: Sequence[bytes], originals: Mapping[str, Pulled]
                   ) -> list[_Outgoing]:
        if not missing:
            return []
        messages = [_made(data) for data in missing]
        if not self.parents:
            for msg in messages:
                log.warning("input missing for %s and job_config.parents names no parent to ask",
                            kmessage.element_id(msg))
            return []
        inputs = self.config.job_config.data.inputs
        paths = {(i, kmessage.element_id(m)): inputs[p.data_input].path_for(kmessage.element_id(m))
                 for m in messages for i, p in enumerate(self.parents)}
        found = self.store.exists_many(set(paths.values()))
        out: list[_Outgoing] = []
        for msg in messages:
            element = kmessage.element_id(msg)
            missing_inputs = {p.data_input for i, p in enumerate(self.parents)
                              if not found[paths[(i, element)]]}
            for parent, request in requests_for(msg, self.job, self.parents, missing_inputs):
                name = parent.job.job_name
                if not self.pending.claim(request, parent.job):
                    self.metrics.bottom_up_pending.labels(job=self.job.job_name,
                                                          parent=name).inc()
                    log.info("input missing for %s: parent %s was asked the same less than %d "
                             "s ago and has not answered yet; not asked again", element, name,
                             self.settings.pending_ttl_seconds)
                    continue
                self.metrics.bottom_up.labels(job=self.job.job_name, parent=name).inc()
                log.info("input missing for %s: asking parent %s on %s", element, name,
                         parent.topic)
                out.append(_Outgoing(parent.topic, kmessage.serialize(request), {},
                                     f"bottom_up:{name}", _ack_id(originals.get(element))))
        return out

    def _forget_requests(self, outgoing: Sequence[_Outgoing]) -> None:
        by_name = {p.job.job_name: p.job for p in self.parents}
        for o in outgoing:
            if o.kind.startswith("bottom_up:"):
                self.pending.forget(_made(o.data), by_name[o.kind.split(":", 1)[1]])

    def _ack(self, messages: Sequence[Pulled]) -> None:
        acked = 0
        for subscription, ack_ids in _by_subscription(messages).items():
            try:
                self.client.ack(subscription, ack_ids)
                acked += len(ack_ids)
            except api_exceptions.GoogleAPIError as err:
                # Their work is done and published: redelivered after their ack deadline, they
                # run again (at-least-once). The worker carries on (Pub/Sub unreachable, say).
                log.warning("could not acknowledge %d messages (%s: %s); they return after "
                            "their ack deadline", len(ack_ids), type(err).__name__, err)
        self.metrics.acked.labels(job=self.config.job_name).inc(acked)

    def _nack(self, messages: Sequence[Pulled], reason: str, delay: int | None = None) -> None:
        """Hand ``messages`` back: Pub/Sub redelivers them after ``delay`` seconds, by default
        the redelivery delay (not at once: a failure that lasts must not turn into a hot loop of
        retries)."""
        seconds = self.settings.redelivery_delay_seconds if delay is None else delay
        for subscription, ack_ids in _by_subscription(messages).items():
            try:
                self.client.modify_ack_deadline(subscription, ack_ids, seconds)
            except api_exceptions.GoogleAPIError as err:
                log.warning("could not hand back %d messages (%s: %s); they return after "
                            "their ack deadline", len(ack_ids), type(err).__name__, err)
        self.metrics.nacked.labels(job=self.config.job_name, reason=reason).inc(len(messages))


def _waited_out(err: Exception) -> bool:
    """Whether the worker waits ``err`` out, not ready, rather than failing: Pub/Sub unreachable
    (a transient error, or the client's own retries given up) or a subscription missing (not
    made yet, or deleted under the worker until the operator's drift repair makes it again)."""
    return (
        if_transient_error(err)
        or isinstance(err, api_exceptions.RetryError | api_exceptions.NotFound)
    )


class PipelineFailsBeforeAnyMessage(RuntimeError):
    """A run of the job failed in a DoFn's ``setup`` or ``start_bundle``: no message's fault."""


_LIFECYCLE_FRAMES = ("invoke_setup", "invoke_start_bundle")
"""Beam's calls of a DoFn's ``setup`` and ``start_bundle``: they see no message."""


def _before_any_message(err: BaseException) -> bool:
    """Whether a failed run failed in a DoFn's ``setup`` or ``start_bundle`` (Beam's frames in
    the traceback of ``err`` or of what it was raised from)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        if any(frame.name.rsplit(".", 1)[-1] in _LIFECYCLE_FRAMES for frame in frames):
            return True
        current = current.__cause__ or current.__context__
    return False


def _feed_of(messages: Sequence[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    feed: dict[str, list[bytes]] = {}
    for name, data in messages:
        feed.setdefault(name, []).append(data)
    return feed


def _too_large(future: Future[str]) -> MessageTooLargeError | None:
    """The client's refusal of a publish as over Pub/Sub's size limit, if it refused at once."""
    if not future.done() or future.cancelled():  # cancelled: exception() raises
        return None
    error = future.exception()
    return error if isinstance(error, MessageTooLargeError) else None


def _made(data: bytes) -> kmessage.KlioMessage:
    """A message the job's pipeline made, as protobuf reads it: without parse's checks for bytes
    from outside, which it passed on the way in. (Klio's allow_non_klio_messages may have made
    it of any bytes, even none, and its element may be empty.) Never raises: one odd message
    must not fail the batch around it."""
    try:
        return kmessage.KlioMessage.FromString(data)
    except DecodeError:
        return kmessage.KlioMessage()


def _ack_id(message: Pulled | None) -> str | None:
    return None if message is None else message.ack_id


def _by_subscription(messages: Sequence[Pulled]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for message in messages:
        grouped.setdefault(message.subscription, []).append(message.ack_id)
    return grouped
