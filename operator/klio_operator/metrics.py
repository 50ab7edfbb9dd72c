"""The operator's own Prometheus metrics (prometheus-client), served on /metrics."""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Running", "Degraded", "Suspended", "Succeeded", "Failed")
RESULTS = ("success", "retry", "permanent_error", "error")


class OperatorMetrics:
    """Reconciles by result, their duration, KlioJobs by phase, Pub/Sub admin errors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "klio_operator_reconciles",
            "KlioJob reconciles, by result (success, retry, permanent_error, error).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "klio_operator_reconcile_duration_seconds",
            "Time to reconcile one KlioJob.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.jobs = Gauge(
            "klio_operator_kliojobs",
            "KlioJobs known to the operator, by phase.",
            ["phase"],
            registry=self.registry,
        )
        self.pubsub_errors = Counter(
            "klio_operator_pubsub_admin_errors",
            "Failed Pub/Sub admin calls (create / delete of topics and subscriptions).",
            registry=self.registry,
        )
        self._phases: dict[tuple[str, str], str] = {}
        for result in RESULTS:
            self.reconciles.labels(result=result)
        self._publish_phases()

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record a job's phase (None: the job is gone)."""
        if phase is None:
            self._phases.pop((namespace, name), None)
        else:
            self._phases[(namespace, name)] = phase
        self._publish_phases()

    def _publish_phases(self) -> None:
        counts = Tally(self._phases.values())
        for phase in {*PHASES, *counts}:
            self.jobs.labels(phase=phase).set(counts.get(phase, 0))

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve /metrics on `port` in a background thread."""
        return start_http_server(port, addr=addr, registry=self.registry)
