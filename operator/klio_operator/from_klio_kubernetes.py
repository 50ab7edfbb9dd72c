"""What a Klio job's own Kubernetes objects say, for its KlioJob (`klio-operator manifest`).

Klio's ``DirectGKERunner`` ran a job as the objects in the job's ``kubernetes/*.yaml``: a
Deployment (its replicas, the first container's image, resources and environment, the pod's
service account) and, optionally, a HorizontalPodAutoscaler. A KlioJob says the same in its own
fields; the rest (sidecars, volumes, scheduling, other objects) is for the operator to decide, and
each is named in a warning. Pure: documents in, spec fields, warnings and errors out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from klio_runtime.config import format_validation_errors
from pydantic import ValidationError

from klio_operator.models import KlioJobSpec, is_dns1123_label

CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
_POD = "spec.template.spec"
_CONTAINER = f"{_POD}.containers[0]"
# What a KlioJob keeps, or the operator sets itself (the pods' selector and app labels): not warned.
_KEPT_DEPLOYMENT = frozenset({"replicas", "selector", "template"})
_KEPT_TEMPLATE = frozenset({"metadata", "spec"})
_KEPT_POD = frozenset({"containers", "serviceAccountName", "volumes"})
_KEPT_CONTAINER = frozenset(
    {"name", "image", "resources", "imagePullPolicy", "env", "volumeMounts"}
)
_KEPT_AUTOSCALER = frozenset(
    {"scaleTargetRef", "minReplicas", "maxReplicas", "metrics", "targetCPUUtilizationPercentage"}
)
_KLIO_POD_LABELS = frozenset({"app", "role"})  # what Klio's guide and deploy set


@dataclass
class KubernetesSettings:
    """Spec fields (camelCase, as the wire spells them) from the job's objects, the namespace
    the Deployment names (or why it cannot be one), and the image it runs."""

    spec: dict[str, Any] = field(default_factory=dict)
    namespace: str | None = None
    namespace_error: str | None = None
    image: str | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Reader:
    """Reads one document, noting each value of the wrong shape as an error (by path)."""

    def __init__(self, path: str, out: KubernetesSettings) -> None:
        self.path = path
        self.out = out

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.out.errors.append(f"{self.path}: {where}: must be a mapping")
            return {}
        return value

    def mappings(self, value: Any, where: str) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.out.errors.append(f"{self.path}: {where}: must be a list")
            return []
        return [self.mapping(item, f"{where}[{index}]") for index, item in enumerate(value)]

    def unkept(self, where: str, found: Mapping[str, Any], kept: frozenset[str]) -> None:
        for key in found:
            if key not in kept:
                self.out.warnings.append(
                    f"{self.path}: {where}.{key} is not kept: the operator sets a KlioJob's"
                    " pods itself"
                )

    def field(self, name: str, value: Any, sources: Mapping[str, str]) -> bool:
        """Set the KlioJob's field ``name`` (as the wire spells it) if the KlioJob takes
        ``value``; else an error naming the object's own path (``sources``: a KlioJob path →
        the object's). Returns whether it was set."""
        try:
            KlioJobSpec.model_validate({"image": "image", name: value})
        except ValidationError as err:
            for line in format_validation_errors(err):
                at, _, why = line.partition(": ")
                self.out.errors.append(f"{self.path}: {_source_of(at, sources)}: {why}")
            return False
        self.out.spec[name] = value
        return True

    def copy(self, name: str, found: Mapping[str, Any], where: str) -> None:
        """The KlioJob's field ``name`` from the object's field of the same name, if set."""
        if found.get(name):
            self.field(name, found[name], {name: f"{where}.{name}"})


def _source_of(at: str, sources: Mapping[str, str]) -> str:
    for prefix in sorted(sources, key=len, reverse=True):
        if at == prefix or at.startswith((f"{prefix}.", f"{prefix}[")):
            return sources[prefix] + at[len(prefix) :]
    return at


def kubernetes_settings(
    documents: Sequence[tuple[str, Any]], keeps_workers: bool = True
) -> KubernetesSettings:
    """The settings of a job's ``kubernetes/*.yaml`` documents, each given with its file name.
    ``keeps_workers``: whether the objects' worker counts (replicas, autoscaling) are the job's
    (not when an engine such as Dataflow runs the pipeline's workers)."""
    out = KubernetesSettings()
    deployments, autoscalers = [], []
    for path, document in documents:
        read = _Reader(path, out)
        doc = read.mapping(document, "(document)")
        kind = doc.get("kind")
        if kind == "Deployment":
            deployments.append((path, doc))
        elif kind == "HorizontalPodAutoscaler":
            autoscalers.append((path, doc))
        elif doc:
            name = read.mapping(doc.get("metadata"), "metadata").get("name")
            out.warnings.append(
                f"{path}: {kind if isinstance(kind, str) else 'an object of no kind'}"
                f" {name if isinstance(name, str) else ''} is not kept: apply it beside the"
                " KlioJob, selecting its pods by the operator's labels"
            )
    if deployments:
        _from_deployment(*deployments[0], out, keeps_workers)
    for path, _ in deployments[1:]:
        out.warnings.append(f"{path}: a second Deployment is not kept (Klio used the first)")
    if autoscalers:
        path, hpa = autoscalers[0]
        if keeps_workers:
            _from_autoscaler(path, hpa, out)
        else:
            out.warnings.append(
                f"{path}: the autoscaler is not kept: the engine that runs the pipeline scales"
                " its workers"
            )
    for path, _ in autoscalers[1:]:
        out.warnings.append(f"{path}: a second HorizontalPodAutoscaler is not kept")
    return out


