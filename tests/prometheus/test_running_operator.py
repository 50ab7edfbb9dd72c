"""Prometheus scrapes the running operator (real kopf and handlers against the extended kmock API,
real Pub/Sub emulator) as the chart's ServiceMonitor says, and sees its reconcile metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.helm.chart import NAMESPACE, one, render
from tests.operator.harness import operator_under_test
from tests.prometheus.scrape import scrape_job
from tests.prometheus.server import free_port, prometheus_binary, run_prometheus, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("pubsub_clean"),
    pytest.mark.skipif(
        prometheus_binary() is None,
        reason="prometheus not installed (Debian package `prometheus`; "
        "scripts/install-test-tools.sh)",
    ),
]


def value(samples: list[dict[str, Any]]) -> float | None:
    return float(samples[0]["value"][1]) if samples else None


async def test_prometheus_scrapes_the_running_operator(tmp_path: Path) -> None:
    objects = render(values={"metrics": {"serviceMonitor": {"enabled": True}}})
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")["metadata"]["name"]
    async with operator_under_test() as op:
        port = free_port()
        server, thread = op.context.metrics.serve(port, addr="127.0.0.1")
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [scrape_job(monitor, service=service, namespace=NAMESPACE,
                                          target=f"127.0.0.1:{port}", scrape_interval="1s")],
        }
        selector = f'namespace="{NAMESPACE}", service="{service}"'
        try:
            with run_prometheus(config, tmp_path) as prometheus:

                def scraped(promql: str) -> float | None:
                    return value(prometheus.query(promql))

                async def scenario() -> None:
                    # A job whose parent does not exist stays Pending: the operator says so.
                    await op.apply_job("orphan", parents=["nowhere"])
                    await op.wait(lambda: op.condition_is("orphan", "ParentsResolved", "False"),
                                  "orphan's ParentsResolved=False")
                    pending = await asyncio.to_thread(
                        wait_for, "klio_operator_kliojobs{phase=Pending} == 1 in Prometheus",
                        lambda: scraped(
                            f'klio_operator_kliojobs{{phase="Pending", {selector}}}') == 1,
                    )
                    assert pending
                    reconciles = await asyncio.to_thread(
                        wait_for, "reconciles counted in Prometheus",
                        lambda: scraped(f"sum(klio_operator_reconciles_total{{{selector}}})"),
                    )
                    assert reconciles >= 1
                    assert scraped(f"up{{{selector}}}") == 1
                    assert scraped(
                        f"sum(klio_operator_reconcile_duration_seconds_count{{{selector}}})"
                    )

                await op.run(scenario)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
