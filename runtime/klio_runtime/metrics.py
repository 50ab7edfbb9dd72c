"""Job metrics: one call records to Beam's metrics and to a prometheus-client registry.

Beam's metrics reach Dataflow/Flink dashboards and ``PipelineResult.metrics()``; the prometheus
registry is what the worker serves on ``/metrics``. Prometheus expects one registry per process, so
the worker process owns one :class:`MetricsHub` (``process_hub()``); everything else receives a
:class:`KlioMetrics` built from the job config.

Standard names (label ``job`` on all): ``klio_messages_received_total``,
``klio_messages_dropped_total{reason}``, ``klio_messages_skipped_total{reason}`` (ping,
output_exists), ``klio_messages_output_total``, ``klio_dead_letter_total{reason}`` and the histogram
``klio_messages_processing_seconds``. User metrics are named ``<prefix>_<name>`` where the prefix is
``job_config.metrics.prefix`` or the job name, made Prometheus-safe.

Each ``@handle_klio`` / ``@serialize_klio_message`` function also has Klio's per-transform
metrics (:class:`TransformMetrics`: ``kmsg-received``, ``kmsg-success``, ``kmsg-drop-error``,
``kmsg-timer``), named like user metrics with the label ``transform``.

In Beam, a metric of Klio's API is named as Klio's native client names it: the namespace is its
transform (the job's name when it has none) and the name is the metric's own; tags are not part of
it (Prometheus has them as labels).

As Klio's logger client does, each update of a user metric is also logged on ``klio.metrics``
(``[name] value: V transform: 'T' tags: {...}``), at DEBUG unless ``job_config.metrics.logger``
says ``level`` (and ``timer_unit``, default ns); ``logger: false`` turns it off.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from apache_beam.metrics import Metrics
from apache_beam.runners.worker import statesampler
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram

from klio_runtime.config import KlioRunner

P = ParamSpec("P")
R = TypeVar("R")

FLUSH_EVERY = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")
_TIMER_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


class _ElementProgress:
    """How often the job's steps in this process took in or finished an element (``steps``); how
    many messages its router received (``received``), holds for its batched existence checks
    (``waiting``) and sent to ``run`` (``sent_to_run``, at each bundle's end); all counted at
    once, unlike the metrics' batches (from any thread; a count that may miss an increment under
    threads is enough). The streaming worker's liveness probe watches ``steps``, so a batch of
    long elements is not taken for a stuck loop, and sizes its batches by the pace of the
    messages sent to run; ``klio job run``'s progress bar shows :meth:`routed`."""

    steps = 0
    received = 0
    waiting = 0
    sent_to_run = 0

    def routed(self) -> int:
        """Messages the router has handed on (to ``run``, past it, or dropped)."""
        return self.received - self.waiting


element_progress = _ElementProgress()


def prometheus_name(name: str) -> str:
    """``kmsg-received`` → ``kmsg_received``; a leading digit gets an underscore."""
    safe = _UNSAFE.sub("_", name).strip("_") or "metric"
    return f"_{safe}" if safe[0].isdigit() else safe


_USER_DOC = "A metric of the Klio job's own."