def _from_deployment(
    path: str, deployment: Mapping[str, Any], out: KubernetesSettings, keeps_workers: bool
) -> None:
    read = _Reader(path, out)
    namespace = read.mapping(deployment.get("metadata"), "metadata").get("namespace")
    if namespace is not None:
        if is_dns1123_label(namespace):
            out.namespace = namespace
        else:
            out.namespace_error = (
                f"{path}: metadata.namespace: {namespace!r} is not a namespace name (or give"
                " --namespace)"
            )
    spec = read.mapping(deployment.get("spec"), "spec")
    read.unkept("spec", spec, _KEPT_DEPLOYMENT)
    if spec.get("replicas") is not None:
        if keeps_workers:
            read.field("replicas", spec["replicas"], {"replicas": "spec.replicas"})
        else:
            out.warnings.append(
                f"{path}: spec.replicas is not kept: the engine that runs the pipeline scales"
                " its workers"
            )
    template = read.mapping(spec.get("template"), "spec.template")
    read.unkept("spec.template", template, _KEPT_TEMPLATE)
    pod_metadata = read.mapping(template.get("metadata"), "spec.template.metadata")
    read.unkept("spec.template.metadata", pod_metadata, frozenset({"labels"}))
    labels = read.mapping(pod_metadata.get("labels"), "spec.template.metadata.labels")
    extra_labels = sorted(str(key) for key in labels if key not in _KLIO_POD_LABELS)
    if extra_labels:
        out.warnings.append(
            f"{path}: spec.template.metadata.labels {', '.join(extra_labels)} are not kept: the"
            " operator labels a KlioJob's pods itself"
        )
    pod = read.mapping(template.get("spec"), _POD)
    read.unkept(_POD, pod, _KEPT_POD)
    read.copy("serviceAccountName", pod, _POD)
    containers = read.mappings(pod.get("containers"), f"{_POD}.containers")
    if not containers:
        return
    container = containers[0]
    read.unkept(_CONTAINER, container, _KEPT_CONTAINER)
    if isinstance(container.get("image"), str) and container["image"]:
        out.image = container["image"]
    read.copy("resources", container, _CONTAINER)
    read.copy("imagePullPolicy", container, _CONTAINER)
    volume_mounts = read.mappings(container.get("volumeMounts"), f"{_CONTAINER}.volumeMounts")
    mounts = [str(mount.get("mountPath") or "") for mount in volume_mounts]
    env = []
    for index, var in enumerate(read.mappings(container.get("env"), f"{_CONTAINER}.env")):
        value = str(var.get("value") or "")
        if var.get("name") == CREDENTIALS_ENV and any(_under(value, m) for m in mounts):
            out.warnings.append(
                f"{path}: env {CREDENTIALS_ENV} is not kept: it names {value}, in a volume a"
                " KlioJob does not mount; its workers authenticate as spec.serviceAccountName"
                " (Workload Identity on GKE)"
            )
            continue
        if read.field("env", [dict(var)], {"env[0]": f"{_CONTAINER}.env[{index}]"}):
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


def _under(path: str, mount: str) -> bool:
    return bool(mount) and posixpath.normpath(path).startswith(posixpath.normpath(mount) + "/")


def _from_autoscaler(path: str, hpa: Mapping[str, Any], out: KubernetesSettings) -> None:
    read = _Reader(path, out)
    spec = read.mapping(hpa.get("spec"), "spec")
    read.unkept("spec", spec, _KEPT_AUTOSCALER)
    autoscaling: dict[str, Any] = {"minReplicas": spec.get("minReplicas", 1)}
    sources = {
        "autoscaling.minReplicas": "spec.minReplicas",
        "autoscaling.maxReplicas": "spec.maxReplicas",
        "autoscaling": "spec",
    }
    if spec.get("maxReplicas") is not None:
        autoscaling["maxReplicas"] = spec["maxReplicas"]
    cpu = spec.get("targetCPUUtilizationPercentage")  # autoscaling/v1
    cpu_source = "spec.targetCPUUtilizationPercentage"
    for index, metric in enumerate(read.mappings(spec.get("metrics"), "spec.metrics")):
        where = f"spec.metrics[{index}].resource"
        resource = read.mapping(metric.get("resource"), where)
        target = read.mapping(resource.get("target"), f"{where}.target")
        # autoscaling/v2 says target.averageUtilization; v2beta1 said targetAverageUtilization
        if "averageUtilization" in target:
            utilization, source = target["averageUtilization"], f"{where}.target.averageUtilization"
        else:
            utilization, source = (
                resource.get("targetAverageUtilization"),
                (f"{where}.targetAverageUtilization"),
            )
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" and utilization:
            cpu, cpu_source = utilization, source
        else:
            out.warnings.append(
                f"{path}: spec.metrics[{index}] ({metric.get('type')}"
                f" {resource.get('name') or ''}) is not kept: a KlioJob scales on CPU"
                " utilization, or on its Pub/Sub backlog with KEDA"
            )
    if cpu is not None:
        autoscaling["targetCpuUtilizationPercentage"] = cpu
        sources["autoscaling.targetCpuUtilizationPercentage"] = cpu_source
    read.field("autoscaling", autoscaling, sources)
