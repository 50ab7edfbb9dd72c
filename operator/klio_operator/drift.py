"""Drift repair: what the operator made for a job and someone deleted since.

A topic or subscription deleted by hand (or by a cleanup script) breaks an edge of the DAG while
the job still reads Ready; a deleted ConfigMap, Service or Deployment is not made again until the
job changes. Every ``interval`` seconds the operator lists the topics and subscriptions of the
projects it created resources in (two list calls per project) and its child objects (one list
per kind and namespace, by its managed-by label), however many jobs, and nudges each job missing
something: the job re-reconciles, makes them again and reports it in an Event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from klio_operator.planning import PubSubPlan

JobKey = tuple[str, str]  # (namespace, name)
ObjectKey = tuple[str, str]  # (kind, name)
Nudge = Callable[[JobKey, list[str]], Awaitable[None]]
RUNS = frozenset({"Job"})
"""Kinds that are a run, not a state: a batch Job deleted (by its TTL once finished, or by
someone stopping it) must not run again."""
log = logging.getLogger(__name__)


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
    ones (sorted)."""
    existing = topics | subscriptions
    out: dict[JobKey, list[str]] = {}
    for key, plan in applied.items():
        missing = sorted(resource_names(plan) - existing)
        if missing:
            out[key] = missing
    return out


def missing_objects(
    applied: Mapping[JobKey, frozenset[ObjectKey]], live: Mapping[tuple[str, str], set[str]]
) -> dict[JobKey, list[str]]:
    """Each job some of whose child objects are not live, with them as ``Kind/name`` (sorted).

    ``live`` maps (namespace, kind) to the names that exist."""
    out: dict[JobKey, list[str]] = {}
    for (namespace, job), objects in applied.items():
        missing = sorted(
            f"{kind}/{name}" for kind, name in objects
            if kind not in RUNS and name not in live.get((namespace, kind), set())
        )
        if missing:
            out[(namespace, job)] = missing
    return out


async def repair_object_drift(
    applied: dict[JobKey, frozenset[ObjectKey]],
    list_live: Callable[[str, str], Awaitable[set[str]]],
    nudge: Nudge,
) -> dict[JobKey, list[str]]:
    """One pass over child objects: list each (namespace, kind) once, forget and nudge each job
    missing some (``list_live(namespace, kind)`` gives the names the operator manages)."""
    snapshot = dict(applied)
    wanted = sorted(
        {(ns, kind) for (ns, _), objects in snapshot.items() for kind, _ in objects}
    )
    wanted = [(ns, kind) for ns, kind in wanted if kind not in RUNS]
    live = {where: await list_live(*where) for where in wanted}
    found = missing_objects(snapshot, live)
    await _forget_and_nudge(applied, snapshot, found, nudge)
    return found


async def repair_pubsub_drift(
    applied: dict[JobKey, PubSubPlan],
    list_existing: Callable[[Iterable[str]], Awaitable[tuple[set[str], set[str]]]],
    nudge: Nudge,
) -> dict[JobKey, list[str]]:
    """One pass: list, compare with what was applied, forget and nudge each drifted job.

    ``applied`` is the operator's record of the plans it applied (a job forgotten there has its
    resources ensured again on its next reconcile)."""
    snapshot = dict(applied)
    if not snapshot:
        return {}
    topics, subscriptions = await list_existing(projects_of(snapshot))
    found = drifted(snapshot, topics, subscriptions)
    await _forget_and_nudge(applied, snapshot, found, nudge)
    return found


async def _forget_and_nudge(
    applied: dict[JobKey, Any],
    snapshot: Mapping[JobKey, Any],
    found: Mapping[JobKey, list[str]],
    nudge: Nudge,
) -> None:
    """Forget what each drifted job had applied (unless it was applied again while the pass
    listed) and nudge it."""
    for key, missing in found.items():
        if applied.get(key) is snapshot[key]:
            applied.pop(key, None)
            await nudge(key, missing)


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
