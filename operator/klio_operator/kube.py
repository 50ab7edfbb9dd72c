"""A small async Kubernetes API client and the apply / prune steps built on it.

The handlers get a `KubeApi` passed in (through kopf's memo), so tests point it at an API
emulator and the operator at the cluster. Updates are JSON merge patches of the desired fields
only: fields set by others (an autoscaler's replica count, defaults) are left alone. Like
`kubectl apply`, each object keeps what the operator last applied in an annotation, so a field
the operator stopped setting (a removed serviceAccountName) is deleted, not left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from klio_operator import __version__

# kind → (apiVersion, plural): every kind the operator reads or writes.
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Service": ("v1", "services"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    "Deployment": ("apps/v1", "deployments"),
    "Job": ("batch/v1", "jobs"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitors"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobjects"),
    "KlioJob": ("klio.io/v1alpha1", "kliojobs"),
}
CHILD_KINDS = (
    "ConfigMap",
    "Deployment",
    "Job",
    "Service",
    "HorizontalPodAutoscaler",
    "ServiceMonitor",
    "ScaledObject",
)
OPTIONAL_GROUPS = {"ServiceMonitor": "monitoring.coreos.com", "ScaledObject": "keda.sh"}
LAST_APPLIED = "klio.io/last-applied"
"""Annotation holding the fields the operator last applied: their key paths as compact JSON,
`1` for a value (what `removals` needs; the values themselves are in the object)."""
USER_AGENT = f"klio-operator/{__version__}"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeApiError(RuntimeError):
    """The API server refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: {status} {message}")


class NotOwnedError(RuntimeError):
    """An object of a desired child's kind and name exists and is not the owner's to change."""

    def __init__(self, kind: str, name: str, holder: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"{kind} {name} already exists and is not this KlioJob's ({holder}): it is left"
            f" as it is; remove it, or give the KlioJob another name"
        )


def _kubeconfig() -> str | None:
    """KUBECONFIG as it is now (the kubernetes package reads it once, at its import): several
    files, separated as kubectl's are, are merged by the package."""
    return os.environ.get("KUBECONFIG") or None