_held: list[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
"""Prometheus writes held back by :func:`prometheus_writes_held` (None: written at once)."""


def _write(write: Callable[..., Any], *args: Any) -> None:
    """One Prometheus write (``child.inc``, ``.set``, ``.observe``): made now, or held."""
    held = _held
    if held is None:
        write(*args)
    else:
        held.append((write, args))


@contextmanager
def prometheus_writes_held() -> Iterator[None]:
    """Hold the job's Prometheus writes made in the block (from any thread) until it ends: made
    then if it ends well, dropped if it raises.

    The worker runs a batch in this block. A run that fails is run again in parts, and what it
    counted before it failed (counts are handed on every ``FLUSH_EVERY`` messages) would be
    counted twice. Beam drops a failed bundle's own metrics the same way.
    """
    global _held
    if _held is not None:  # nested: the outer block decides
        yield
        return
    held: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    _held = held
    try:
        yield
    finally:
        _held = None
    for write, args in held:
        write(*args)


class MetricsHub:
    """The per-process prometheus registry with the standard Klio metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._user: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._unexported: dict[tuple[str, str, tuple[str, ...]], Any] = {}
        r = self.registry
        self.received = PromCounter(
            "klio_messages_received", "Klio messages read by the job.", ["job"], registry=r
        )
        self.dropped = PromCounter(
            "klio_messages_dropped", "Messages dropped, by reason.", ["job", "reason"], registry=r
        )
        self.skipped = PromCounter(
            "klio_messages_skipped",
            "Messages passed on without running the job (ping, output_exists).",
            ["job", "reason"],
            registry=r,
        )
        self.output = PromCounter(
            "klio_messages_output", "Messages written to the event outputs.", ["job"], registry=r
        )
        self.dead_letter = PromCounter(
            "klio_dead_letter",
            "Records sent to the dead-letter place.",
            ["job", "reason"],
            registry=r,
        )
        self.processing = PromHistogram(
            "klio_messages_processing_seconds",
            "Time in the job's decorated functions per message.",
            ["job"],
            registry=r,
        )

    def user_metric(self, kind: type[Any], name: str, labels: Mapping[str, str]) -> Any:
        """The user metric ``name`` with these label values, ready to record (made on first use).

        Klio keys a metric by type, name and transform and lets its tags vary; Prometheus wants
        one type and one set of label names per name. So a later use with other labels records
        under the first use's (a label it lacks is "", one it adds is left out), and a use of
        another type, or of a name the registry already holds, is not exported. Each such use is
        warned of once; Beam's metrics and the ``klio.metrics`` log still get all of it.
        """
        names = tuple(labels)
        with self._lock:
            known = self._user.get(name)
            if known is None:
                known = self._user[name] = (self._registered(kind, name, names), names)
            metric, first_names = known
            if not isinstance(metric, kind):
                _warn_once(
                    f"metric {name!r} is a {type(metric).__name__} already: this "
                    f"{kind.__name__} is not exported to Prometheus",
                )
                key = (name, kind.__name__, names)
                metric = self._unexported.get(key)
                if metric is None:
                    metric = self._unexported[key] = kind(
                        name, _USER_DOC, list(names), registry=None
                    )
            elif names != first_names:
                dropped = sorted(set(names) - set(first_names))
                _warn_once(
                    f"metric {name!r} was first used with labels {list(first_names)}, now with "
                    f"{list(names)}: recorded in Prometheus under the first"
                    + (f" (without {dropped})" if dropped else ""),
                )
                labels = {label: labels.get(label, "") for label in first_names}
        return metric.labels(**labels) if labels else metric

    def _registered(self, kind: type[Any], name: str, names: tuple[str, ...]) -> Any:
        try:
            return kind(name, _USER_DOC, list(names), registry=self.registry)
        except ValueError as err:  # its series clash with one the registry holds
            _warn_once(f"metric {name!r} is not exported to Prometheus: {err}")
            return kind(name, _USER_DOC, list(names), registry=None)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve this registry on ``http://addr:port/metrics`` from a daemon thread."""
        from prometheus_client import start_http_server

        return start_http_server(port, addr=addr, registry=self.registry)

    def value(self, metric: str, **labels: str) -> float:
        """Current value of a sample (0 when absent): used by progress bars and tests."""
        got = self.registry.get_sample_value(metric, labels)
        return float(got) if got is not None else 0.0


_process_hub: MetricsHub | None = None
_process_hub_lock = threading.Lock()


def process_hub() -> MetricsHub:
    """The registry this worker process serves on ``/metrics`` (created on first use)."""
    global _process_hub
    with _process_hub_lock:
        if _process_hub is None:
            _process_hub = MetricsHub()
        return _process_hub


METRICS_LOGGER = "klio.metrics"
DIRECT_RUNNER = KlioRunner.DIRECT_RUNNER.value
_UNIT_NAMES = {"nanoseconds": "ns", "microseconds": "us", "milliseconds": "ms", "seconds": "s"}
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Warn on ``klio.metrics`` the first time this process has ``message`` to say: a setting or
    metric that Klio takes and this runtime takes differently says so once, not per element."""
    if message not in _warned:
        _warned.add(message)
        logging.getLogger(METRICS_LOGGER).warning("%s", message)


def _unknown_setting(where: str, value: Any, known: Iterable[str], default: str) -> None:
    # Klio runs with its default where a metrics setting names no unit or level it knows
    _warn_once(
        f"{where}: {value!r} is none of {sorted(known)}; {default} is used instead, as in Klio"
    )


def unit_named(unit: Any, where: str) -> str | None:
    """A timer unit as its short name (``s``, ``ms``, ``us``, ``ns``; Klio's long names too).
    None for a unit it does not know (warned, naming the field ``where``): the caller's default
    is used, as Klio's metrics clients do."""
    name = _UNIT_NAMES.get(str(unit), str(unit))
    if name in _TIMER_UNITS:
        return name
    _unknown_setting(where, unit, _TIMER_UNITS, "the default unit")
    return None


def _level_named(level: Any, where: str) -> int:
    """A log level by name, any case (``info``, ``WARN``; Klio looks it up on ``logging``); an
    unknown one is DEBUG, Klio's default for logged metrics (warned, naming ``where``)."""
    levels = logging.getLevelNamesMapping()
    found = levels.get(str(level).upper())
    if found is None:
        _unknown_setting(where, level, (n.lower() for n in levels), "debug")
        return logging.DEBUG
    return found


@dataclass(frozen=True)
class MetricsLogRelay:
    """Klio's logger metrics client: each update of a user metric, logged on ``klio.metrics``."""

    level: int = logging.DEBUG
    timer_unit: str = "ns"

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | None, runner: str | None = None
    ) -> MetricsLogRelay | None:
        """From ``job_config.metrics``: ``logger: false`` → None; ``logger: {level, timer_unit}``
        (an unknown level or unit: Klio's default, warned). Not configured, it is on for the
        job's ``runner`` only when that is the DirectRunner (or unset: this runtime's default),
        as Klio turns its logger client on by default only there."""
        top: Mapping[str, Any] = settings if isinstance(settings, Mapping) else {}
        conf = top.get("logger")
        if conf is None and runner not in (None, DIRECT_RUNNER):
            return None
        if conf is False:
            return None
        conf = conf if isinstance(conf, Mapping) else {}
        level = _level_named(conf.get("level") or "debug", "job_config.metrics.logger.level")
        unit = conf.get("timer_unit") or "ns"  # Klio's logger client reads only its own
        return cls(level, unit_named(unit, "job_config.metrics.logger.timer_unit") or "ns")

    def emit(self, name: str, value: Any, transform: str | None, tags: Mapping[str, Any]) -> None:
        logger = logging.getLogger(METRICS_LOGGER)
        if logger.isEnabledFor(self.level):
            logger.log(
                self.level, "[%s] value: %s transform: '%s' tags: %s", name, value, transform, tags
            )


Relay = Callable[[Any], None] | None
"""One metric's relay: called with each update's value (None: not relayed)."""


class _Metric:
    """A metric recorded to Beam and Prometheus (and logged, see the module), showing what
    Klio's metric objects show: ``name``, ``transform``, and ``value``: the starting value given
    when made (never recorded, as in Klio), then the last one recorded."""

    def __init__(
        self,
        beam_metric: Any,
        prom: Any,
        relay: Relay,
        name: str,
        transform: str | None,
        value: float,
    ) -> None:
        self._beam = beam_metric
        self._prom = prom
        self._relay = relay
        self.name = name
        self.transform = transform
        self.value = value
        # how KlioMetrics made it (registry, kind, arguments): pickled with a DoFn that made it in
        # __init__ (Klio's documented pattern), it is made again from the registry it lands in,
        # so its Prometheus counts reach that process's /metrics (a copy of the old series
        # would count where nobody looks)
        self._made_by: tuple[Any, ...] | None = None

    kind = "metric"

    def __reduce__(self) -> Any:
        if self._made_by is None:  # not one of KlioMetrics' user metrics: a plain copy
            return super().__reduce__()
        owner, kind, args = self._made_by
        return (_made_again, (owner, kind, args, self.value))

    @property
    def metric_key(self) -> str:
        """Klio's key of the metric: ``<type>_<name>``, then ``_<transform>`` when given."""
        key = f"{self.kind}_{self.name}"
        return f"{key}_{self.transform}" if self.transform else key


M = TypeVar("M", bound=_Metric)


class Counter(_Metric):
    """A counter. ``inc(value)`` adds (Klio's keyword: ``value``)."""

    kind = "counter"

    def __init__(
        self,
        beam_metric: Any,
        prom: Any,
        relay: Relay = None,
        name: str = "counter",
        transform: str | None = None,
        value: int = 0,
    ) -> None:
        super().__init__(beam_metric, prom, relay, name, transform, value)

    def inc(self, value: int = 1) -> None:
        self.value = value
        self._beam.inc(value)
        _write(self._prom.inc, value)
        if self._relay is not None:
            self._relay(value)


class Gauge(_Metric):
    """A gauge. ``set(v)`` records."""

    kind = "gauge"

    def set(self, value: float) -> None:
        self.value = value
        self._beam.set(int(value))
        _write(self._prom.set, value)
        if self._relay is not None:
            self._relay(value)


class Timer(_Metric):
    """Times a block (``with timer:``), a function (``@timer``) or what lies between ``start()``
    and ``stop()`` (Klio's three ways); records in ``timer_unit`` (``value``: the last time, in
    it).

    Beam gets a distribution in the unit; Prometheus a histogram in seconds (its convention).
    """

    kind = "timer"

    def __init__(
        self,
        beam_metric: Any,
        prom: Any,
        timer_unit: str = "s",
        relay: Relay = None,
        name: str = "timer",
        transform: str | None = None,
        value: float = 0,
    ) -> None:
        if timer_unit not in _TIMER_UNITS:
            raise ValueError(
                f"timer_unit must be one of {sorted(_TIMER_UNITS)}, not {timer_unit!r}"
            )
        super().__init__(beam_metric, prom, relay, name, transform, value)  # relay: seconds
        self.timer_unit = timer_unit
        self._scale = _TIMER_UNITS[timer_unit]
        self._local = threading.local()

    def record(self, seconds: float) -> None:
        self.value = seconds * self._scale
        self._beam.update(int(self.value))
        _write(self._prom.observe, seconds)
        if self._relay is not None:
            self._relay(seconds)

    def start(self) -> None:
        starts: list[float] = self._local.__dict__.setdefault("starts", [])
        starts.append(time.perf_counter())

    def stop(self) -> None:
        """Record the time since the last ``start()`` (in this thread); without one, a warning
        (as Klio logs) and nothing recorded."""
        starts = self._local.__dict__.get("starts")
        if not starts:
            logging.getLogger(f"{METRICS_LOGGER}.dispatcher").warning(
                "Timer %s cannot be stopped before started.", self.metric_key
            )
            return
        self.record(time.perf_counter() - starts.pop())

    def __enter__(self) -> Timer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return func(*args, **kwargs)

        return timed


def observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe`` of each value, with one update per bucket: prometheus-client takes
    a lock per observe(), which costs more than a trivial job's step. Held like any write."""
    _write(_observe_all, histogram, values)


def _observe_all(histogram: Any, values: list[float]) -> None:
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # a client without these
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))


