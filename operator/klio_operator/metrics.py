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
        self.drift_repairs = Counter(
            "klio_operator_drift_repairs",
            "KlioJobs found with Pub/Sub resources (resource=pubsub) or child objects "
            "(resource=object) deleted or edited outside the operator, and applied again.",
            ["resource"],
            registry=self.registry,
        )
        self.pubsub_errors = Counter(
            "klio_operator_pubsub_admin_errors",
            "Failed Pub/Sub admin calls (create / delete of topics and subscriptions).",
            registry=self.registry,
        )
        self._phases: dict[tuple[str, str], str] = {}
        self._counts: Tally[str] = Tally()
        for result in RESULTS:
            self.reconciles.labels(result=result)
        self._publish_phases()

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record a job's phase (None: the job is gone). Only the two phases that change are
        published again (a write per status, so no pass over every job)."""
        before = self._phases.pop((namespace, name), None)
        if phase is not None:
            self._phases[(namespace, name)] = phase
        if before == phase:
            return
        for changed, step in ((before, -1), (phase, 1)):
            if changed is not None:
                self._counts[changed] += step
                self.jobs.labels(phase=changed).set(self._counts[changed])

    def _publish_phases(self) -> None:
        for phase in {*PHASES, *self._counts}:
            self.jobs.labels(phase=phase).set(self._counts.get(phase, 0))

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve /metrics on `port` in a background thread."""
        return start_http_server(port, addr=addr, registry=self.registry)
