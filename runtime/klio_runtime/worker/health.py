"""The worker's probes: ``/healthz`` (alive: the loop has ticked, or the job's steps took in or
finished an element, recently) and ``/readyz`` (subscribed and pulling, not draining), plus the
Prometheus ``/metrics`` server.

Paths and default ports are the operator's contract (klio_operator.worker_contract); the values
are repeated here because the runtime must not import the operator.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from klio_runtime.context import JobLimits
from klio_runtime.metrics import element_progress

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
HEALTH_PORT = 8080
METRICS_PORT = 9090
STALL_MARGIN_SECONDS = 60.0


def stall_limit(stall_seconds: float, limits: JobLimits | None) -> float:
    """How long the worker may make no progress before ``/healthz`` fails: ``stall_seconds``, or
    longer when the job lets one element run longer (``timeout_seconds`` on each of its
    ``retries`` + 1 tries, plus a margin), so an element within its limits is never taken for a
    stuck loop."""
    if limits is None or not limits.timeout_seconds:
        return stall_seconds
    allowed = limits.timeout_seconds * (limits.retries + 1) + STALL_MARGIN_SECONDS
    return max(stall_seconds, allowed)


def _element_steps() -> int:
    return element_progress.steps


class HealthState:
    """What the probes report; the worker loop updates it."""

    def __init__(self, stall_seconds: float = 600.0,
                 clock: Callable[[], float] = time.monotonic,
                 progress: Callable[[], int] = _element_steps) -> None:
        if stall_seconds <= 0:
            raise ValueError(f"stall_seconds must be > 0, not {stall_seconds}")
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._last_tick = clock()
        # The loop ticks only between batches; inside one, each element the job's steps take in
        # or finish is progress (a batch of many long elements is busy, not stuck).
        self._progress = progress
        self._last_steps = progress()
        self._lock = threading.Lock()
        self.subscribed = False
        self.draining = False
        self.reason = "starting"
        self.unavailable: str | None = None
        """Why pulling fails for now (Pub/Sub unreachable): not ready until it works again."""
        self.publish_failing: str | None = None
        """Why the last batch's publishes failed (a topic gone, say): not ready until a batch's
        publishes all go out again."""
        self.pipeline_failing: str | None = None
        """Why the job's pipeline cannot take any message (a DoFn's setup fails: a model store
        down, say): not ready until a run goes through again (a trial with no message, or a
        batch)."""

    def tick(self) -> None:
        """The loop is alive (called every iteration and around each batch)."""
        with self._lock:
            self._last_tick = self._clock()

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            now, steps = self._clock(), self._progress()
            if steps != self._last_steps:  # seen at this look: at most a probe period late
                self._last_steps, self._last_tick = steps, now
            idle = now - self._last_tick
        if idle > self.stall_seconds:
            return False, (f"worker loop stuck: no progress for {idle:.0f}s "
                           f"(> {self.stall_seconds:.0f}s)")
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining (SIGTERM): not pulling"
        if not self.subscribed:
            return False, self.reason
        if self.unavailable is not None:
            return False, self.unavailable
        if self.publish_failing is not None:
            return False, self.publish_failing
        if self.pipeline_failing is not None:
            return False, self.pipeline_failing
        return self.alive()


PROBE_IDLE_SECONDS = 10.0
"""How long a probe connection may stay open (a kubelet's probe sends its request at once and
reads the answer; a client that holds connections open, or drips its request a byte at a time,
must not pile up threads)."""


class _Handler(BaseHTTPRequestHandler):
    state: HealthState

    def setup(self) -> None:
        super().setup()
        # the socket's timeout bounds each read; this bounds the whole connection
        self._deadline = threading.Timer(float(self.timeout or PROBE_IDLE_SECONDS), self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):  # closed meanwhile
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == LIVENESS_PATH:
            ok, why = self.state.alive()
        elif path == READINESS_PATH:
            ok, why = self.state.ready()
        else:
            self._answer(404, f"not found: {path} (try {LIVENESS_PATH}, {READINESS_PATH})")
            return
        self._answer(200 if ok else 503, why)

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would flood the log


class ProbeServers:
    """The health server and the metrics server, each on its own thread."""

    def __init__(self, state: HealthState, registry: CollectorRegistry, host: str = "0.0.0.0",
                 health_port: int = HEALTH_PORT, metrics_port: int = METRICS_PORT,
                 idle_seconds: float = PROBE_IDLE_SECONDS) -> None:
        # a connection that sends no request in idle_seconds is closed: each one holds a thread
        handler = type("HealthHandler", (_Handler,), {"state": state, "timeout": idle_seconds})
        self._health = ThreadingHTTPServer((host, health_port), handler)
        self._health.daemon_threads = True
        self._metrics, _ = start_http_server(metrics_port, addr=host, registry=registry)
        threading.Thread(target=self._health.serve_forever, name="klio-health",
                         daemon=True).start()

    @property
    def health_port(self) -> int:
        return int(self._health.server_address[1])

    @property
    def metrics_port(self) -> int:
        return int(self._metrics.server_address[1])

    def close(self) -> None:
        self._health.shutdown()
        self._health.server_close()
        self._metrics.shutdown()
        self._metrics.server_close()