def kmsg_timer_unit(settings: Mapping[str, Any] | None) -> str:
    """The unit of the decorators' ``kmsg-timer``, in Klio's order of precedence:
    ``job_config.metrics.timer_unit``, then that of ``native``, ``shumway``, ``logger``; else
    (or for a unit it does not know, warned) seconds.
    """
    top: Mapping[str, Any] = settings if isinstance(settings, Mapping) else {}
    where, unit = "timer_unit", top.get("timer_unit")
    for client in ("native", "shumway", "logger"):
        conf = top.get(client)
        if not unit and isinstance(conf, Mapping) and conf.get("timer_unit"):
            where, unit = f"{client}.timer_unit", conf["timer_unit"]
    return unit_named(unit or "s", f"job_config.metrics.{where}") or "s"


KMSG_RECEIVED = "kmsg-received"
KMSG_SUCCESS = "kmsg-success"
KMSG_DROP_ERROR = "kmsg-drop-error"
KMSG_TIMER = "kmsg-timer"
_COUNTER_TAGS = {"metric_type": "counter"}


class _BundleBatching(threading.local):
    """Per thread: how many of the job's own steps in the running bundle will hand the
    decorators' batched metrics on at the bundle's end, and that bundle's Beam state tracker."""

    depth = 0
    tracker: object = None