def current_namespace() -> str:
    """The namespace a command acts in when given none: in a pod, the pod's own; elsewhere, the
    current kubeconfig context's; else ``default``."""
    in_pod = SERVICE_ACCOUNT_DIR / "namespace"
    if os.environ.get("KUBERNETES_SERVICE_HOST") and in_pod.exists():
        return in_pod.read_text().strip()
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=_kubeconfig())
    except config.ConfigException:
        return "default"
    namespace = ((active or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def resource_path(
    kind: str, namespace: str | None = None, name: str | None = None, subresource: str = ""
) -> str:
    api_version, plural = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


@dataclass
class KubeApi:
    """JSON over HTTP to the API server: get, list, create, merge- and JSON-patch, delete."""

    server: str
    token: str | None = None
    ssl_context: ssl.SSLContext | bool | None = None
    session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In a pod: the service account. Elsewhere: the current kubeconfig context."""
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT"),
        )
        if host and port and (SERVICE_ACCOUNT_DIR / "token").exists():
            context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
            token = (SERVICE_ACCOUNT_DIR / "token").read_text().strip()
            return cls(f"https://{host}:{port}", token=token, ssl_context=context)
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=_kubeconfig(), client_configuration=configuration)
        if configuration.host.startswith("http://"):
            return cls(configuration.host)  # a local API emulator or proxy: no TLS, no token
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        auth = str(configuration.api_key.get("authorization", ""))
        bearer = auth.removeprefix("Bearer ").strip() or None
        return cls(configuration.host, token=bearer, ssl_context=context)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            # Named, so API-server audit logs (and the RBAC test) tell the operator's calls apart.
            headers = {"User-Agent": USER_AGENT}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self.session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            )
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        kwargs: dict[str, Any] = {"params": dict(params or {})}
        if self.ssl_context is not None:
            kwargs["ssl"] = self.ssl_context
        if body is not None:
            kwargs["json"] = body
            kwargs["headers"] = {"Content-Type": content_type}
        url = self.server.rstrip("/") + path
        async with self._session().request(method, url, **kwargs) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:  # not an API server (a proxy's error page)
                what = f"an answer that is not JSON ({response.content_type})"
                raise KubeApiError(response.status, method, path, what) from None
            if response.status >= 400:
                message = data.get("message", "") if isinstance(data, dict) else str(data)
                raise KubeApiError(response.status, method, path, message)
            return data

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return dict(await self.request("GET", path))
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        try:
            data = await self.request("GET", path, params=params)
        except KubeApiError as exc:
            if exc.status == 404:  # the resource is not served (an optional CRD)
                return []
            raise
        return list(data.get("items") or [])

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", path, body))

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            await self.request("PATCH", path, body, content_type="application/merge-patch+json")
        )

    async def json_patch(
        self, path: str, operations: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """An RFC 6902 patch; a failed `test` operation is refused with 422."""
        content_type = "application/json-patch+json"
        return dict(await self.request("PATCH", path, list(operations), content_type=content_type))

    async def delete(self, path: str) -> bool:
        """True if deleted, False if it was already gone."""
        try:
            await self.request("DELETE", path, {"propagationPolicy": "Background"})
            return True
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise

    async def api_groups(self) -> set[str]:
        """The API groups served (to know which optional CRDs exist)."""
        data = await self.request("GET", "/apis")
        return {group["name"] for group in data.get("groups") or []}


def is_subset(desired: Any, current: Any) -> bool:
    """Does `current` already hold everything `desired` says (server defaults aside)?"""
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            key in current and is_subset(value, current[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(desired) == len(current)
            and all(is_subset(d, c) for d, c in zip(desired, current, strict=True))
        )
    return bool(desired == current)


def removals(previous: Any, desired: Any, current: Any) -> dict[str, Any]:
    """A merge patch deleting what was applied before, is no longer desired and still exists.

    Lists are replaced whole by a merge patch, so only mapping keys need deleting.
    """
    patch: dict[str, Any] = {}
    if not (isinstance(previous, Mapping) and isinstance(current, Mapping)):
        return patch
    desired = desired if isinstance(desired, Mapping) else {}
    for key, before in previous.items():
        if key not in current:
            continue
        if key not in desired:
            patch[key] = None
        elif isinstance(before, Mapping) and (
            inner := removals(before, desired[key], current[key])
        ):
            patch[key] = inner
    return patch


def applied_fields(value: Any) -> Any:
    """The key paths of `value`: mappings kept, anything else (lists too: a merge patch replaces
    them whole) as `1`. Half the size of the values, and all `removals` looks at."""
    if isinstance(value, Mapping):
        return {key: applied_fields(inner) for key, inner in value.items()}
    return 1


def _with_last_applied(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The desired fields, annotated with their key paths (what `removals` compares against)."""
    desired = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    record = json.dumps(applied_fields(desired), sort_keys=True, separators=(",", ":"))
    meta = dict(desired["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), LAST_APPLIED: record}
    return {**desired, "metadata": meta}


def _last_applied(current: Mapping[str, Any]) -> Any:
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    try:
        return json.loads(annotations.get(LAST_APPLIED) or "{}")
    except ValueError:
        return {}  # hand-edited: nothing known to delete


def applied_digest(obj: Mapping[str, Any]) -> str:
    """A digest of `obj`'s values at the key paths it was last applied with (its annotation).

    Taken from the object the API server returned for an apply and again from a later copy, it
    tells whether someone changed a field the operator sets. Server defaults, normalized
    quantities and pruned fields are already in the returned object, and fields others own (an
    autoscaler's replica count, a `rollout restart` annotation) are outside those paths, so
    neither reads as a change."""
    values = _values_at(obj, _last_applied(obj))
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _values_at(value: Any, paths: Any) -> Any:
    if not (isinstance(paths, Mapping) and isinstance(value, Mapping)):
        return value
    return {key: _values_at(value[key], inner) for key, inner in paths.items() if key in value}


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


async def apply(
    api: KubeApi, obj: Mapping[str, Any], *, likely_absent: bool = False
) -> tuple[str, dict[str, Any]]:
    """Create the object, or patch it to the desired fields (deleting ones no longer set).

    Returns (created / updated / unchanged, the object as stored). With `likely_absent` (a
    job's first reconcile) it tries to create first, saving a read.
    """
    meta = obj["metadata"]
    path = resource_path(obj["kind"], meta.get("namespace"), meta["name"])
    desired = _with_last_applied(obj)
    current = None if likely_absent else await api.get(path)
    if current is None:
        try:
            return "created", await api.create(
                resource_path(obj["kind"], meta.get("namespace")), {**obj, **desired}
            )
        except KubeApiError as exc:
            if exc.status != 409:  # it exists after all (or a race): patch it instead
                raise
            current = await api.get(path) or {}
    _refuse_if_not_owned(current, obj)
    deletions = removals(_last_applied(current), desired, current)
    if obj["kind"] == "Deployment":
        deletions = _keep_worker_count(current, deletions)
    if not deletions and is_subset(desired, current):
        return "unchanged", current
    return "updated", await api.merge_patch(path, _merge(desired, deletions))


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((ref for ref in references if ref.get("controller")), None)


def _refuse_if_not_owned(current: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
    """For a desired object with a controller: raise NotOwnedError unless the existing object is
    its to update, controlled by the same owner, or by none and labelled as the desired object (a
    child left behind by `kubectl delete --cascade=orphan`, taken back as a ReplicaSet takes back
    its pods). Someone else's object of that name is never patched, nor adopted: deleting the
    owner would delete it."""
    wanted, held = _controller(desired), _controller(current)
    if wanted is None:
        return  # no owner claimed: applied as `kubectl apply` applies
    if held is not None:
        if held.get("uid") == wanted.get("uid"):
            return
        holder = f"controlled by {held.get('kind')} {held.get('name')} uid {held.get('uid')}"
    else:
        labels = (current.get("metadata") or {}).get("labels") or {}
        own = (desired.get("metadata") or {}).get("labels") or {}
        if own and all(labels.get(key) == value for key, value in own.items()):
            return
        holder = "not made by this operator for it"
    raise NotOwnedError(desired["kind"], desired["metadata"]["name"], holder)


def _keep_worker_count(current: Mapping[str, Any], deletions: dict[str, Any]) -> dict[str, Any]:
    """Deletions for a Deployment whose `spec.replicas` is no longer set (autoscaling turned
    on): its count is left for the autoscaler to take over, since a deleted count is defaulted
    to 1 by the API server (5 running workers would drop to 1). A count of 0 (the job was
    suspended) is deleted all the same: an HPA never scales up from 0."""
    spec = deletions.get("spec")
    live = (current.get("spec") or {}).get("replicas")
    if not (isinstance(spec, dict) and "replicas" in spec and spec["replicas"] is None and live):
        return deletions
    rest = {key: value for key, value in spec.items() if key != "replicas"}
    kept = {key: value for key, value in deletions.items() if key != "spec"}
    return {**kept, "spec": rest} if rest else kept


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


async def prune(
    api: KubeApi,
    namespace: str,
    selector: str,
    keep: Iterable[tuple[str, str]],
    kinds: Iterable[str] = CHILD_KINDS,
) -> list[tuple[str, str]]:
    """Delete the job's children (found by label) that the plan no longer wants."""
    wanted = set(keep)
    deleted = []
    for kind in kinds:
        for obj in await api.list(resource_path(kind, namespace), selector):
            key = (kind, obj["metadata"]["name"])
            if key not in wanted and await api.delete(resource_path(kind, namespace, key[1])):
                deleted.append(key)
    return deleted
