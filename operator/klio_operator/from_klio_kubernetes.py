"""What a Klio job's own Kubernetes objects say, for its KlioJob (`klio-operator manifest`).

Klio's ``DirectGKERunner`` ran a job as the objects in the job's ``kubernetes/*.yaml``: a
Deployment (its replicas, the first container's image, resources and environment, the pod's
service account) and, optionally, a HorizontalPodAutoscaler. A KlioJob says the same in its own
fields; the rest (sidecars, volumes, other objects) is for the operator to decide, and is named
in a warning. Pure: documents in, spec fields and warnings out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"


@dataclass
class KubernetesSettings:
    """Spec fields (snake_case) from the job's objects, where they put it, and its image."""

    spec: dict[str, Any] = field(default_factory=dict)
    namespace: str | None = None
    image: str | None = None
    warnings: list[str] = field(default_factory=list)


def kubernetes_settings(documents: Sequence[tuple[str, Mapping[str, Any]]]) -> KubernetesSettings:
    """The settings of a job's ``kubernetes/*.yaml`` documents, each given with its file name."""
    settings = KubernetesSettings()
    deployments = [(path, doc) for path, doc in documents if doc.get("kind") == "Deployment"]
    autoscalers = [
        (path, doc) for path, doc in documents if doc.get("kind") == "HorizontalPodAutoscaler"
    ]
    for path, doc in documents:
        if doc.get("kind") not in ("Deployment", "HorizontalPodAutoscaler"):
            name = (doc.get("metadata") or {}).get("name", "")
            settings.warnings.append(
                f"{path}: {doc.get('kind')} {name} is not kept: apply it beside the KlioJob"
                " (its pods carry the operator's labels, not the Deployment's)"
            )
    if deployments:
        _from_deployment(*deployments[0], settings)
        for path, _ in deployments[1:]:
            settings.warnings.append(
                f"{path}: a second Deployment is not kept (Klio used the first)"
            )
    if autoscalers:
        _from_autoscaler(*autoscalers[0], settings)
    return settings


def _from_deployment(path: str, deployment: Mapping[str, Any], out: KubernetesSettings) -> None:
    spec = deployment.get("spec") or {}
    out.namespace = (deployment.get("metadata") or {}).get("namespace")
    if spec.get("replicas") is not None:
        out.spec["replicas"] = spec["replicas"]
    pod = (spec.get("template") or {}).get("spec") or {}
    if pod.get("serviceAccountName"):
        out.spec["service_account_name"] = pod["serviceAccountName"]
    containers = pod.get("containers") or []
    if not containers:
        return
    container = containers[0]
    out.image = container.get("image")
    for key, field_name in (("resources", "resources"), ("imagePullPolicy", "image_pull_policy")):
        if container.get(key):
            out.spec[field_name] = container[key]
    mounts = [str(m.get("mountPath", "")) for m in container.get("volumeMounts") or []]
    env = []
    for var in container.get("env") or []:
        value = str(var.get("value", ""))
        if var.get("name") == CREDENTIALS_ENV and any(_under(value, m) for m in mounts):
            out.warnings.append(
                f"{path}: env {CREDENTIALS_ENV} is not kept: it names {value}, in a volume a"
                " KlioJob does not mount; its workers authenticate as spec.serviceAccountName"
                " (Workload Identity on GKE)"
            )
            continue
        env.append(var)
    if env:
        out.spec["env"] = env
    if pod.get("volumes") or mounts:
        out.warnings.append(
            f"{path}: volumes and volumeMounts are not kept: a KlioJob's workers mount only"
            " their config and scratch space"
        )
    for extra in containers[1:]:
        out.warnings.append(
            f"{path}: container {extra.get('name', '')} is not kept: a KlioJob's pods run the"
            " worker alone"
        )


def _under(path: str, mount: str) -> bool:
    return bool(mount) and posixpath.normpath(path).startswith(posixpath.normpath(mount) + "/")


def _from_autoscaler(path: str, hpa: Mapping[str, Any], out: KubernetesSettings) -> None:
    spec = hpa.get("spec") or {}
    autoscaling: dict[str, Any] = {"min_replicas": spec.get("minReplicas", 1)}
    if spec.get("maxReplicas") is not None:
        autoscaling["max_replicas"] = spec["maxReplicas"]
    cpu = spec.get("targetCPUUtilizationPercentage")  # autoscaling/v1
    for metric in spec.get("metrics") or []:  # autoscaling/v2
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if (
            metric.get("type") == "Resource"
            and resource.get("name") == "cpu"
            and (target.get("averageUtilization") is not None)
        ):
            cpu = target["averageUtilization"]
        else:
            out.warnings.append(
                f"{path}: metric {metric.get('type')} {resource.get('name', '')} is not kept:"
                " a KlioJob scales on its Pub/Sub backlog (KEDA) or on CPU"
            )
    if cpu is not None:
        autoscaling["target_cpu_utilization_percentage"] = cpu
    out.spec["autoscaling"] = autoscaling
