"""The operator's one startup handler: kopf settings and the handlers' context."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import kopf

from klio_operator import drift
from klio_operator.kube import OPTIONAL_GROUPS, KubeApi, applied_digest, resource_path
from klio_operator.metrics import OperatorMetrics
from klio_operator.models import KIND as KLIOJOB_KIND
from klio_operator.planning import (
    DEFAULT_PROJECT,
    MANAGED_BY,
    selector_string,
    with_environment,
)
from klio_operator.pubsub_admin import AsyncPubSubAdmin

FINALIZER = "klio.io/finalizer"
STORAGE_PREFIX = "kopf.klio.io"
"""kopf's bookkeeping annotations; not `klio.io/...`, which kopf would then ignore in diffs."""

if TYPE_CHECKING:
    from klio_operator.handlers import OperatorContext

POD_RESOURCE = ("v1", "pods")
WORKLOAD_RESOURCES = (("apps", "v1", "deployments"), ("batch", "v1", "jobs"), POD_RESOURCE)
"""Watched for the workers' state: the operator's Deployments and Jobs, and their pods."""
WORKLOAD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
"""What every one of those the operator made carries (and other apps' do not)."""

ENV_PROJECT = "KLIO_PUBSUB_PROJECT"
ENV_METRICS_PORT = "KLIO_OPERATOR_METRICS_PORT"
ENV_RETRY_DELAY = "KLIO_OPERATOR_RETRY_DELAY"
ENV_DRIFT_INTERVAL = "KLIO_OPERATOR_DRIFT_INTERVAL"
"""The KEDA TriggerAuthentication (in each job's namespace) its ScaledObject reads Pub/Sub with."""


class DiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled annotation, built without deep copies that nothing reads.

    kopf builds an essence on every event of every watched resource, copying the whole body
    and then dropping the status and most metadata. Only the kinds with change handlers
    (`kinds`) ever use it: for the workloads and pods, which have event handlers only, it is
    empty. For the others what kopf drops is left out before the copy: a KlioJob's status is
    most of its body, and three of a new job's five events carry one. The essence (spec,
    labels, annotations) is the same.
    """

    def __init__(self, *, kinds: Iterable[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds = frozenset(kinds)

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        fields = list(extra_fields or [])
        if not self._essential(body):
            return cast(kopf.BodyEssence, {})
        if not fields:  # extra fields might name status or metadata fields: keep them all
            body = kopf.Body(cast(kopf.RawBody, _essential_parts(body)))
        return super().build(body=body, extra_fields=fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return super().fetch(body=body) if self._essential(body) else None

    def _essential(self, body: kopf.Body) -> bool:
        """Of a kind with change handlers, or of no stated kind (then kopf's way, to be sure)."""
        kind = body.get("kind")
        return kind is None or kind in self.kinds


_ESSENTIAL_METADATA = ("labels", "annotations", "ownerReferences")
"""What kopf's essence keeps of the metadata (labels, annotations), and what its key naming
reads (owner references)."""


def _essential_parts(body: kopf.Body) -> dict[str, Any]:
    """The body without its status and the metadata kopf drops anyway (managedFields is often
    the biggest part of a live object): kopf deep-copies what it is given."""
    metadata = body.get("metadata") or {}
    parts = {key: value for key, value in body.items() if key not in ("status", "metadata")}
    parts["metadata"] = {key: metadata[key] for key in _ESSENTIAL_METADATA if key in metadata}
    return parts


class ProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations; `clear` copies only the annotations it filters.

    kopf clears its own annotations out of both essences of every event, deep-copying each
    first; a copy of the path that changes leaves the given essence as it is just the same.
    """

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        cleared: dict[str, Any] = dict(essence)
        if isinstance(essence.get("metadata"), Mapping):
            metadata = cleared["metadata"] = dict(essence["metadata"])
            annotations = metadata.get("annotations")
            if self.prefix and isinstance(annotations, Mapping):
                ours = f"{self.prefix}/"
                metadata["annotations"] = {
                    key: value for key, value in annotations.items() if not key.startswith(ours)
                }
        self.remove_empty_stanzas(cast(kopf.BodyEssence, cleared))  # in place: on our copies
        return cast(kopf.BodyEssence, cleared)


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """Where kopf keeps its state and how it talks; shared by the CLI and the tests."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = ProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = DiffBaseStorage(
        kinds=(KLIOJOB_KIND,), prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    selector = selector_string(WORKLOAD_LABELS)
    for resource in WORKLOAD_RESOURCES:
        # The API server leaves out other apps' Deployments, Jobs and pods: a cluster's every
        # pod change is not streamed here to be dropped by the handlers' label filter.
        settings.watching.label_selectors[resource] = selector
    settings.posting.level = logging.WARNING  # Events for problems, not for every handler run
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660


async def startup(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    worker_pods: kopf.Index[tuple[str, str], Any] | None = None,
    **_: Any,
) -> None:
    """Configure kopf; build the handlers' context unless the caller (a test) passed one."""
    from klio_operator.handlers import OperatorContext

    configure_settings(settings)
    context = memo.get("klio")
    if context is None:
        metrics = OperatorMetrics()
        port = os.environ.get(ENV_METRICS_PORT, "9090")
        if port != "0":
            metrics.serve(int(port))
        context = OperatorContext(
            kube=KubeApi.from_environment(),
            pubsub=AsyncPubSubAdmin(),
            metrics=metrics,
            retry_delay=float(os.environ.get(ENV_RETRY_DELAY, "30")),
            drift_interval=float(os.environ.get(ENV_DRIFT_INTERVAL, "300")),
        )
        memo["klio"] = context
    context.worker_pods = worker_pods  # kopf's index object: filled as pods are watched
    groups = await context.kube.api_groups()
    context.facts = with_environment(
        dataclasses.replace(
            context.facts,
            has_service_monitor=OPTIONAL_GROUPS["ServiceMonitor"] in groups,
            has_keda=OPTIONAL_GROUPS["ScaledObject"] in groups,
            default_project=os.environ.get(ENV_PROJECT)
            or os.environ.get("GOOGLE_CLOUD_PROJECT")
            or context.facts.default_project
            or credentials_project()
            or DEFAULT_PROJECT,
        )
    )

    if context.drift_interval > 0:
        memo["klio_drift"] = asyncio.create_task(watch_drift(context), name="klio drift repair")


def credentials_project() -> str | None:
    """The project of the operator's Google credentials (workload identity, a key file), as the
    chart's empty ``pubsub.project`` promises; None on the Pub/Sub emulator or without any."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        return None
    import google.auth
    import google.auth.exceptions

    try:
        _, project = google.auth.default()
    except google.auth.exceptions.GoogleAuthError:
        return None
    return str(project) if project else None


async def watch_drift(context: OperatorContext) -> None:
    """Drift repair for the operator's lifetime (see `klio_operator.drift`)."""
    from klio_operator.handlers import nudge_drifted

    async def live_children(namespace: str, kind: str) -> dict[str, str]:
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
        listed = await context.kube.list(resource_path(kind, namespace), selector)
        return {obj["metadata"]["name"]: applied_digest(obj) for obj in listed}

    async def one_pass() -> None:
        await drift.repair_pubsub_drift(
            context.pubsub_applied,
            context.pubsub.existing,
            lambda key, drifted: nudge_drifted(context, key, drifted, "pubsub"),
            context.reconciling,
        )
        await drift.repair_object_drift(
            context.children_applied,
            live_children,
            lambda key, drifted: nudge_drifted(context, key, drifted, "object"),
            context.reconciling,
        )

    await drift.run_every(context.drift_interval, one_pass)


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("klio_drift")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    context = memo.get("klio")
    if context is not None:
        await context.kube.close()
        await context.pubsub.close()


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(registry=registry, id="klio_settings")(startup)
    kopf.on.cleanup(registry=registry, id="klio_cleanup")(cleanup)