_batching = _BundleBatching()


def batch_until_bundle_end() -> None:
    """From a step's ``start_bundle`` whose ``finish_bundle`` flushes the job's metrics (the
    router, output preparation): until :func:`bundle_ended`, decorated steps in this thread batch
    their metrics. Without such a step (a decorated DoFn in a pipeline of the user's own), each
    element's metrics go to Beam at once, inside its bundle, as Klio's native client does."""
    tracker = statesampler.get_current_tracker()
    if tracker is not _batching.tracker:  # another bundle's: one that failed never ended
        _batching.depth, _batching.tracker = 0, tracker
    _batching.depth += 1


def bundle_ended() -> None:
    """From that step's ``finish_bundle``, after its flush."""
    _batching.depth = max(0, _batching.depth - 1)


def in_job_bundle() -> bool:
    """Whether one of the job's own steps runs in this thread's bundle (see above)."""
    return bool(_batching.depth) and _batching.tracker is statesampler.get_current_tracker()


class TransformMetrics:
    """Klio's metrics of one ``@handle_klio`` / ``@serialize_klio_message`` transform: counters
    ``kmsg-received``, ``kmsg-success``, ``kmsg-drop-error`` and the timer ``kmsg-timer``, labelled
    with the transform (the function's qualified name); its times also feed the job's
    ``klio_messages_processing_seconds``.

    In Beam, as in Klio, the namespace is the transform: counters ``kmsg-received``,
    ``kmsg-success``, ``kmsg-drop-error`` and the distribution ``kmsg-timer`` in the decorators'
    timer unit (:func:`kmsg_timer_unit`). Inside the job's pipeline only plain ints and a list
    change per element; Beam and Prometheus get them at the owner's flush at the bundle's end (or
    every ``FLUSH_EVERY`` elements), see :func:`batch_until_bundle_end`. As Klio's logger client
    does, each update is also logged at once on ``klio.metrics`` when that logger is enabled for
    the relay's level; callers ask :meth:`logging` once per element, since a level may change
    while a job runs.
    """

    def __init__(self, owner: KlioMetrics, transform: str) -> None:
        self.transform = transform
        self._owner = owner
        self._relay = owner.log_relay
        self._logger = logging.getLogger(METRICS_LOGGER)
        self._unit = owner.decorator_timer_unit
        self._timer_tags = {"metric_type": "timer", "unit": self._unit}
        self._received = self._success = self._errors = 0
        self._times: list[float] = []
        self._recorders: tuple[Counter, Counter, Counter, Any, Any] | None = None

    def logging(self) -> bool:
        """Whether updates are to be logged now."""
        relay = self._relay
        return relay is not None and self._logger.isEnabledFor(relay.level)

    def arrived(self) -> bool:
        """An element reaches the transform; returns whether one of the job's own steps batches
        this bundle's metrics (:func:`in_job_bundle`), for :meth:`finished`. In a pipeline of the
        user's own (nothing batches), its ``kmsg-received`` counter is made now, so Beam lists it
        first, as Klio's: counted before the work."""
        if in_job_bundle():
            return True
        if self._recorders is None:
            self._recorders = self._make_recorders()
        self._recorders[0].inc(0)
        return False

    def log_received(self) -> None:
        """Log an element's arrival (counted, with its outcome, when it is done)."""
        self._emit(KMSG_RECEIVED, 1, _COUNTER_TAGS)

    def finished(
        self, passed: int, dropped: bool, seconds: float, log: bool, batched: bool
    ) -> None:
        """One element done after ``seconds`` in the transform: ``passed`` outputs counted as
        successes (one for an element passed on; as in Klio, one per item a generator yields,
        also before it raised), and whether it was dropped; ``batched``: what :meth:`arrived`
        returned."""
        element_progress.steps += 1
        self._received += 1
        self._success += passed
        if dropped:
            self._errors += 1
        self._times.append(seconds)
        if log:
            for _ in range(passed):
                self._emit(KMSG_SUCCESS, 1, _COUNTER_TAGS)
            if dropped:
                self._emit(KMSG_DROP_ERROR, 1, _COUNTER_TAGS)
            self._emit(KMSG_TIMER, seconds * _TIMER_UNITS[self._unit], self._timer_tags)
        if not batched or len(self._times) >= FLUSH_EVERY:
            self.flush()

    def _emit(self, name: str, value: float, tags: Mapping[str, Any]) -> None:
        if self._relay is not None:
            self._relay.emit(name, value, self.transform, dict(tags))

    def _make_recorders(self) -> tuple[Counter, Counter, Counter, Any, Any]:
        owner, where = self._owner, self.transform
        received, success, errors = (
            owner._counter(name, where, {}, logged=False)
            for name in (KMSG_RECEIVED, KMSG_SUCCESS, KMSG_DROP_ERROR)
        )
        timer = owner.hub.user_metric(
            PromHistogram,
            f"{owner.prefix}_{prometheus_name(KMSG_TIMER)}_seconds",
            {"transform": where},
        )
        beam_timer = Metrics.distribution(where, KMSG_TIMER)
        return received, success, errors, timer, beam_timer

    def flush(self) -> None:
        counts = (self._received, self._success, self._errors)
        times, self._times = self._times, []
        self._received = self._success = self._errors = 0
        if not (any(counts) or times):
            return
        if self._recorders is None:
            self._recorders = self._make_recorders()
        *counters, timer, beam_timer = self._recorders
        for counter, count in zip(counters, counts, strict=True):
            if count:
                counter.inc(count)
        if times:
            observe_all(timer, times)
            observe_all(self._owner._child(self._owner.hub.processing), times)
            scale = _TIMER_UNITS[self._unit]
            for seconds in times:
                beam_timer.update(int(seconds * scale))  # Beam keeps integers, as Klio's got


