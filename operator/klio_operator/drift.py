"""Drift repair: what the operator made for a job and someone deleted or changed since.

A topic or subscription deleted by hand (or by a cleanup script) breaks an edge of the DAG while
the job still reads Ready; a deleted ConfigMap, Service or Deployment is not made again, and a
hand-edited one (another image, a scaled Deployment) not set back, until the job changes. Every
``interval`` seconds the operator lists the topics and subscriptions of the projects it created
resources in (two list calls per project) and its child objects (one list per kind and
namespace, by its managed-by label), however many jobs, and nudges each job with something
deleted or changed: the job re-reconciles, which applies its children again, and reports it in
an Event. A child is changed when its values at the fields the operator applied differ from
those the API server returned for that apply (`kube.applied_digest`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from typing import Any

from klio_operator.planning import PubSubPlan

JobKey = tuple[str, str]  # (namespace, name)
ObjectKey = tuple[str, str]  # (kind, name)
AppliedObjects = Mapping[ObjectKey, str | None]
"""A job's child objects, each with the digest of its applied fields as the API server returned
them (None: not applied by the last reconcile, so only its existence is checked)."""
Nudge = Callable[[JobKey, list[str]], Awaitable[None]]
"""Called with a drifted job and what drifted, each named with why (``Kind/name (changed)``)."""
RUNS = frozenset({"Job"})
"""Kinds that are a run, not a state: a batch Job deleted (by its TTL once finished, or by
someone stopping it) must not run again."""
log = logging.getLogger(__name__)


def deleted(name: str) -> str:
    """What drifted, as an Event names it: ``name`` deleted."""
    return f"{name} (deleted)"


def changed(name: str) -> str:
    """What drifted, as an Event names it: ``name`` changed."""
    return f"{name} (changed)"


def resource_names(plan: PubSubPlan) -> set[str]:
    """The topics and subscriptions a job owns and reads (its parents' topics included)."""
    return (
        {t.name for t in plan.topics}
        | {t.name for t in plan.parent_topics}
        | {s.name for s in plan.subscriptions}
    )


def project_of(resource: str) -> str:
    """``projects/<p>/topics/<t>`` or ``projects/<p>/subscriptions/<s>`` → ``<p>``."""
    parts = resource.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] not in ("topics", "subscriptions"):
        raise ValueError(f"not a Pub/Sub topic or subscription name: {resource!r}")
    return parts[1]


def projects_of(applied: Mapping[JobKey, PubSubPlan]) -> set[str]:
    return {project_of(name) for plan in applied.values() for name in resource_names(plan)}


def drifted(
    applied: Mapping[JobKey, PubSubPlan], topics: set[str], subscriptions: set[str]
) -> dict[JobKey, list[str]]:
    """Each job whose resources are not all in ``topics`` / ``subscriptions``, with the missing
    ones (sorted, each ``<name> (deleted)``)."""
    existing = topics | subscriptions
    out: dict[JobKey, list[str]] = {}
    for key, plan in applied.items():
        missing = sorted(resource_names(plan) - existing)
        if missing:
            out[key] = [deleted(name) for name in missing]
    return out


def drifted_objects(
    applied: Mapping[JobKey, AppliedObjects], live: Mapping[tuple[str, str], Mapping[str, str]]
) -> dict[JobKey, list[str]]:
    """Each job some of whose child objects are gone or changed, with them as
    ``Kind/name (deleted)`` or ``Kind/name (changed)`` (sorted). A batch run's Job is never
    one: gone by its TTL or stopped by hand, it must not run again.

    ``live`` maps (namespace, kind) to the live objects, each name with its applied digest."""
    out: dict[JobKey, list[str]] = {}
    for (namespace, job), objects in applied.items():
        found: list[str] = []
        for (kind, name), digest in sorted(objects.items()):
            if kind in RUNS:
                continue
            live_digest = live.get((namespace, kind), {}).get(name)
            if live_digest is None:
                found.append(deleted(f"{kind}/{name}"))
            elif digest is not None and live_digest != digest:
                found.append(changed(f"{kind}/{name}"))
        if found:
            out[(namespace, job)] = found
    return out


async def repair_object_drift(
    applied: dict[JobKey, AppliedObjects],
    list_live: Callable[[str, str], Awaitable[Mapping[str, str]]],
    nudge: Nudge,
    busy: Container[JobKey] = (),
) -> dict[JobKey, list[str]]:
    """One pass over child objects: list each (namespace, kind) once, forget and nudge each job
    with some deleted or changed (``list_live(namespace, kind)`` gives the name and applied
    digest of each object the operator manages). Jobs in ``busy`` (being reconciled: their
    children may be half applied) are left for the next pass."""
    snapshot = {key: objects for key, objects in applied.items() if key not in busy}
    wanted = sorted(
        {(ns, kind) for (ns, _), objects in snapshot.items() for kind, _ in objects}
    )
    wanted = [(ns, kind) for ns, kind in wanted if kind not in RUNS]
    live = {where: await list_live(*where) for where in wanted}
    found = drifted_objects(snapshot, live)
    await _forget_and_nudge(applied, snapshot, found, nudge, busy)
    return found


async def repair_pubsub_drift(
    applied: dict[JobKey, PubSubPlan],
    list_existing: Callable[[Iterable[str]], Awaitable[tuple[set[str], set[str]]]],
    nudge: Nudge,
    busy: Container[JobKey] = (),
) -> dict[JobKey, list[str]]:
    """One pass: list, compare with what was applied, forget and nudge each drifted job (those
    in ``busy``, being reconciled, are left for the next pass).

    ``applied`` is the operator's record of the plans it applied (a job forgotten there has its
    resources ensured again on its next reconcile)."""
    snapshot = {key: plan for key, plan in applied.items() if key not in busy}
    if not snapshot:
        return {}
    topics, subscriptions = await list_existing(projects_of(snapshot))
    found = drifted(snapshot, topics, subscriptions)
    await _forget_and_nudge(applied, snapshot, found, nudge, busy)
    return found


async def _forget_and_nudge(
    applied: dict[JobKey, Any],
    snapshot: Mapping[JobKey, Any],
    found: Mapping[JobKey, list[str]],
    nudge: Nudge,
    busy: Container[JobKey],
) -> None:
    """Forget what each drifted job had applied and nudge it, unless it was applied again or
    began a reconcile while the pass listed."""
    for key, drift in found.items():
        if applied.get(key) is snapshot[key] and key not in busy:
            applied.pop(key, None)
            await nudge(key, drift)


async def run_every(interval: float, one_pass: Callable[[], Awaitable[object]]) -> None:
    """Call ``one_pass`` every ``interval`` seconds until cancelled; a failed pass is logged and
    the next one tried (a transient Pub/Sub or API error must not end drift repair)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("drift check failed; next try in %s s", interval)
