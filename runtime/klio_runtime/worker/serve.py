"""The streaming worker in the foreground: probes and metrics up, the loop run until SIGTERM or
SIGINT, then drained. ``klio worker`` (in a pod) and ``klio job run`` (on a laptop, for a job
with Pub/Sub inputs) both run it."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from klio_runtime.config import KlioConfig
from klio_runtime.context import job_limits
from klio_runtime.metrics import process_hub
from klio_runtime.pipeline import RunFn
from klio_runtime.worker.health import (
    STALL_MARGIN_SECONDS,
    HealthState,
    ProbeServers,
    stall_limit,
)
from klio_runtime.worker.loop import StreamingWorker
from klio_runtime.worker.settings import WorkerSettings
from klio_runtime.worker.temporary_subscriptions import with_temporary_subscriptions

log = logging.getLogger("klio.worker")


@dataclass(frozen=True)
class Probes:
    """Where the worker serves ``/healthz``, ``/readyz`` and ``/metrics`` (port 0: any free)."""

    health_port: int
    metrics_port: int
    host: str = "0.0.0.0"
    stall_seconds: float = 600.0


def drain_on_signal(loop: StreamingWorker) -> Callable[[int, FrameType | None], None]:
    """A signal handler that stops ``loop`` from another thread.

    Python runs handlers on the main thread, between two of its bytecodes: possibly inside the
    loop's ``stop_event.wait()``, holding the Event's lock. Setting the Event right there would
    wait for that lock forever (the drain hung after Ctrl-C or a pod's SIGTERM)."""

    def on_signal(signum: int, _: FrameType | None) -> None:
        def drain() -> None:
            log.info("signal %d: draining", signum)
            loop.stop()

        threading.Thread(target=drain, name="klio-worker-drain", daemon=True).start()

    return on_signal


def health_for(config: KlioConfig, stall_seconds: float) -> HealthState:
    """The probes' state for ``config``: its stall limit allows the job's own element limits
    (:func:`stall_limit`)."""
    stall = stall_limit(stall_seconds, job_limits(config))
    if stall > stall_seconds:
        log.info("liveness allows %.0f s without progress: the job's timeout_seconds on each "
                 "of its tries, plus %.0f s", stall, STALL_MARGIN_SECONDS)
    return HealthState(stall_seconds=stall)


def serve(
    config: KlioConfig,
    run_fn: RunFn,
    settings: WorkerSettings,
    probes: Probes,
    dead_letter_topic: str | None = None,
    announce: Callable[[str], None] = log.info,
) -> float:
    """Run the worker until SIGTERM or SIGINT; returns how many messages it acknowledged.

    A Pub/Sub input that names only a topic (run locally: on a cluster the operator names a
    subscription) reads a subscription made for this run (:mod:`.temporary_subscriptions`).

    Raises:
        klio_runtime.config.ConfigError: the event IO cannot run on the worker, naming the field.
        google.api_core.exceptions.GoogleAPICallError: a run's subscription could not be made.
    """
    with with_temporary_subscriptions(config, announce) as reading:
        return _serve(reading, run_fn, settings, probes, dead_letter_topic, announce)


def _serve(
    config: KlioConfig,
    run_fn: RunFn,
    settings: WorkerSettings,
    probes: Probes,
    dead_letter_topic: str | None,
    announce: Callable[[str], None],
) -> float:
    health = health_for(config, probes.stall_seconds)
    loop = StreamingWorker(config, run_fn, settings, health=health,
                           dead_letter_topic=dead_letter_topic)
    hub = process_hub()
    acked_before = hub.value("klio_worker_acked_total", job=config.job_name)
    servers = ProbeServers(health, hub.registry, probes.host, probes.health_port,
                           probes.metrics_port)
    announce(f"klio worker {config.job_name}: health on :{servers.health_port}, "
             f"metrics on :{servers.metrics_port}")

    on_signal = drain_on_signal(loop)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        loop.run()
    finally:
        servers.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return hub.value("klio_worker_acked_total", job=config.job_name) - acked_before
