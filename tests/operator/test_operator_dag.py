"""The real operator (kopf + handlers) against the extended kmock API and real Pub/Sub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from klio_operator.dag import dead_letter_topic, output_topic, parent_subscription
from klio_operator.kube import resource_path

from tests.operator.harness import NS, PROJECT, operator_under_test, pubsub_names

pytestmark = pytest.mark.usefixtures("pubsub_clean")

CHILD_KINDS = ("ConfigMap", "Deployment", "Service")
UPLOADS = f"projects/{PROJECT}/topics/uploads"


async def test_three_job_dag_comes_up_ready_then_goes_away() -> None:
    async with operator_under_test() as op:
        uploads = f"projects/{PROJECT}/topics/uploads"  # the team's own topic, not ours
        await op.context.pubsub.ensure_topic(uploads)

        async def scenario() -> None:
            # Children before parents: they wait, then heal when the parents appear.
            await op.apply_job("c", parents=["a", "b"])
            await op.apply_job("b", parents=["a"], dataOutputs=[{"location": "gs://bkt/b"}])
            await op.apply_job(
                "a",
                eventInputs=[{"type": "pubsub", "topic": uploads}],
                dataOutputs=[{"location": "gs://bkt/a", "fileSuffix": ".ogg"}],
            )
            await op.wait(  # the workload is applied last, after the rest
                lambda: set("abc") <= set(op.objects("Deployment")), "every job's workload"
            )
            for job in "abc":
                assert f"{job}-config" in op.objects("ConfigMap")
                assert f"{job}-metrics" in op.objects("Service")
                owner = op.objects("Deployment")[job]["metadata"]["ownerReferences"][0]
                assert owner["uid"] == op.objects("KlioJob")[job]["metadata"]["uid"]
            topics, subs = await pubsub_names()
            for job in "abc":
                assert output_topic(PROJECT, NS, job) in topics
                assert dead_letter_topic(PROJECT, NS, job) in topics
            assert {
                parent_subscription(PROJECT, NS, "b", "a"),
                parent_subscription(PROJECT, NS, "c", "a"),
                parent_subscription(PROJECT, NS, "c", "b"),
            } <= subs

            for job in "abc":
                await op.wait(
                    lambda job=job: op.condition_is(job, "TopicsReady", "True"), f"{job} topics"
                )
                await op.play_deployment_controller(job)
            for job in "abc":
                await op.wait(lambda job=job: op.condition_is(job, "Ready", "True"), f"{job} Ready")
                status = op.objects("KlioJob")[job]["status"]
                assert status["phase"] == "Running"
                assert status["readyWorkers"] == status["desiredWorkers"] == 1
            assert op.objects("KlioJob")["c"]["status"]["parents"] == ["a", "b"]

            # A parent goes: its children say so, with a reason.
            await op.delete_job("a")
            for child in "bc":
                await op.wait(
                    lambda child=child: op.condition_is(
                        child, "ParentsResolved", "False", "ParentNotFound"
                    ),
                    f"{child} notices a is gone",
                )
                assert "a" in (op.condition(child, "ParentsResolved") or {})["message"]
                assert op.condition_is(child, "Ready", "False")

            # Everything goes: every child object and every Pub/Sub resource.
            await op.delete_job("b")
            await op.delete_job("c")
            await op.wait(lambda: not op.objects("KlioJob"), "KlioJobs deleted")
            await op.wait(
                lambda: not any(op.objects(kind) for kind in CHILD_KINDS), "children deleted"
            )
            topics, subs = await pubsub_names()
            assert topics == {uploads}  # not ours: kept
            assert subs == set()

        await op.run(scenario)


async def test_a_cycle_is_named_and_nothing_is_created() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("x", parents=["z"])
            await op.apply_job("y", parents=["x"])
            await op.apply_job("z", parents=["y"])
            await op.wait(
                lambda: op.condition_is("x", "ParentsResolved", "False", "CycleDetected"),
                "x sees the cycle",
            )
            message = (op.condition("x", "ParentsResolved") or {})["message"]
            assert "x → y → z → x" in message
            assert op.condition_is("x", "Ready", "False", "CycleDetected")
            assert op.objects("KlioJob")["x"]["status"]["phase"] == "Failed"
            assert not op.objects("Deployment")
            for job in "yz":
                await op.wait(
                    lambda job=job: op.condition_is(job, "Ready", "False", "CycleDetected"), job
                )
            # and it settles: a refused job tells its children once, not each time a child
            # refused too (in a cycle, its own ancestor) tells it back (before: ~200 a second).
            # Each job is refused at most twice: on its own, and once told by its parent.
            refused = op.context.metrics.reconciles.labels(result="permanent_error")
            await asyncio.sleep(2)  # what would follow, if anything did
            assert refused._value.get() <= 2 * 3

        await op.run(scenario)


async def test_breaking_a_cycle_heals_every_job_that_was_in_it() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("x", parents=["z"])
            await op.apply_job("y", parents=["x"])
            await op.apply_job("z", parents=["y"])
            for job in "xyz":
                await op.wait(
                    lambda job=job: op.condition_is(job, "Ready", "False", "CycleDetected"),
                    f"{job} sees the cycle",
                )
            # z becomes a root: z heals for its own edit, x as z's child; y only if x, once
            # healed, nudges it (before, y stayed CycleDetected until the operator restarted)
            await op.send("PATCH", resource_path("KlioJob", NS, "z"), {"spec": {"parents": None}})
            await op.wait(
                lambda: all(op.condition_is(job, "ParentsResolved", "True") for job in "xyz"),
                "every job of the old cycle resolved",
            )
            await op.wait(lambda: set(op.objects("Deployment")) == set("xyz"), "their workers")

        await op.run(scenario)


async def test_a_parent_named_later_moves_the_observed_generation() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("j")
            await op.wait(lambda: "j" in op.objects("Deployment"), "reconciled")
            await op.send(
                "PATCH", resource_path("KlioJob", NS, "j"), {"spec": {"parents": ["ghost"]}}
            )
            await op.wait(
                lambda: op.condition_is("j", "ParentsResolved", "False", "ParentNotFound"),
                "waits for its parent",
            )
            # the new generation is seen (kubectl wait, Argo CD): it waits for a parent
            status = op.objects("KlioJob")["j"]["status"]
            assert status["observedGeneration"] == 2
            assert status["phase"] == "Pending"

        await op.run(scenario)


async def test_a_parent_appearing_later_heals_its_child_promptly() -> None:
    async with operator_under_test() as op:
        op.context.retry_delay = 120  # far beyond the wait below: only a prompt nudge passes

        async def scenario() -> None:
            await op.apply_job("late-child", parents=["late"])
            await op.wait(
                lambda: op.condition_is("late-child", "ParentsResolved", "False", "ParentNotFound"),
                "child waits for its parent",
            )
            await op.apply_job(
                "late",
                eventInputs=[{"type": "pubsub", "topic": UPLOADS}],
                dataOutputs=[{"location": "gs://bkt/late"}],
            )
            await op.wait(
                lambda: op.condition_is("late-child", "ParentsResolved", "True"),
                "child healed",
                timeout=10,
            )
            await op.wait(lambda: "late-child" in op.objects("Deployment"), "child's workers")
            config = op.objects("ConfigMap")["late-child-config"]["data"]["klio-job.yaml"]
            assert f"topic: {UPLOADS}" in config  # the worker knows where to ask its parent

        await op.context.pubsub.ensure_topic(UPLOADS)
        await op.run(scenario)


def bottom_up_topic(op: Any, job: str) -> str | None:
    """The topic ``job``'s worker asks its first parent on (``job_config.parents``)."""
    config_map = op.objects("ConfigMap").get(f"{job}-config")
    if config_map is None:
        return None
    config = yaml.safe_load(config_map["data"]["klio-job.yaml"])
    parents = config["job_config"].get("parents") or [{}]
    return str(parents[0].get("topic"))


