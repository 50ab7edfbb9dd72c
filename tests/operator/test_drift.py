"""Drift repair's decisions alone: what is missing, which jobs to nudge, what to list."""

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
        ("ns", "a"): [f"{P}/topics/a.out"],
        # b reads a's topic and lost its subscription
        ("ns", "b"): [f"{P}/subscriptions/b.from.a", f"{P}/topics/a.out"],
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
    assert found == {("ns", "b"): [f"{P}/topics/b.dl"]}
    assert nudged == [(("ns", "b"), [f"{P}/topics/b.dl"])]
    assert applied == {("ns", "a"): a}  # b's plan forgotten: its reconcile ensures it again
    assert await drift.repair_pubsub_drift({}, listing, nudge) == {}  # nothing applied: no calls


def test_missing_objects_by_kind_and_name_but_never_a_batch_run() -> None:
    applied = {
        ("ns", "a"): frozenset({("ConfigMap", "a-config"), ("Deployment", "a")}),
        ("ns", "b"): frozenset({("ConfigMap", "b-config"), ("Job", "b-run")}),
    }
    live = {("ns", "ConfigMap"): {"a-config"}, ("ns", "Deployment"): set()}
    # b's batch Job is gone (its TTL after it finished, or stopped by hand): not run again
    assert drift.missing_objects(applied, live) == {
        ("ns", "a"): ["Deployment/a"],
        ("ns", "b"): ["ConfigMap/b-config"],
    }


async def test_an_object_pass_lists_each_namespace_and_kind_once() -> None:
    applied = {
        ("ns", "a"): frozenset({("ConfigMap", "a-config"), ("Service", "a-metrics")}),
        ("ns", "b"): frozenset({("ConfigMap", "b-config"), ("Job", "b-run")}),
    }
    listed: list[tuple[str, str]] = []
    nudged: list[tuple[str, str]] = []

    async def live(namespace: str, kind: str) -> set[str]:
        listed.append((namespace, kind))
        return {"a-config", "b-config"} if kind == "ConfigMap" else set()

    async def nudge(key: tuple[str, str], missing: list[str]) -> None:
        nudged.append(key)

    found = await drift.repair_object_drift(applied, live, nudge)
    assert sorted(listed) == [("ns", "ConfigMap"), ("ns", "Service")]
    assert found == {("ns", "a"): ["Service/a-metrics"]} and nudged == [("ns", "a")]
    assert set(applied) == {("ns", "b")}
