"""A real Prometheus scrapes the operator's /metrics as the chart's ServiceMonitor says and a
worker's as the operator's own ServiceMonitor for a KlioJob says, and evaluates the chart's alert
rules; promtool checks them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from klio_operator.metrics import OperatorMetrics
from klio_operator.models import KlioJobSpec
from klio_operator.planning import ClusterFacts, Owner, metrics_service_name, plan_job
from klio_runtime.metrics import KlioMetrics, MetricsHub

from tests.helm.chart import NAMESPACE, one, render
from tests.prometheus.scrape import scrape_job
from tests.prometheus.server import (
    Prometheus,
    free_port,
    prometheus_binary,
    run_prometheus,
    serve_metrics,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    prometheus_binary() is None,
    reason="prometheus not installed (Debian package `prometheus`; scripts/install-test-tools.sh)",
)]

JOB = "audio-spectrograms"
JOB_NAMESPACE = "audio-team"


@pytest.fixture(scope="module")
def monitoring_objects() -> list[dict[str, Any]]:
    return render(values={"metrics": {"serviceMonitor": {"enabled": True},
                                      "prometheusRule": {"enabled": True}}})


@pytest.fixture(scope="module")
def rules_file(monitoring_objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    """The rendered PrometheusRule's spec is a Prometheus rules file as it stands."""
    rule = one(monitoring_objects, "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "klio-rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_promtool_checks_the_chart_rules(rules_file: Path) -> None:
    promtool = Path(prometheus_binary() or "").with_name("promtool")
    proc = subprocess.run([str(promtool), "check", "rules", str(rules_file)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def test_a_first_dead_letter_fires_the_alert_after_its_wait(
    rules_file: Path, tmp_path: Path
) -> None:
    promtool = Path(prometheus_binary() or "").with_name("promtool")
    # a worker's first dead letters for a reason: a new series, 3 from its first scrape on
    series = ('klio_dead_letter_total{namespace="audio",service="job-a-metrics",'
              'job="job-a",reason="decode_error"}')
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": [{"series": series, "values": "_x10 3x40"}],
            "alert_rule_test": [{
                "alertname": "KlioJobDeadLetterGrowing",
                "eval_time": "11m",
                # before: the series' own value was dropped once increase() saw it (0): no alert
                "exp_alerts": [{
                    "exp_labels": {"namespace": "audio", "service": "job-a-metrics",
                                   "severity": "warning"},
                    "exp_annotations": {
                        "summary": "Klio workers behind audio/job-a-metrics send messages to"
                                   " dead-letter.",
                        "description": "3 messages went to dead-letter in the last 10 minutes:"
                                       " they failed to parse or to process. Read the dead-letter"
                                       " topic or file and the worker logs.",
                    },
                }],
            }],
        }],
    }
    path = tmp_path / "dead-letter-test.yml"
    path.write_text(yaml.safe_dump(test))
    proc = subprocess.run([str(promtool), "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def worker() -> Iterator[tuple[KlioMetrics, int]]:
    """A worker-like endpoint: the runtime's own metrics registry, served on /metrics."""
    metrics = KlioMetrics(JOB, hub=MetricsHub())
    metrics.received(3)
    metrics.output(2)
    metrics.processing_time(0.25)
    metrics.flush()  # as a worker does at the end of each bundle: counts reach Prometheus batched
    with serve_metrics(metrics.hub.registry) as port:
        yield metrics, port


@pytest.fixture
def operator() -> Iterator[tuple[OperatorMetrics, Any, int]]:
    """The operator's own metrics server (klio_operator.metrics), one KlioJob stuck Pending."""
    metrics = OperatorMetrics()
    metrics.set_phase(JOB_NAMESPACE, JOB, "Pending")
    metrics.reconciles.labels(result="retry").inc()
    port = free_port()
    server, thread = metrics.serve(port, addr="127.0.0.1")
    try:
        yield metrics, server, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sample_value(prometheus: Prometheus, promql: str) -> float | None:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_worker_and_operator_and_evaluates_alerts(
    monitoring_objects: list[dict[str, Any]], rules_file: Path, tmp_path: Path,
    worker: tuple[KlioMetrics, int], operator: tuple[OperatorMetrics, Any, int],
) -> None:
    worker_metrics, worker_port = worker
    _, operator_server, operator_port = operator
    monitor = one(monitoring_objects, "ServiceMonitor")
    operator_service = one(monitoring_objects, "Service")["metadata"]["name"]
    worker_service = metrics_service_name(JOB)
    plan = plan_job(Owner(JOB, JOB_NAMESPACE), KlioJobSpec.model_validate({"image": "img:1"}),
                    facts=ClusterFacts(has_service_monitor=True))
    (worker_monitor,) = [c for c in plan.children if c["kind"] == "ServiceMonitor"]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            scrape_job(worker_monitor, service=worker_service, namespace=JOB_NAMESPACE,
                       target=f"127.0.0.1:{worker_port}", scrape_interval="1s"),
            scrape_job(monitor, service=operator_service, namespace=NAMESPACE,
                       target=f"127.0.0.1:{operator_port}", scrape_interval="1s"),
        ],
    }

    def alert(name: str) -> dict[str, Any] | None:
        return next((a for a in prometheus.alerts() if a["labels"]["alertname"] == name), None)

    with run_prometheus(config, tmp_path) as prometheus:
        selector = f'{{namespace="{JOB_NAMESPACE}", service="{worker_service}"}}'
        received = wait_for(
            "klio_messages_received_total from the worker",
            lambda: sample_value(prometheus, f"klio_messages_received_total{selector}"),
        )
        assert received == 3
        assert sample_value(prometheus, f"klio_messages_output_total{selector}") == 2
        assert sample_value(prometheus, f"klio_messages_processing_seconds_count{selector}") == 1
        # The worker's own `job` label (the Klio job) is kept (honorLabels), so the standard
        # query by job works in Prometheus as it reads on /metrics.
        (series,) = prometheus.query(f"klio_messages_received_total{selector}")
        assert series["metric"]["job"] == JOB
        assert "exported_job" not in series["metric"]
        assert sample_value(prometheus, f'klio_messages_received_total{{job="{JOB}"}}') == 3

        operator_selector = f'{{namespace="{NAMESPACE}", service="{operator_service}"}}'
        wait_for("the operator's up == 1",
                 lambda: sample_value(prometheus, f"up{operator_selector}") == 1)
        assert sample_value(
            prometheus, f'klio_operator_reconciles_total{{result="retry", {operator_selector[1:]}'
        ) == 1
        assert sample_value(
            prometheus, f'klio_operator_kliojobs{{phase="Pending", {operator_selector[1:]}'
        ) == 1

        # A KlioJob stuck Pending: KlioJobNotReady goes pending (it fires after `for: 15m`).
        not_ready = wait_for("KlioJobNotReady pending", lambda: alert("KlioJobNotReady"))
        assert not_ready["state"] == "pending"
        assert not_ready["labels"]["phase"] == "Pending"

        # Dead letters after the first scrape (a new labelled series): the alert goes pending.
        worker_metrics.dead_lettered("unparseable")
        worker_metrics.dead_lettered("unparseable")
        dead_letter = wait_for("KlioJobDeadLetterGrowing pending",
                               lambda: alert("KlioJobDeadLetterGrowing"))
        assert dead_letter["state"] == "pending"  # `for: 5m`
        assert dead_letter["labels"]["namespace"] == JOB_NAMESPACE
        assert dead_letter["labels"]["service"] == worker_service

        assert alert("KlioOperatorDown") is None
        # The operator dies: its scrapes fail and KlioOperatorDown goes pending.
        operator_server.shutdown()
        operator_server.server_close()
        down = wait_for("KlioOperatorDown pending", lambda: alert("KlioOperatorDown"))
        assert down["state"] == "pending"
        assert down["labels"]["severity"] == "critical"
        assert alert("KlioJobSubscriptionBacklog") is None  # no backlog metric at all
