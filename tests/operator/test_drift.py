"""Drift repair's decisions alone: what is deleted or changed, which jobs to nudge, what to
list."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from klio_operator import drift
from klio_operator.planning import PubSubPlan, SubscriptionPlan, TopicPlan

P = "projects/p"


def plan(job: str, parent: str | None = None) -> PubSubPlan:
    subs = [SubscriptionPlan(f"{P}/subscriptions/{job}.from.{parent}", f"{P}/topics/{parent}.out",
                             f"{P}/topics/{job}.dl")] if parent else []
    return PubSubPlan(
        topics=(TopicPlan(f"{P}/topics/{job}.out"), TopicPlan(f"{P}/topics/{job}.dl")),
        subscriptions=tuple(subs),
        parent_topics=(TopicPlan(f"{P}/topics/{parent}.out"),) if parent else (),
    )


def test_drifted_names_each_job_with_what_it_misses() -> None:
    applied = {("ns", "a"): plan("a"), ("ns", "b"): plan("b", parent="a")}
    topics = {f"{P}/topics/a.out", f"{P}/topics/a.dl", f"{P}/topics/b.out", f"{P}/topics/b.dl"}
    subs = {f"{P}/subscriptions/b.from.a"}
    assert drift.drifted(applied, topics, subs) == {}
    assert drift.drifted(applied, topics - {f"{P}/topics/a.out"}, set()) == {
        ("ns", "a"): [f"{P}/topics/a.out (deleted)"],
        # b reads a's topic and lost its subscription
        ("ns", "b"): [f"{P}/subscriptions/b.from.a (deleted)", f"{P}/topics/a.out (deleted)"],
    }


def test_projects_come_from_resource_names_and_bad_names_are_refused() -> None:
    other = PubSubPlan(topics=(TopicPlan("projects/q/topics/x"),), subscriptions=())
    assert drift.projects_of({("ns", "a"): plan("a"), ("ns", "x"): other}) == {"p", "q"}
    with pytest.raises(ValueError, match="not a Pub/Sub topic or subscription name"):
        drift.project_of("topics/x")


async def test_a_pass_forgets_and_nudges_only_drifted_jobs_it_still_holds() -> None:
    a, b = plan("a"), plan("b", parent="a")
    applied = {("ns", "a"): a, ("ns", "b"): b}
    nudged: list[tuple[tuple[str, str], list[str]]] = []

    async def listing(projects: Iterable[str]) -> tuple[set[str], set[str]]:
        assert set(projects) == {"p"}
        return {f"{P}/topics/a.out", f"{P}/topics/a.dl", f"{P}/topics/b.out"}, {
            f"{P}/subscriptions/b.from.a"
        }

    async def nudge(key: tuple[str, str], missing: list[str]) -> None:
        nudged.append((key, missing))

    found = await drift.repair_pubsub_drift(applied, listing, nudge)
    assert found == {("ns", "b"): [f"{P}/topics/b.dl (deleted)"]}
    assert nudged == [(("ns", "b"), [f"{P}/topics/b.dl (deleted)"])]
    assert applied == {("ns", "a"): a}  # b's plan forgotten: its reconcile ensures it again
    assert await drift.repair_pubsub_drift({}, listing, nudge) == {}  # nothing applied: no calls


def test_objects_deleted_or_changed_by_kind_and_name_but_never_a_batch_run() -> None:
    applied = {
        ("ns", "a"): {("ConfigMap", "a-config"): "d1", ("Deployment", "a"): "d2"},
        ("ns", "b"): {("ConfigMap", "b-config"): "d3", ("Job", "b-run"): "d4"},
        # c's Service was not applied by its last reconcile: only its existence is known
        ("ns", "c"): {("Service", "c-metrics"): None},
    }
    live = {
        ("ns", "ConfigMap"): {"a-config": "d1", "b-config": "edited"},
        ("ns", "Deployment"): {},
        ("ns", "Service"): {"c-metrics": "anything"},
    }
    # b's batch Job is gone (its TTL after it finished, or stopped by hand): not run again
    assert drift.drifted_objects(applied, live) == {
        ("ns", "a"): ["Deployment/a (deleted)"],
        ("ns", "b"): ["ConfigMap/b-config (changed)"],
    }
    live[("ns", "ConfigMap")]["b-config"] = "d3"
    live[("ns", "Deployment")]["a"] = "d2"
    assert drift.drifted_objects(applied, live) == {}


async def test_an_object_pass_lists_each_namespace_and_kind_once() -> None:
    applied: dict[tuple[str, str], drift.AppliedObjects] = {
        ("ns", "a"): {("ConfigMap", "a-config"): "a1", ("Service", "a-metrics"): "a2"},
        ("ns", "b"): {("ConfigMap", "b-config"): "b1", ("Job", "b-run"): "b2"},
    }
    listed: list[tuple[str, str]] = []
    nudged: list[tuple[str, str]] = []

    async def live(namespace: str, kind: str) -> dict[str, str]:
        listed.append((namespace, kind))
        return {"a-config": "a1", "b-config": "b1"} if kind == "ConfigMap" else {}

    async def nudge(key: tuple[str, str], drifted: list[str]) -> None:
        nudged.append(key)

    found = await drift.repair_object_drift(applied, live, nudge)
    assert sorted(listed) == [("ns", "ConfigMap"), ("ns", "Service")]
    assert found == {("ns", "a"): ["Service/a-metrics (deleted)"]} and nudged == [("ns", "a")]
    assert set(applied) == {("ns", "b")}


async def test_a_pass_leaves_jobs_being_reconciled_alone() -> None:
    # Their children may be half applied: a patched Deployment whose new digest is not recorded
    # yet is no hand edit.
    applied: dict[tuple[str, str], drift.AppliedObjects] = {
        ("ns", "a"): {("Deployment", "a"): "old"},
        ("ns", "b"): {("Deployment", "b"): "old"},
    }
    busy = {("ns", "a")}
    nudged: list[tuple[str, str]] = []

    async def live(namespace: str, kind: str) -> dict[str, str]:
        busy.add(("ns", "b"))  # b's reconcile begins while the pass lists
        return {"a": "new", "b": "new"}

    async def nudge(key: tuple[str, str], drifted: list[str]) -> None:
        nudged.append(key)

    await drift.repair_object_drift(applied, live, nudge, busy)
    assert nudged == [] and set(applied) == {("ns", "a"), ("ns", "b")}