def _made_again(owner: KlioMetrics, kind: str, args: dict[str, Any], value: float) -> _Metric:
    """A pickled user metric, made again by its unpickled registry, with its last value."""
    metric: _Metric = getattr(owner, kind)(**args)
    metric.value = value
    return metric


class KlioMetrics:
    """``ctx.metrics``: the job's metrics (Klio's ``counter``/``gauge``/``timer``) and the standard
    ones."""

    def __init__(
        self,
        job_name: str,
        prefix: str | None = None,
        hub: MetricsHub | None = None,
        log_relay: MetricsLogRelay | None = MetricsLogRelay(),  # frozen: one default is shared
        decorator_timer_unit: str = "s",
    ) -> None:
        self.job_name = job_name
        self.log_relay = log_relay
        self.prefix = prometheus_name(prefix or job_name)
        self.hub = hub if hub is not None else process_hub()
        self._beam_counters: dict[str, Any] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        # The two per-message counters reach Prometheus in small batches: its lock per inc()
        # costs more than the rest of a trivial job's step.
        self._pending_received = 0
        self._pending_output = 0
        self._pending_times: list[float] = []
        self._ids_cache: dict[str, Any] = {}
        self._user_metrics: dict[tuple[Any, ...], _Metric] = {}  # see _remembered
        self._transforms: dict[str, TransformMetrics] = {}
        self.decorator_timer_unit = decorator_timer_unit
        self.read_by: str | None = None
        """Klio's IO transform reading what ``received`` counts: its ``kmsg-read`` follows."""
        self.written_by: tuple[str, ...] = ()
        """Klio's IO transforms writing what ``output`` counts: their ``kmsg-write`` follow."""
        self._io_counters: dict[tuple[str, str], Counter] = {}
        self.log_io = False
        """Whether each read and write is logged on ``klio.metrics`` as Klio's IO counters log
        it (:meth:`refresh_log_io`, once per bundle: they are counted in batches)."""
        self.summarized = False
        """Whether these are the metrics of a job built by KlioJobTransform, whose run's summary
        reads its drops and skips from Beam (see :meth:`dropped`)."""

    @classmethod
    def from_settings(
        cls, job_name: str, settings: Mapping[str, Any] | None, runner: str | None = None
    ) -> KlioMetrics:
        """Build from ``job_config.metrics`` (Klio's mapping: ``prefix`` and ``logger``) and the
        job's configured ``runner`` (see :meth:`MetricsLogRelay.from_settings`)."""
        prefix = settings.get("prefix") if isinstance(settings, Mapping) else None
        relay = MetricsLogRelay.from_settings(settings, runner)
        return cls(
            job_name,
            prefix=str(prefix) if prefix else None,
            log_relay=relay,
            decorator_timer_unit=kmsg_timer_unit(settings),
        )

    @classmethod
    def of_job(cls, config: Any) -> KlioMetrics:
        """The metrics of the job a :class:`~klio_runtime.config.KlioConfig` describes."""
        return cls.from_settings(
            config.job_name, config.job_config.metrics, config.pipeline_options.runner
        )

    # -- user metrics (Klio's API) --------------------------------------------------------
    def _labels(self, transform: str | None, tags: Mapping[str, Any]) -> dict[str, str]:
        labels = {prometheus_name(k): str(v) for k, v in tags.items()}
        if transform is not None:
            labels["transform"] = str(transform)
        return dict(sorted(labels.items()))

    def _relay(
        self,
        name: str,
        transform: str | None,
        tags: Mapping[str, Any],
        kind: str,
        timer_unit: str | None = None,
    ) -> Relay:
        relay = self.log_relay
        if relay is None:
            return None
        shown = {**tags, "metric_type": kind}
        if kind != "timer":
            return functools.partial(relay.emit, name, transform=transform, tags=shown)
        unit = timer_unit or relay.timer_unit  # a timer's own unit, as Klio logs it
        shown["unit"] = unit
        scale = _TIMER_UNITS[unit]
        return lambda seconds: relay.emit(name, seconds * scale, transform, shown)

    def counter(
        self,
        name: str,
        value: int = 0,
        transform: str | None = None,
        tags: Mapping[str, Any] | None = None,
        **more_tags: Any,
    ) -> Counter:
        """Klio's ``counter(name, value=0, transform=None, tags=None)``; tags may also be given
        as keywords. ``value`` is Klio's starting value: shown as ``.value``, not counted. Asked
        for again (same name, transform and tags), the same counter is returned as it is, as
        Klio's registry keeps one (other tags: another Prometheus series, another counter)."""
        tags = {**(tags or {}), **more_tags}

        def make() -> Counter:
            counter = self._counter(name, transform, tags, logged=True)
            counter.value = value
            return counter

        return self._remembered("counter", make, name, transform, tags)

    def _remembered(
        self,
        kind: str,
        make: Callable[[], M],
        name: str,
        transform: str | None,
        tags: Mapping[str, Any],
        **more: Any,
    ) -> M:
        """Klio's registry: the user metric of this kind, name and transform (and tags here: each
        set of tags is its own Prometheus series) made once and handed back when asked for again;
        marked with how it was made, so a pickled copy is made again (``_Metric.__reduce__``)."""
        key = (kind, name, transform, tuple(sorted((str(k), str(v)) for k, v in tags.items())))
        found = self._user_metrics.get(key)
        if found is None:
            found = self._user_metrics[key] = make()
            found._made_by = (
                self, kind, {"name": name, "transform": transform, "tags": tags, **more}
            )
        return cast(M, found)

    def _counter(
        self, name: str, transform: str | None, tags: Mapping[str, Any], logged: bool
    ) -> Counter:
        labels = self._labels(transform, tags)
        prom = self.hub.user_metric(PromCounter, f"{self.prefix}_{prometheus_name(name)}", labels)
        return Counter(
            Metrics.counter(transform or self.job_name, name),
            prom,
            self._relay(name, transform, tags, "counter") if logged else None,
            name,
            transform,
        )

    def gauge(
        self,
        name: str,
        value: float = 0,
        transform: str | None = None,
        tags: Mapping[str, Any] | None = None,
        **more_tags: Any,
    ) -> Gauge:
        """Klio's ``gauge(name, value=0, transform=None, tags=None)``; ``value`` is Klio's
        starting value: shown as ``.value``, not recorded. Asked for again (same name,
        transform and tags), the same gauge is returned as it is."""
        tags = {**(tags or {}), **more_tags}

        def make() -> Gauge:
            labels = self._labels(transform, tags)
            prom = self.hub.user_metric(
                PromGauge, f"{self.prefix}_{prometheus_name(name)}", labels
            )
            return Gauge(
                Metrics.gauge(transform or self.job_name, name),
                prom,
                self._relay(name, transform, tags, "gauge"),
                name,
                transform,
                value,
            )

        return self._remembered("gauge", make, name, transform, tags)

    def timer(
        self,
        name: str,
        value: float = 0,
        timer_unit: str | None = None,
        transform: str | None = None,
        tags: Mapping[str, Any] | None = None,
        **more_tags: Any,
    ) -> Timer:
        """Klio's ``timer(name, value=0, timer_unit=..., transform=None, tags=None)`` (``value``,
        Klio's starting value, is only shown as ``.value``). Beam gets each time as an integer in
        ``timer_unit`` (Klio's default: ns); the ``klio.metrics`` log shows it in ``timer_unit``
        when given, else in the logger's configured unit (Klio's documented global default).
        Asked for again (same name, transform and tags), the same timer is returned as it is."""
        tags = {**(tags or {}), **more_tags}

        def make() -> Timer:
            labels = self._labels(transform, tags)
            prom = self.hub.user_metric(
                PromHistogram, f"{self.prefix}_{prometheus_name(name)}_seconds", labels
            )
            unit = (
                unit_named(timer_unit, f"metrics.timer({name!r}): timer_unit")
                if timer_unit
                else None
            )
            return Timer(
                Metrics.distribution(transform or self.job_name, name),
                prom,
                unit or "ns",
                self._relay(name, transform, tags, "timer", unit),
                name,
                transform,
                value,
            )

        return self._remembered("timer", make, name, transform, tags, timer_unit=timer_unit)

    # -- standard metrics (label children cached: these run once or more per message) -----
    def _child(self, metric: Any, **labels: str) -> Any:
        key = (id(metric), *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(job=self.job_name, **labels)
        return child

    def _beam_counter(self, name: str) -> Any:
        counter = self._beam_counters.get(name)
        if counter is None:
            counter = self._beam_counters[name] = Metrics.counter(self.job_name, name)
        return counter

    def refresh_log_io(self) -> None:
        """Look again whether ``klio.metrics`` logs the relay's level (a step's start_bundle)."""
        relay = self.log_relay
        self.log_io = relay is not None and logging.getLogger(METRICS_LOGGER).isEnabledFor(
            relay.level
        )

    def received(self, n: int = 1) -> None:
        """Count read messages; Beam and Prometheus get them in steps of ``FLUSH_EVERY`` or at
        flush()."""
        self._pending_received += n
        element_progress.steps += n
        element_progress.received += n
        if self.log_io and self.read_by and self.log_relay is not None:
            self.log_relay.emit("kmsg-read", n, self.read_by, _COUNTER_TAGS)
        if self._pending_received >= FLUSH_EVERY:
            self.flush()

    def output(self, n: int = 1) -> None:
        """Count written messages; batched like ``received``."""
        self._pending_output += n
        if self.log_io and self.log_relay is not None:
            for writer in self.written_by:
                self.log_relay.emit("kmsg-write", n, writer, _COUNTER_TAGS)
        if self._pending_output >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Hand the batched counts on (DoFns call this in ``finish_bundle``: Beam counts what a
        bundle's code increments, so this must run inside the bundle)."""
        self._flush_times()
        for transform in list(self._transforms.values()):
            transform.flush()
        if self._pending_received:
            received, self._pending_received = self._pending_received, 0
            self._beam_counter("klio_messages_received").inc(received)
            _write(self._child(self.hub.received).inc, received)
            if self.read_by:
                self._io_counter("kmsg-read", self.read_by).inc(received)
        if self._pending_output:
            output, self._pending_output = self._pending_output, 0
            self._beam_counter("klio_messages_output").inc(output)
            _write(self._child(self.hub.output).inc, output)
            for writer in self.written_by:
                self._io_counter("kmsg-write", writer).inc(output)

    def _io_counter(self, name: str, transform: str) -> Counter:
        # Counted in batches; logged per message by received() and output() instead.
        found = self._io_counters.get((name, transform))
        if found is None:
            found = self._io_counters[name, transform] = self._counter(
                name, transform, {}, logged=False
            )
        return found

    def dropped(self, reason: str, element: str | None = None) -> None:
        """Count a drop; ``element`` joins the Beam string set that run summaries report by id.

        Beam gets these (and :meth:`skipped`) in a job built by KlioJobTransform (``summarized``:
        from any of run's steps, also after a fusion break or at a bundle's end) or while one of
        the job's own steps is in the bundle (:func:`batch_until_bundle_end`): a run's summary
        reads them. A pipeline of the user's own (a job's test of Klio's helpers or decorators)
        then has only Klio's ``kmsg-*`` counters, as under Klio; Prometheus counts every one.
        """
        if self.summarized or in_job_bundle():
            self._beam_counter(f"klio_messages_dropped[reason={reason}]").inc()
            if element is not None:
                self._ids(f"dropped_ids[reason={reason}]").add(element)
        _write(self._child(self.hub.dropped, reason=reason).inc)

    def skipped(self, reason: str) -> None:
        if self.summarized or in_job_bundle():  # see dropped()
            self._beam_counter(f"klio_messages_skipped[reason={reason}]").inc()
        _write(self._child(self.hub.skipped, reason=reason).inc)

    def dead_lettered(self, reason: str, where: str | None = None) -> None:
        self._beam_counter(f"klio_dead_letter[reason={reason}]").inc()
        _write(self._child(self.hub.dead_letter, reason=reason).inc)
        if where is not None:
            self._ids(f"dead_letter_ids[reason={reason}]").add(where)

    def processing_time(self, seconds: float) -> None:
        """One element's time in the job's code, for the Prometheus histogram (batched, see
        flush; Beam's per-element distribution cost more than a trivial job's step)."""
        self._pending_times.append(seconds)
        if len(self._pending_times) >= FLUSH_EVERY:
            self._flush_times()

    def _flush_times(self) -> None:
        times, self._pending_times = self._pending_times, []
        if times:
            observe_all(self._child(self.hub.processing), times)

    def transform(self, name: str) -> TransformMetrics:
        """Klio's metrics of the decorated transform ``name`` (made once; flushed with these)."""
        found = self._transforms.get(name)
        if found is None:
            found = self._transforms[name] = TransformMetrics(self, name)
        return found

    @contextmanager
    def processing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.processing_time(time.perf_counter() - start)

    def _ids(self, name: str) -> Any:
        found = self._ids_cache.get(name)
        if found is None:
            found = self._ids_cache[name] = Metrics.string_set(self.job_name, name)
        return found

    def __reduce__(self) -> tuple[Any, ...]:
        # Beam pickles DoFns that hold a context; the registry (and the metric objects made from
        # it) stays with its process, the job's settings go along.
        return (
            KlioMetrics,
            (self.job_name, self.prefix, None, self.log_relay, self.decorator_timer_unit),
        )
