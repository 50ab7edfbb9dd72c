"""Drift repair: Pub/Sub resources of a job that went missing after the operator made them.

A topic or subscription deleted by hand (or by a cleanup script) breaks an edge of the DAG while
the job still reads Ready. Every ``interval`` seconds the operator lists the topics and
subscriptions of the projects it created resources in (two list calls per project, however many
jobs) and nudges each job whose resources are not all there: the job re-reconciles, makes them
again and reports it in an Event.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from klio_operator.planning import PubSubPlan

JobKey = tuple[str, str]  # (namespace, name)
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


async def repair_pubsub_drift(
    applied: dict[JobKey, PubSubPlan],
    list_existing: Callable[[Iterable[str]], Awaitable[tuple[set[str], set[str]]]],
    nudge: Callable[[JobKey, list[str]], Awaitable[None]],
) -> dict[JobKey, list[str]]:
    """One pass: list, compare with what was applied, forget and nudge each drifted job.

    ``applied`` is the operator's record of the plans it applied (a job forgotten there has its
    resources ensured again on its next reconcile)."""
    snapshot = dict(applied)
    if not snapshot:
        return {}
    topics, subscriptions = await list_existing(projects_of(snapshot))
    found = drifted(snapshot, topics, subscriptions)
    for key, missing in found.items():
        if applied.get(key) is snapshot[key]:  # not re-applied meanwhile
            applied.pop(key, None)
            await nudge(key, missing)
    return found


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


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()
