"""Scrape configs in the shape a ServiceMonitor gives, as the Prometheus operator renders it."""

from __future__ import annotations

from typing import Any


def scrape_job(
    service_monitor: dict[str, Any],
    *,
    service: str,
    namespace: str,
    target: str,
    scrape_interval: str | None = None,
) -> dict[str, Any]:
    """A static equivalent of the Prometheus operator's job for the ServiceMonitor's first endpoint.

    The operator discovers endpoints of the selected Service and relabels each target with
    `namespace`, `service`, `endpoint` (the port name) and `job` (the Service name, unless the
    monitor sets `jobLabel`); here `target` (host:port) stands in for the discovered pod.
    `scrape_interval` overrides the endpoint's interval so tests need not wait 30 s.
    """
    endpoint = service_monitor["spec"]["endpoints"][0]
    job: dict[str, Any] = {
        "job_name": f"serviceMonitor/{namespace}/{service_monitor['metadata']['name']}/0",
        "metrics_path": endpoint.get("path", "/metrics"),
        "scheme": endpoint.get("scheme", "http"),
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "scrape_interval": scrape_interval or endpoint.get("interval", "30s"),
        "static_configs": [{
            "targets": [target],
            "labels": {
                "namespace": namespace,
                "service": service,
                "endpoint": endpoint["port"],
            },
        }],
        # The operator's relabeling sets `job` to the Service name.
        "relabel_configs": [{"target_label": "job", "replacement": service}],
    }
    if scrape_interval is None and "scrapeTimeout" in endpoint:
        job["scrape_timeout"] = endpoint["scrapeTimeout"]
    return job