async def test_a_child_waits_for_an_invalid_parent_and_makes_nothing_of_its_until_fixed() -> None:
    long_name = "p" * 60  # a name Kubernetes takes, too long for the parent's own children
    # what the CRD's schema cannot check, pydantic's model does
    upside_down = {"autoscaling": {"minReplicas": 3, "maxReplicas": 1}}

    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job(long_name, dataOutputs=[{"location": "gs://b/p"}])
            await op.apply_job("q", dataOutputs=[{"location": "gs://b/q"}], **upside_down)
            for parent in (long_name, "q"):
                await op.wait(
                    lambda p=parent: op.condition_is(p, "Ready", "False", "InvalidSpec"), "invalid"
                )
            await op.apply_job("c", parents=[long_name])
            await op.apply_job("d", parents=["q"])
            for child, parent in (("c", long_name), ("d", "q")):
                await op.wait(
                    lambda c=child: op.condition_is(c, "Ready", "False", "ParentInvalid"), "waits"
                )
                assert op.condition_is(child, "ParentsResolved", "False", "ParentInvalid")
                assert parent in (op.condition(child, "Ready") or {})["message"]
            # before: each child made its parent's output topic and said Ready on it, and the
            # topic was left behind once both were deleted
            topics, subscriptions = await pubsub_names(PROJECT)
            assert output_topic(PROJECT, NS, long_name) not in topics
            assert output_topic(PROJECT, NS, "q") not in topics
            assert not subscriptions and not op.objects("Deployment")
            # the parent fixed: its child goes on, with no change to it
            fixed = {"spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}}
            await op.send("PATCH", resource_path("KlioJob", NS, "q"), fixed)
            await op.wait(lambda: "d" in op.objects("Deployment"), "the child made once fixed")
            await op.wait(lambda: op.condition_is("d", "ParentsResolved", "True"), "resolved")

        await op.run(scenario)


async def test_a_child_waits_for_a_parent_its_plan_refuses_and_nothing_is_left_behind() -> None:
    twice = [{"type": "pubsub", "topic": "uploads"}, {"type": "pubsub", "topic": "uploads"}]

    async with operator_under_test() as op:

        async def scenario() -> None:
            # parsed, but refused by planning (one topic read twice)
            await op.apply_job("q", dataOutputs=[{"location": "gs://b/q"}], eventInputs=twice)
            await op.wait(lambda: op.condition_is("q", "Ready", "False", "InvalidSpec"), "invalid")
            await op.apply_job("d", parents=["q"])
            await op.wait(lambda: op.condition_is("d", "Ready", "False", "ParentInvalid"), "waits")
            topics, _ = await pubsub_names(PROJECT)
            # before: d made q's output topic and a Deployment, and the topic outlived both
            assert output_topic(PROJECT, NS, "q") not in topics
            assert "d" not in op.objects("Deployment")
            one = {"spec": {"eventInputs": twice[:1]}}
            await op.send("PATCH", resource_path("KlioJob", NS, "q"), one)
            await op.wait(lambda: "d" in op.objects("Deployment"), "the child made once fixed")

        await op.run(scenario)


async def test_a_grandparent_moved_or_made_again_elsewhere_moves_its_grandchilds_requests() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("g", dataOutputs=[{"location": "gs://b/g"}])
            await op.apply_job("p", parents=["g"], dataOutputs=[{"location": "gs://b/p"}])
            await op.apply_job("c", parents=["p"])
            # c asks p for missing input on the topic p reads: g's output
            before = output_topic(PROJECT, NS, "g")
            await op.wait(lambda: bottom_up_topic(op, "c") == before, "c asks on g's topic")
            moved = {"spec": {"pipelineOptions": {"project": "test-project"}}}
            await op.send("PATCH", resource_path("KlioJob", NS, "g"), moved)
            # before: c went on asking on the old topic, which g's reconcile deleted
            after = output_topic("test-project", NS, "g")
            await op.wait(lambda: bottom_up_topic(op, "c") == after, "c's requests moved with g")
            await op.delete_job("g")
            await op.wait(lambda: op.condition_is("p", "ParentsResolved", "False"), "p waits")
            await op.apply_job("g", dataOutputs=[{"location": "gs://b/g"}])
            # before: p healed, but c went on asking on the topic g's finalizer deleted
            await op.wait(lambda: bottom_up_topic(op, "c") == before, "c's requests moved back")

        await op.run(scenario)


async def test_a_refused_job_tells_its_children_once_a_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kopf
    from klio_operator import handlers

    told: list[str] = []

    async def touch(context: Any, namespace: str, parent: str, jobs: Any, why: str) -> None:
        told.extend(job.name for job in jobs)

    monkeypatch.setattr(handlers, "touch_children", touch)
    index = {("child", NS, "q"): [handlers.JobSummary("d", ("q",), PROJECT, ())]}

    def refused(generation: int, said_of: int) -> kopf.Body:
        ready = {"type": "Ready", "status": "False", "reason": "InvalidSpec"}
        return kopf.Body(
            {
                "metadata": {"name": "q", "namespace": NS, "generation": generation},
                "status": {"conditions": [{**ready, "observedGeneration": said_of}]},
            }
        )

    # refused again for the generation its status speaks of: told already (in a cycle, each
    # job's refusal would otherwise tell the other for ever)
    context: Any = None  # not used: the touch is recorded
    await handlers._tell_children_blocked(context, refused(2, 2), "InvalidSpec", index)
    assert told == []
    # a new generation refused too: a child made since may have planned on it meanwhile
    # (before: not told, as the reason was the same)
    await handlers._tell_children_blocked(context, refused(2, 1), "InvalidSpec", index)
    assert told == ["d"]
    await handlers._tell_children_blocked(context, refused(2, 2), "CycleDetected", index)
    assert told == ["d", "d"]


async def test_a_refused_jobs_output_topic_made_by_a_child_goes_with_it() -> None:
    twice = [{"type": "pubsub", "topic": "uploads"}, {"type": "pubsub", "topic": "uploads"}]

    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("q", eventInputs=twice)  # refused by planning
            await op.wait(lambda: op.condition_is("q", "Ready", "False", "InvalidSpec"), "invalid")
            # as a child applied with it may make it, before q's refusal is known
            made = output_topic(PROJECT, NS, "q")
            await op.context.pubsub.ensure_topic(made)
            await op.delete_job("q")
            await op.wait(lambda: "q" not in op.objects("KlioJob"), "q gone")
            # before: left behind, as the refused job's status named nothing to delete
            topics, _ = await pubsub_names(PROJECT)
            assert made not in topics

        await op.run(scenario)
