"""What a Klio job's own Kubernetes objects say, for its KlioJob (`klio-operator manifest`).

Klio's ``DirectGKERunner`` ran a job as the objects in the job's ``kubernetes/*.yaml``: a
Deployment (its replicas, the first container's image, resources and environment, the pod's
service account) and, optionally, a HorizontalPodAutoscaler. A KlioJob says the same in its own
fields; the rest (sidecars, volumes, scheduling, other objects) is for the operator to decide, and
each is named in a warning. Pure: documents in, spec fields, warnings and errors out.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from klio_runtime.config import format_validation_errors
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from klio_operator.models import DNS1123_LABEL, KlioJobSpec

CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
_NAMESPACE = re.compile(DNS1123_LABEL)
_CONTAINER = "spec.template.spec.containers[0]"
# Where each spec field comes from, to name it in an error.
_SOURCES = {
    "replicas": "spec.replicas",
    "service_account_name": "spec.template.spec.serviceAccountName",
    "resources": f"{_CONTAINER}.resources",
    "image_pull_policy": f"{_CONTAINER}.imagePullPolicy",
    "env": f"{_CONTAINER}.env",
    "autoscaling": "spec",
}
# What a KlioJob keeps, or the operator sets itself (a pod's labels and selector): not warned.
_KEPT_DEPLOYMENT = frozenset({"replicas", "selector", "template"})
_KEPT_POD = frozenset({"containers", "serviceAccountName", "volumes"})
_KEPT_CONTAINER = frozenset(
    {"name", "image", "resources", "imagePullPolicy", "env", "volumeMounts"}
)


@dataclass
class KubernetesSettings:
    """Spec fields (snake_case) from the job's objects, where they put it, and its image."""

    spec: dict[str, Any] = field(default_factory=dict)
    namespace: str | None = None
    image: str | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Reader:
    """Reads one document, noting each value of the wrong shape as an error (by path)."""

    def __init__(self, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.errors.append(f"{self.path}: {where}: must be a mapping")
            return {}
        return value

    def mappings(self, value: Any, where: str) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.append(f"{self.path}: {where}: must be a list")
            return []
        return [self.mapping(item, f"{where}[{index}]") for index, item in enumerate(value)]


def kubernetes_settings(documents: Sequence[tuple[str, Any]]) -> KubernetesSettings:
    """The settings of a job's ``kubernetes/*.yaml`` documents, each given with its file name."""
    out = KubernetesSettings()
    deployments, autoscalers = [], []
    for path, document in documents:
        doc = _Reader(path, out.errors).mapping(document, "(document)")
        kind = doc.get("kind")
        if kind == "Deployment":
            deployments.append((path, doc))
        elif kind == "HorizontalPodAutoscaler":
            autoscalers.append((path, doc))
        elif doc:
            name = _Reader(path, out.errors).mapping(doc.get("metadata"), "metadata").get("name")
            out.warnings.append(
                f"{path}: {kind} {name or ''} is not kept: apply it beside the KlioJob, selecting"
                " its pods by the operator's labels"
            )
    if deployments:
        _from_deployment(*deployments[0], out)
        for path, _ in deployments[1:]:
            out.warnings.append(f"{path}: a second Deployment is not kept (Klio used the first)")
    if autoscalers:
        _from_autoscaler(*autoscalers[0], out)
    for path, _ in autoscalers[1:]:
        out.warnings.append(f"{path}: a second HorizontalPodAutoscaler is not kept")
    _validate(out, deployments[0][0] if deployments else "", autoscalers)
    return out


def _from_deployment(path: str, deployment: Mapping[str, Any], out: KubernetesSettings) -> None:
    read = _Reader(path, out.errors)
    namespace = read.mapping(deployment.get("metadata"), "metadata").get("namespace")
    if namespace is not None:
        if isinstance(namespace, str) and _NAMESPACE.match(namespace):
            out.namespace = namespace
        else:
            out.errors.append(f"{path}: metadata.namespace: {namespace!r} is not a namespace name")
    spec = read.mapping(deployment.get("spec"), "spec")
    _unkept(out, path, "spec", spec, _KEPT_DEPLOYMENT)
    if spec.get("replicas") is not None:
        out.spec["replicas"] = spec["replicas"]
    template = read.mapping(spec.get("template"), "spec.template")
    pod = read.mapping(template.get("spec"), "spec.template.spec")
    _unkept(out, path, "spec.template.spec", pod, _KEPT_POD)
    if pod.get("serviceAccountName"):
        out.spec["service_account_name"] = pod["serviceAccountName"]
    containers = read.mappings(pod.get("containers"), "spec.template.spec.containers")
    if not containers:
        return
    container = containers[0]
    _unkept(out, path, _CONTAINER, container, _KEPT_CONTAINER)
    if container.get("image"):
        out.image = str(container["image"])
    for key, field_name in (("resources", "resources"), ("imagePullPolicy", "image_pull_policy")):
        if container.get(key):
            out.spec[field_name] = container[key]
    volume_mounts = read.mappings(container.get("volumeMounts"), f"{_CONTAINER}.volumeMounts")
    mounts = [str(mount.get("mountPath") or "") for mount in volume_mounts]
    env = []
    for var in read.mappings(container.get("env"), f"{_CONTAINER}.env"):
        value = str(var.get("value") or "")
        if var.get("name") == CREDENTIALS_ENV and any(_under(value, m) for m in mounts):
            out.warnings.append(
                f"{path}: env {CREDENTIALS_ENV} is not kept: it names {value}, in a volume a"
                " KlioJob does not mount; its workers authenticate as spec.serviceAccountName"
                " (Workload Identity on GKE)"
            )
            continue
        env.append(dict(var))
    if env:
        out.spec["env"] = env
    if pod.get("volumes") or mounts:
        out.warnings.append(
            f"{path}: volumes and volumeMounts are not kept: a KlioJob's workers mount only"
            " their config and scratch space"
        )
    for extra in containers[1:]:
        out.warnings.append(
            f"{path}: container {extra.get('name') or ''} is not kept: a KlioJob's pods run the"
            " worker alone"
        )


def _unkept(
    out: KubernetesSettings, path: str, where: str, found: Mapping[str, Any], kept: frozenset[str]
) -> None:
    for key in found:
        if key not in kept:
            out.warnings.append(
                f"{path}: {where}.{key} is not kept: the operator sets a KlioJob's pods itself"
            )


def _under(path: str, mount: str) -> bool:
    return bool(mount) and posixpath.normpath(path).startswith(posixpath.normpath(mount) + "/")


def _from_autoscaler(path: str, hpa: Mapping[str, Any], out: KubernetesSettings) -> None:
    read = _Reader(path, out.errors)
    spec = read.mapping(hpa.get("spec"), "spec")
    autoscaling: dict[str, Any] = {"min_replicas": spec.get("minReplicas", 1)}
    if spec.get("maxReplicas") is not None:
        autoscaling["max_replicas"] = spec["maxReplicas"]
    cpu = spec.get("targetCPUUtilizationPercentage")  # autoscaling/v1
    for index, metric in enumerate(read.mappings(spec.get("metrics"), "spec.metrics")):
        resource = read.mapping(metric.get("resource"), f"spec.metrics[{index}].resource")
        target = read.mapping(resource.get("target"), f"spec.metrics[{index}].resource.target")
        # autoscaling/v2 says target.averageUtilization; v2beta1 said targetAverageUtilization
        utilization = target.get("averageUtilization", resource.get("targetAverageUtilization"))
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" and utilization:
            cpu = utilization
        else:
            out.warnings.append(
                f"{path}: spec.metrics[{index}] ({metric.get('type')}"
                f" {resource.get('name') or ''}) is not kept: a KlioJob scales on CPU"
                " utilization, or on its Pub/Sub backlog with KEDA"
            )
    if cpu is not None:
        autoscaling["target_cpu_utilization_percentage"] = cpu
    out.spec["autoscaling"] = autoscaling


def _validate(
    out: KubernetesSettings, deployment: str, autoscalers: Sequence[tuple[str, Any]]
) -> None:
    """Each field as the KlioJob takes it, an error naming the file and the object's own path."""
    for name, value in out.spec.items():
        try:
            KlioJobSpec.model_validate({"image": "image", name: value})
        except ValidationError as err:
            path = autoscalers[0][0] if name == "autoscaling" else deployment
            for line in format_validation_errors(err):
                at, _, why = line.partition(": ")
                alias = to_camel(name)
                rest = at[len(alias) :] if at.startswith(alias) else ""
                out.errors.append(f"{path}: {_SOURCES[name]}{rest}: {why}")
