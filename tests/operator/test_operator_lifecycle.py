"""Lifecycle of one job under the real operator: degraded pods, suspend, spec change, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from google.api_core import exceptions as gexc
from klio_operator import worker_contract
from klio_operator.dag import dead_letter_topic, input_subscription
from klio_operator.kube import KubeApiError, resource_path
from klio_operator.planning import (
    MANAGED_BY,
    PubSubPlan,
    SubscriptionPlan,
    config_map_name,
    labels_for,
)

from tests.operator.harness import (
    NS,
    PROJECT,
    emulator_subscription,
    operator_under_test,
    pubsub_inspector,
    pubsub_names,
)

pytestmark = pytest.mark.usefixtures("pubsub_clean")


async def test_stuck_pod_degrades_then_recovers_and_suspend_keeps_subscriptions() -> None:
    async with operator_under_test(optional_groups=("monitoring.coreos.com", "keda.sh")) as op:
        incoming = f"projects/{PROJECT}/topics/incoming"
        await op.context.pubsub.ensure_topic(incoming)

        async def scenario() -> None:
            await op.apply_job(
                "j",
                eventInputs=[{"type": "pubsub", "topic": incoming}],
                autoscaling={"minReplicas": 1, "maxReplicas": 3},
            )
            await op.wait(lambda: "j" in op.objects("ScaledObject"), "KEDA ScaledObject")
            assert "j" in op.objects("ServiceMonitor")
            assert "j" not in op.objects("HorizontalPodAutoscaler")
            await op.wait(lambda: "j" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready")

            # A worker pod stuck pulling its image: Degraded, with that reason.
            pod = {"metadata": {"name": "j-abc", "labels": labels_for("j", "worker")}}
            await op.send("POST", resource_path("Pod", NS), pod)
            waiting = {"reason": "ImagePullBackOff", "message": "pull access denied"}
            stuck = {"containerStatuses": [{"name": "worker", "state": {"waiting": waiting}}]}
            await op.send("PATCH", resource_path("Pod", NS, "j-abc", "status"), {"status": stuck})
            await op.wait(
                lambda: op.condition_is("j", "Degraded", "True", "ImagePullBackOff"), "Degraded"
            )
            assert op.objects("KlioJob")["j"]["status"]["phase"] == "Degraded"
            assert op.condition_is("j", "Ready", "False", "ImagePullBackOff")
            await op.send("DELETE", resource_path("Pod", NS, "j-abc"))
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready again")

            # Suspend: no workers, no autoscaler, the subscription stays (nothing is lost).
            await op.send("PATCH", resource_path("KlioJob", NS, "j"), {"spec": {"suspend": True}})
            await op.wait(
                lambda: op.objects("Deployment")["j"]["spec"].get("replicas") == 0, "scaled to 0"
            )
            await op.wait(lambda: "j" not in op.objects("ScaledObject"), "autoscaler removed")
            _, subs = await pubsub_names()
            assert input_subscription(PROJECT, NS, "j", incoming) in subs
            await op.play_deployment_controller("j")
            await op.wait(
                lambda: op.objects("KlioJob")["j"]["status"].get("phase") == "Suspended",
                "Suspended",
            )

        await op.run(scenario)


async def test_spec_change_rolls_workers_and_reports_the_new_generation() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("j", config={"threshold": 1})
            await op.wait(lambda: "j" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready")
            before = op.objects("Deployment")["j"]
            old_hash = before["spec"]["template"]["metadata"]["annotations"]

            await op.send(
                "PATCH", resource_path("KlioJob", NS, "j"), {"spec": {"config": {"threshold": 2}}}
            )
            await op.wait(
                lambda: (
                    op.objects("Deployment")["j"]["spec"]["template"]["metadata"]["annotations"]
                    != old_hash
                ),
                "new pod template",
            )
            after = op.objects("Deployment")["j"]
            assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place
            assert "threshold: 2" in op.objects("ConfigMap")["j-config"]["data"]["klio-job.yaml"]
            await op.wait(
                lambda: op.condition_is("j", "Progressing", "True", "RollingOut"), "rolling"
            )
            await op.play_deployment_controller("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready again")
            status = op.objects("KlioJob")["j"]["status"]
            assert status["observedGeneration"] == 2
            assert all(c["observedGeneration"] == 2 for c in status["conditions"])

        await op.run(scenario)


async def test_invalid_spec_and_pubsub_error_set_conditions_and_post_events() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            # Slipped past the schema: the runtime refuses this custom key's type.
            await op.apply_job("bad", config={"blocking": "maybe"})
            await op.wait(
                lambda: op.condition_is("bad", "Ready", "False", "InvalidSpec"), "invalid"
            )
            assert "job_config.blocking" in (op.condition("bad", "Ready") or {})["message"]
            # A project that cannot name a topic: refused by field, not retried as an outage,
            # and deleted at once (before: Pub/Sub refused its names on every retry, the
            # finalizer's deletes too, and the KlioJob could never go)
            await op.apply_job("badproject", pipelineOptions={"project": "a/topics/b"})
            await op.wait(
                lambda: op.condition_is("badproject", "Ready", "False", "InvalidSpec"), "refused"
            )
            message = (op.condition("badproject", "Ready") or {})["message"]
            assert "pipelineOptions.project" in message and "a/topics/b" in message
            assert "badproject" not in {d for d in op.objects("Deployment")}
            await op.delete_job("badproject")
            await op.wait(lambda: "badproject" not in op.objects("KlioJob"), "deleted")
            # A topic that does not exist: TopicsReady False, an Event, a metric, retries.
            await op.apply_job(
                "orphan",
                eventInputs=[{"type": "pubsub", "topic": f"projects/{PROJECT}/topics/nope"}],
            )
            await op.wait(
                lambda: op.condition_is("orphan", "TopicsReady", "False", "PubSubError"),
                "Pub/Sub error",
            )
            await op.wait(
                lambda: (
                    {"InvalidSpec", "PubSubError"}
                    <= {e.get("reason") for e in op.api.live_objects("v1/events")}
                ),
                "Events posted",
            )
            assert op.context.metrics.pubsub_errors._value.get() >= 1
            # The topic appears: the job heals by itself on its next retry.
            await op.context.pubsub.ensure_topic(f"projects/{PROJECT}/topics/nope")
            await op.wait(lambda: op.condition_is("orphan", "TopicsReady", "True"), "healed")

        await op.run(scenario)


async def _pull(subscription: str, deadline: float = 10) -> list[bytes]:
    """The messages waiting on the subscription (none if none came before the deadline)."""
    async with pubsub_inspector() as (_, subscriber):
        request = {"subscription": subscription, "max_messages": 10}
        try:
            response = await subscriber.pull(request=request, timeout=deadline)
        except gexc.DeadlineExceeded:
            return []
    return [received.message.data for received in response.received_messages]


async def test_an_upgrade_keeps_a_subscription_named_by_place_with_its_backlog() -> None:
    """A job made when input subscriptions were named by the input's place lists `…input-0`.
    After an upgrade its reconcile keeps that subscription (a new one would get only later
    messages: the backlog would be lost) and its workers go on reading it."""
    async with operator_under_test() as op:
        incoming = f"projects/{PROJECT}/topics/incoming"
        earlier = f"projects/{PROJECT}/subscriptions/klio.{NS}.j.input-0"
        await op.context.pubsub.ensure_topic(incoming)
        await op.context.pubsub.ensure_subscription(SubscriptionPlan(earlier, incoming, None))
        async with pubsub_inspector() as (publisher, _):
            await publisher.publish(topic=incoming, messages=[{"data": b"track-1"}])
        # what the earlier operator left: the job, its status naming the subscription
        await op.apply_job("j", eventInputs=[{"type": "pubsub", "topic": incoming}])
        status = {"status": {"subscriptions": [earlier]}}
        await op.send("PATCH", resource_path("KlioJob", NS, "j", "status"), status)

        async def scenario() -> None:
            await op.wait(lambda: op.condition_is("j", "TopicsReady", "True"), "wired")
            _, subscriptions = await pubsub_names()
            assert earlier in subscriptions
            assert input_subscription(PROJECT, NS, "j", incoming) not in subscriptions
            assert earlier in op.objects("KlioJob")["j"]["status"]["subscriptions"]
            data = op.objects("ConfigMap")[config_map_name("j")]["data"]
            config = yaml.safe_load(data[worker_contract.CONFIG_FILE])
            assert [i.get("subscription") for i in config["job_config"]["events"]["inputs"]] == [
                earlier
            ]
            # brought in line like any of its own: its failures go to the job's dead letters
            kept = await emulator_subscription(earlier)
            assert kept.dead_letter_policy.dead_letter_topic == dead_letter_topic(PROJECT, NS, "j")
            assert await _pull(earlier) == [b"track-1"]  # the backlog is still there

        await op.run(scenario)


async def test_a_subscription_the_spec_names_as_its_own_is_not_taken_over() -> None:
    # the team named the earlier operator's subscription as theirs for one input and left the
    # other input of the same topic to the operator: that one gets a subscription of its own
    async with operator_under_test() as op:
        incoming = f"projects/{PROJECT}/topics/incoming"
        earlier = f"projects/{PROJECT}/subscriptions/klio.{NS}.j.input-0"
        await op.context.pubsub.ensure_topic(incoming)
        await op.context.pubsub.ensure_subscription(SubscriptionPlan(earlier, incoming, None))
        await op.apply_job(
            "j",
            eventInputs=[
                {"type": "pubsub", "topic": incoming, "subscription": earlier},
                {"type": "pubsub", "topic": incoming},
            ],
        )
        status = {"status": {"subscriptions": [earlier]}}
        await op.send("PATCH", resource_path("KlioJob", NS, "j", "status"), status)

        async def scenario() -> None:
            await op.wait(lambda: op.condition_is("j", "TopicsReady", "True"), "wired")
            ours = input_subscription(PROJECT, NS, "j", incoming)
            assert ours in op.objects("KlioJob")["j"]["status"]["subscriptions"]
            assert earlier not in op.objects("KlioJob")["j"]["status"]["subscriptions"]
            _, subscriptions = await pubsub_names()
            assert {earlier, ours} <= subscriptions  # theirs is left alone
            kept = await emulator_subscription(earlier)
            assert not kept.dead_letter_policy.dead_letter_topic  # not made one of ours

        await op.run(scenario)


async def test_what_a_spec_made_is_removed_after_the_spec_went_invalid() -> None:
    async with operator_under_test() as op:
        incoming = f"projects/{PROJECT}/topics/incoming"
        input_sub = input_subscription(PROJECT, NS, "j", incoming)

        async def ours() -> set[str]:
            topics, subscriptions = await pubsub_names()
            return {n for n in topics | subscriptions if f"klio.{NS}.j." in n}

        async def scenario() -> None:
            await op.apply_job("j", eventInputs=[{"type": "pubsub", "topic": incoming}])
            await op.wait(lambda: op.condition_is("j", "TopicsReady", "True"), "wired")
            assert input_sub in await ours()
            path = resource_path("KlioJob", NS, "j")
            await op.send("PATCH", path, {"spec": {"config": {"blocking": "maybe"}}})
            await op.wait(lambda: op.condition_is("j", "Ready", "False", "InvalidSpec"), "invalid")
            # what the valid spec made is still listed (before, the invalid status wiped it)
            assert input_sub in op.objects("KlioJob")["j"]["status"]["subscriptions"]
            # fixed without its event input: that input's subscription goes
            await op.send("PATCH", path, {"spec": {"config": None, "eventInputs": None}})
            await op.wait(
                lambda: op.objects("KlioJob")["j"]["status"].get("observedGeneration") == 3
                and op.condition_is("j", "TopicsReady", "True"),
                "fixed",
            )
            assert input_sub not in await ours()
            # invalid again, then deleted: nothing of the job is left behind
            await op.send("PATCH", path, {"spec": {"config": {"blocking": "maybe"}}})
            await op.wait(lambda: op.condition_is("j", "Ready", "False", "InvalidSpec"), "invalid")
            await op.delete_job("j")
            await op.wait(lambda: not op.objects("KlioJob"), "job gone")
            assert await ours() == set()

        await op.context.pubsub.ensure_topic(incoming)
        await op.run(scenario)


BATCH = {"mode": "batch", "eventInputs": [{"type": "file", "location": "/data/ids.txt"}]}


def _reconciles(op: Any) -> float:
    return sum(
        op.context.metrics.reconciles.labels(result=result)._value.get()
        for result in ("success", "retry", "permanent_error", "error")
    )


async def test_a_batch_run_is_made_once_even_after_its_job_is_gone() -> None:
    async with operator_under_test() as op:
        path = resource_path("KlioJob", NS, "b")

        def status() -> dict[str, Any]:
            return op.objects("KlioJob")["b"].get("status") or {}

        async def relabel_and_reconcile(value: str) -> None:
            before = _reconciles(op)
            await op.send("PATCH", path, {"metadata": {"labels": {"team": value}}})
            await op.wait(lambda: _reconciles(op) > before, "a reconcile of the relabelled job")

        async def scenario() -> None:
            await op.apply_job("b", **BATCH)
            await op.wait(lambda: len(op.objects("Job")) == 1, "the batch Job")
            (run,) = op.objects("Job")
            await op.wait(lambda: status().get("run") == run, "the run in the status")
            done = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
            await op.send("PATCH", resource_path("Job", NS, run, "status"), {"status": done})
            await op.wait(lambda: status().get("phase") == "Succeeded", "Succeeded")
            # its ttlSecondsAfterFinished: the Job controller deletes the finished Job
            await op.send("DELETE", resource_path("Job", NS, run))
            await op.wait(lambda: not op.objects("Job"), "the Job gone")
            await relabel_and_reconcile("audio")
            # before: made again (the whole batch run again) and the status said Pending
            assert not op.objects("Job")
            assert status()["phase"] == "Succeeded" and status()["run"] == run
            assert op.condition_is("b", "Succeeded", "True", "Completed")

        await op.run(scenario)

        async def after_a_restart() -> None:
            await op.wait(lambda: _reconciles(op) > 0, "the resumed reconcile")
            assert not op.objects("Job") and status()["phase"] == "Succeeded"
            # a new image is a new run
            await op.send("PATCH", path, {"spec": {"image": "registry.example/klio/job:2"}})
            await op.wait(lambda: len(op.objects("Job")) == 1, "the new run's Job")
            (second,) = op.objects("Job")
            await op.wait(lambda: status().get("run") == second, "the new run in the status")
            # running (the Job controller's status), then stopped by hand before it finished:
            # not made again, and said so
            running = {"active": 1, "startTime": "2026-01-01T00:00:00Z"}
            await op.send("PATCH", resource_path("Job", NS, second, "status"), {"status": running})
            await op.wait(lambda: status().get("phase") == "Running", "running")
            await op.send("DELETE", resource_path("Job", NS, second))
            await op.wait(
                lambda: op.condition_is("b", "WorkersReady", "False", "RunDeleted"), "stopped"
            )
            assert status()["phase"] == "Failed"
            await relabel_and_reconcile("audio-2")
            assert not op.objects("Job")

        op.context.metrics.reconciles.clear()
        await op.run(after_a_restart)


async def test_a_batch_job_of_no_replicas_says_it_is_paused() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.apply_job("b", **BATCH, replicas=0)
            await op.wait(lambda: len(op.objects("Job")) == 1, "the batch Job")
            (run,) = op.objects("Job")
            assert op.objects("Job")[run]["spec"]["parallelism"] == 0
            # before: Pending, "no pod running yet" and "the batch job is running", for ever
            await op.wait(lambda: op.condition_is("b", "Ready", "True", "Suspended"), "paused")
            assert op.condition_is("b", "Progressing", "False", "Suspended")
            assert op.objects("KlioJob")["b"]["status"]["phase"] == "Suspended"

        await op.run(scenario)


async def test_a_batch_job_switched_to_streaming_and_back_runs_again() -> None:
    async with operator_under_test() as op:
        path = resource_path("KlioJob", NS, "b")

        def status() -> dict[str, Any]:
            return op.objects("KlioJob")["b"].get("status") or {}

        async def scenario() -> None:
            await op.apply_job("b", **BATCH)
            await op.wait(lambda: len(op.objects("Job")) == 1, "the batch Job")
            (run,) = op.objects("Job")
            await op.wait(lambda: status().get("run") == run, "the run in the status")
            await op.send("PATCH", path, {"spec": {"mode": "streaming"}})
            await op.wait(
                lambda: "b" in op.objects("Deployment") and not op.objects("Job"), "streaming"
            )
            # a streaming job has no run (before: the pruned Job stayed named in the status)
            await op.wait(lambda: "run" not in status(), "the run gone from the status")
            await op.send("PATCH", path, {"spec": {"mode": "batch"}})
            # before: the same Job name was taken for a run already made, never made again, and
            # the job said Failed, "RunDeleted", for a Job the operator pruned itself
            await op.wait(lambda: run in op.objects("Job"), "the batch run made again")
            await op.wait(lambda: status().get("run") == run, "the run in the status again")
            assert not op.condition_is("b", "WorkersReady", "False", "RunDeleted")

        await op.run(scenario)


async def test_a_child_the_api_server_refuses_is_reported_and_not_retried() -> None:
    async with operator_under_test() as op:
        refused: list[str] = []
        create = op.context.kube.create

        async def api_server_create(path: str, body: Any) -> Any:
            # The API server's own validation (not in the emulator): a requests above limits
            if body.get("kind") == "Deployment":
                resources = body["spec"]["template"]["spec"]["containers"][0].get("resources")
                if resources and resources.get("requests", {}).get("cpu") == "2":
                    refused.append(body["metadata"]["name"])
                    raise KubeApiError(422, "POST", path, 'Deployment.apps "r" is invalid: '
                                       "spec.template.spec.containers[0].resources.requests: "
                                       'Invalid value: "2": must be less than or equal to cpu '
                                       "limit of 1")
            return await create(path, body)

        op.context.kube.create = api_server_create  # type: ignore[method-assign]

        async def scenario() -> None:
            await op.apply_job("r", resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})
            await op.wait(lambda: op.condition_is("r", "Ready", "False", "InvalidSpec"), "refused")
            message = (op.condition("r", "Ready") or {})["message"]
            assert "must be less than or equal to cpu limit" in message
            assert op.objects("KlioJob")["r"]["status"]["phase"] == "Failed"
            # what was made already is listed, for the finalizer to remove
            assert op.objects("KlioJob")["r"]["status"]["topics"]
            reasons = lambda: {e.get("reason") for e in op.api.live_objects("v1/events")}  # noqa: E731
            await op.wait(lambda: "InvalidSpec" in reasons(), "the Event")
            permanent = op.context.metrics.reconciles.labels(result="permanent_error")
            await op.wait(lambda: permanent._value.get() >= 1, "given up until the spec changes")
            assert refused == ["r"]  # before: retried every 5 s forever, with no status at all
            fixed = {"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}}
            await op.send("PATCH", resource_path("KlioJob", NS, "r"), {"spec": fixed})
            await op.wait(lambda: "r" in op.objects("Deployment"), "the fixed job's workers")

        await op.run(scenario)


async def test_a_spec_change_made_while_the_job_is_reconciled_is_reconciled_too() -> None:
    async with operator_under_test() as op:
        patch = op.context.kube.merge_patch
        changed_meanwhile = asyncio.Event()

        def image() -> str:
            deployment = op.objects("Deployment").get("j") or {}
            return deployment["spec"]["template"]["spec"]["containers"][0]["image"]

        async def change_meanwhile(path: str, body: Any) -> Any:
            # the first Deployment update of generation 2: generation 3 comes before it ends
            if "/deployments/" in path and not changed_meanwhile.is_set():
                changed_meanwhile.set()
                job = resource_path("KlioJob", NS, "j")
                await op.send("PATCH", job, {"spec": {"image": "registry.example/klio/job:3"}})
            return await patch(path, body)

        async def scenario() -> None:
            await op.apply_job("j")
            await op.wait(lambda: "j" in op.objects("Deployment"), "Deployment")
            op.context.kube.merge_patch = change_meanwhile  # type: ignore[method-assign]
            await op.send(
                "PATCH", resource_path("KlioJob", NS, "j"), {"spec": {"threadPoolSize": 2}}
            )
            # before: kopf folded generation 3 into the cause being handled, whose reconcile
            # was done: the image stayed :1 until some other change came
            await op.wait(lambda: image() == "registry.example/klio/job:3", "the new image")
            await op.wait(
                lambda: op.objects("KlioJob")["j"]["status"]["observedGeneration"] == 3,
                "generation 3 reported",
            )

        await op.run(scenario)


async def test_cpu_autoscaling_without_a_cpu_request_is_warned_of_once() -> None:
    async with operator_under_test() as op:  # no KEDA: the workers scale on CPU

        def warnings() -> list[dict[str, Any]]:
            events = op.api.live_objects("v1/events")
            return [e for e in events if e.get("reason") == "AutoscalingLimited"]

        def worker_cpu() -> Any:
            deployment = op.objects("Deployment").get("j") or {}
            container = deployment.get("spec", {}).get("template", {}).get("spec", {})
            resources = (container.get("containers") or [{}])[0].get("resources") or {}
            return (resources.get("requests") or {}).get("cpu")

        async def scenario() -> None:
            await op.apply_job("j", autoscaling={"maxReplicas": 3})
            await op.wait(lambda: "j" in op.objects("HorizontalPodAutoscaler"), "HPA")
            await op.wait(lambda: len(warnings()) == 1, "an AutoscalingLimited Event")
            assert warnings()[0]["type"] == "Warning"
            assert "spec.resources.requests.cpu: not set" in warnings()[0]["message"]
            # A change that leaves the advice as it was does not repeat it; one that heeds it
            # removes it.
            await op.send(
                "PATCH", resource_path("KlioJob", NS, "j"), {"spec": {"threadPoolSize": 2}}
            )
            await op.wait(
                lambda: (
                    "thread_pool_size: 2"
                    in op.objects("ConfigMap")["j-config"]["data"]["klio-job.yaml"]
                ),
                "the new config",
            )
            cpu = {"spec": {"resources": {"requests": {"cpu": "500m"}}}}
            await op.send("PATCH", resource_path("KlioJob", NS, "j"), cpu)
            await op.wait(lambda: worker_cpu() == "500m", "the CPU request on the workers")
            assert len(warnings()) == 1

        await op.run(scenario)


async def test_workers_ready_before_the_first_status_is_not_lost() -> None:
    """A controller faster than the first reconcile: readiness still reaches the status."""
    async with operator_under_test() as op:

        async def fast_controller() -> None:
            await op.wait(lambda: "quick" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("quick")  # maybe before any status exists

        async def scenario() -> None:
            controller = asyncio.create_task(fast_controller())
            await op.apply_job("quick")
            await controller
            await op.wait(lambda: op.condition_is("quick", "Ready", "True"), "Ready")

        await op.run(scenario)


async def test_dropping_a_parent_removes_its_subscription() -> None:
    async with operator_under_test() as op:
        from_a = f"projects/{PROJECT}/subscriptions/klio.{NS}.child.from.a"

        async def subscriptions() -> set[str]:
            return (await pubsub_names())[1]

        async def scenario() -> None:
            await op.apply_job("a")
            await op.apply_job("child", parents=["a"])
            await op.wait(lambda: op.condition_is("child", "TopicsReady", "True"), "wired")
            assert from_a in await subscriptions()
            await op.send(
                "PATCH", resource_path("KlioJob", NS, "child"), {"spec": {"parents": None}}
            )
            await op.wait(
                lambda: op.objects("KlioJob")["child"]["status"].get("observedGeneration") == 2,
                "reconciled",
            )
            assert from_a not in await subscriptions()
            assert op.objects("KlioJob")["child"]["status"]["subscriptions"] == [
                f"projects/{PROJECT}/subscriptions/klio.{NS}.child.dead-letter"
            ]

        await op.run(scenario)


async def test_crash_looping_and_unschedulable_pods_degrade_with_their_reason() -> None:
    async with operator_under_test() as op:
        crash = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}
        stuck = {
            "CrashLoopBackOff": {"containerStatuses": [{"name": "worker", "state": crash}]},
            "Unschedulable": {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes: insufficient memory",
                    }
                ]
            },
        }

        async def scenario() -> None:
            await op.apply_job("w")
            await op.wait(lambda: "w" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("w")
            await op.wait(lambda: op.condition_is("w", "Ready", "True"), "Ready")
            pod_lists = op.api.tally["LIST pods"]  # kopf's own list when its watch started
            for reason, pod_status in stuck.items():
                pod = {"metadata": {"name": "w-pod", "labels": labels_for("w", "worker")}}
                await op.send("POST", resource_path("Pod", NS), pod)
                await op.send(
                    "PATCH", resource_path("Pod", NS, "w-pod", "status"), {"status": pod_status}
                )
                await op.wait(lambda r=reason: op.condition_is("w", "Degraded", "True", r), reason)
                assert "w-pod" in (op.condition("w", "Degraded") or {})["message"]
                assert op.objects("KlioJob")["w"]["status"]["phase"] == "Degraded"
                await op.send("DELETE", resource_path("Pod", NS, "w-pod"))
                await op.wait(lambda: op.condition_is("w", "Degraded", "False"), "recovered")
            # Every pod event was judged from the operator's pod index: no LIST per event.
            assert op.api.tally["LIST pods"] == pod_lists

        await op.run(scenario)


async def test_a_removed_field_disappears_from_the_live_children() -> None:
    async with operator_under_test() as op:

        def pod_spec() -> dict[str, object]:
            return dict(op.objects("Deployment")["sa"]["spec"]["template"]["spec"])

        async def scenario() -> None:
            await op.apply_job("sa", serviceAccountName="reader", imagePullPolicy="Always")
            await op.wait(lambda: "sa" in op.objects("Deployment"), "Deployment")
            assert pod_spec()["serviceAccountName"] == "reader"
            body = {"spec": {"serviceAccountName": None, "imagePullPolicy": None}}
            await op.send("PATCH", resource_path("KlioJob", NS, "sa"), body)
            await op.wait(lambda: "serviceAccountName" not in pod_spec(), "field removed")
            container = op.objects("Deployment")["sa"]["spec"]["template"]["spec"]["containers"]
            assert "imagePullPolicy" not in container[0]
            await op.wait(
                lambda: op.objects("KlioJob")["sa"]["status"].get("observedGeneration") == 2,
                "reconciled",
            )

        await op.run(scenario)


async def test_a_parents_new_output_reaches_its_childs_config() -> None:
    async with operator_under_test() as op:
        op.context.retry_delay = 120  # only the prompt nudge can pass the wait below

        def child_config() -> str:
            return str(op.objects("ConfigMap").get("kid-config", {}).get("data", {}))

        async def scenario() -> None:
            await op.apply_job("dad", dataOutputs=[{"location": "gs://bkt/v1"}])
            await op.apply_job("kid", parents=["dad"])
            await op.wait(lambda: "gs://bkt/v1" in child_config(), "child reads v1")
            body = {"spec": {"dataOutputs": [{"location": "gs://bkt/v2"}]}}
            await op.send("PATCH", resource_path("KlioJob", NS, "dad"), body)
            await op.wait(lambda: "gs://bkt/v2" in child_config(), "child reads v2", timeout=10)

        await op.run(scenario)


async def test_a_worker_only_change_makes_no_pubsub_calls_but_a_parent_change_does() -> None:
    async with operator_under_test() as op:
        applied: list[str] = []
        real_apply = op.context.pubsub.apply

        async def counting_apply(plan: PubSubPlan) -> None:
            applied.append(plan.topics[0].name)
            await real_apply(plan)

        op.context.pubsub.apply = counting_apply  # type: ignore[method-assign]

        def generation_seen(job: str, generation: int) -> bool:
            status = op.objects("KlioJob").get(job, {}).get("status") or {}
            return bool(status.get("observedGeneration") == generation)

        async def scenario() -> None:
            await op.apply_job("p1")
            await op.apply_job("c1", parents=["p1"])
            await op.wait(lambda: op.condition_is("c1", "TopicsReady", "True"), "wired")
            before = applied.count(f"projects/{PROJECT}/topics/klio.{NS}.c1.output")
            body = {"spec": {"replicas": 3}}
            await op.send("PATCH", resource_path("KlioJob", NS, "c1"), body)
            await op.wait(lambda: generation_seen("c1", 2), "c1 reconciled")
            assert op.objects("Deployment")["c1"]["spec"]["replicas"] == 3
            assert applied.count(f"projects/{PROJECT}/topics/klio.{NS}.c1.output") == before
            # The parent's Pub/Sub project changes: the child must subscribe anew.
            body = {"spec": {"pipelineOptions": {"project": "test-project"}}}
            await op.send("PATCH", resource_path("KlioJob", NS, "p1"), body)
            await op.wait(
                lambda: (
                    "projects/test-project/topics/klio.team.p1.output"
                    in op.objects("ConfigMap")["c1-config"]["data"]["klio-job.yaml"]
                ),
                "child follows its parent's new topic",
            )
            await op.wait(lambda: op.condition_is("c1", "TopicsReady", "True"), "rewired")
            subscription = await emulator_subscription(
                f"projects/{PROJECT}/subscriptions/klio.{NS}.c1.from.p1"
            )
            assert subscription.topic == "projects/test-project/topics/klio.team.p1.output"

        await op.run(scenario)


async def test_pubsub_resources_and_children_deleted_by_hand_are_made_again() -> None:
    async with operator_under_test() as op:
        op.context.drift_interval = 0.3
        own_topic = f"projects/{PROJECT}/topics/klio.{NS}.a.output"
        from_a = f"projects/{PROJECT}/subscriptions/klio.{NS}.child.from.a"

        async def scenario() -> None:
            await op.apply_job("a")
            await op.apply_job("child", parents=["a"])
            await op.wait(lambda: op.condition_is("child", "TopicsReady", "True"), "wired")
            topics, subs = await pubsub_names()
            assert own_topic in topics and from_a in subs
            # Someone deletes the parent's topic by hand: the child's subscription is left
            # detached (its topic reads _deleted-topic_) until both are made again.
            await op.context.pubsub.delete_topic(own_topic)

            async def reattached() -> bool:
                topics, _ = await pubsub_names()
                if own_topic not in topics:
                    return False
                try:
                    sub = await emulator_subscription(from_a)
                except gexc.NotFound:  # between the replacement's delete and create
                    return False
                return bool(sub.topic == own_topic)

            async def subscribed() -> bool:
                return from_a in (await pubsub_names())[1]

            for deleted, repaired in ((None, reattached), (from_a, subscribed)):
                if deleted:  # then the child's subscription itself
                    await op.context.pubsub.delete_subscription(deleted)
                deadline = asyncio.get_running_loop().time() + 15
                while not await repaired():
                    assert asyncio.get_running_loop().time() < deadline, f"{repaired.__name__}"
                    await asyncio.sleep(0.1)

            def reported() -> bool:
                events = op.api.live_objects("v1/events")
                return "DriftRepaired" in {e.get("reason") for e in events}

            await op.wait(reported, "a DriftRepaired Event")
            drift = op.context.metrics.drift_repairs
            assert drift.labels(resource="pubsub")._value.get() >= 3  # a and child, then child
            assert op.condition_is("child", "TopicsReady", "True")

            # Child objects deleted by hand come back too (the next pass finds them missing).
            objects_repaired = drift.labels(resource="object")._value.get()
            for kind in ("ConfigMap", "Service", "Deployment"):
                (child_object,) = [n for n in op.objects(kind) if n.startswith("child")]
                await op.send("DELETE", resource_path(kind, NS, child_object))
                await op.wait(
                    lambda k=kind, n=child_object: n in op.objects(k),
                    f"{kind} {child_object} made again",
                )
            # Counted when the drift pass (or the Deployment's event) finds it missing. One deleted
            # while the reconcile of the repair before is still applying every child comes back
            # with that reconcile, uncounted, so the count only has to grow here.
            # (test_a_deployment_deleted_by_hand_comes_back_at_once counts exactly.)
            assert drift.labels(resource="object")._value.get() > objects_repaired

        await op.run(scenario)


async def test_children_changed_by_hand_are_set_back_and_others_left_alone() -> None:
    async with operator_under_test() as op:
        op.context.drift_interval = 0.3
        repairs = op.context.metrics.drift_repairs.labels(resource="object")

        async def passes(count: int) -> None:
            seen = op.api.tally["LIST configmaps"]
            await op.wait(lambda: op.api.tally["LIST configmaps"] >= seen + count, "drift passes")

        async def scenario() -> None:
            await op.apply_job("j", replicas=2)
            await op.wait(lambda: "j" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready")
            await passes(3)  # children as the operator left them (and a status) are no drift
            assert repairs._value.get() == 0
            deployment = resource_path("Deployment", NS, "j")
            # Fields others own: `kubectl rollout restart`'s annotation is not set back.
            restarted = {"kubectl.kubernetes.io/restartedAt": "2026-12-07T00:00:00Z"}
            patch = {"spec": {"template": {"metadata": {"annotations": restarted}}}}
            await op.send("PATCH", deployment, patch)
            await passes(3)
            assert repairs._value.get() == 0
            # Fields the operator sets: a hand scale and another image, and a ConfigMap's data.
            (config_map,) = [n for n in op.objects("ConfigMap") if n.startswith("j")]
            config = op.objects("ConfigMap")[config_map]["data"]
            containers = op.objects("Deployment")["j"]["spec"]["template"]["spec"]["containers"]
            edited = [{**containers[0], "image": "registry.example/other:2"}, *containers[1:]]
            patch = {"spec": {"replicas": 5, "template": {"spec": {"containers": edited}}}}
            await op.send("PATCH", deployment, patch)
            await op.send(
                "PATCH",
                resource_path("ConfigMap", NS, config_map),
                {"data": {key: "edited" for key in config}},
            )

            def set_back() -> bool:
                live = op.objects("Deployment")["j"]
                return (
                    live["spec"]["replicas"] == 2
                    and live["spec"]["template"]["spec"]["containers"] == containers
                    and op.objects("ConfigMap")[config_map]["data"] == config
                )

            await op.wait(set_back, "the Deployment and ConfigMap set back")
            annotations = op.objects("Deployment")["j"]["spec"]["template"]["metadata"]
            assert annotations["annotations"]["kubectl.kubernetes.io/restartedAt"]  # kept

            def reported() -> list[str]:
                return [
                    e.get("message", "")
                    for e in op.api.live_objects("v1/events")
                    if e.get("reason") == "DriftRepaired"
                ]

            await op.wait(lambda: bool(reported()), "a DriftRepaired Event")
            message = " ".join(reported())
            assert "(changed)" in message and "(deleted)" not in message
            assert repairs._value.get() >= 1
            repaired = repairs._value.get()
            await passes(3)  # set back as the operator applies them: no drift any more
            assert repairs._value.get() == repaired

        await op.run(scenario)


async def test_a_call_the_rbac_refuses_is_reported_and_retried_until_granted() -> None:
    async with operator_under_test() as op:

        async def scenario() -> None:
            op.api.forbidden.add(("create", "services"))  # e.g. a Role older than the operator
            await op.apply_job("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "False", "Forbidden"), "reported")
            assert op.condition_is("j", "Degraded", "True", "Forbidden")
            assert op.objects("KlioJob")["j"]["status"]["phase"] == "Degraded"
            message = (op.condition("j", "Degraded") or {})["message"]
            assert "services" in message and "grant it in its Role" in message
            await op.wait(  # kopf posts Events from a queue of its own: they come a bit later
                lambda: "Forbidden" in {e.get("reason") for e in op.api.live_objects("v1/events")},
                "a Forbidden Event",
            )

            def refusals() -> int:
                refused = ("create", "services")
                return sum(1 for c in op.api.calls if (c.verb, c.resource) == refused)

            await op.wait(lambda: refusals() >= 4, "the reconcile retried while refused")
            forbidden_events = [
                e for e in op.api.live_objects("v1/events") if e.get("reason") == "Forbidden"
            ]
            assert len(forbidden_events) == 1, "one Event for the refusal, not one per retry"
            op.api.forbidden.clear()  # the Role is fixed: no change to the job is needed
            await op.wait(lambda: "j" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready once granted")
            assert op.condition_is("j", "Degraded", "False")

        await op.run(scenario)


async def test_objects_of_the_jobs_child_names_made_by_others_are_left_alone_and_said() -> None:
    async with operator_under_test() as op:
        theirs = {"name": "api-config", "namespace": NS, "labels": {"app": "api"}}
        service = {"selector": {"app": "api"}, "ports": [{"port": 80}]}

        async def scenario() -> None:
            # another app's objects, named as the KlioJob "api"'s ConfigMap and metrics Service
            data = {"settings.ini": "important=1"}
            body = {"metadata": theirs, "data": data}
            await op.send("POST", resource_path("ConfigMap", NS), body)
            other = {"metadata": {"name": "api-metrics", "namespace": NS}, "spec": service}
            await op.send("POST", resource_path("Service", NS), other)
            await op.apply_job("api")
            await op.wait(lambda: op.condition_is("api", "Ready", "False", "NameTaken"), "said")
            assert op.condition_is("api", "Degraded", "True", "NameTaken")
            message = (op.condition("api", "Ready") or {})["message"]
            assert "already exists and is not this KlioJob's" in message
            await op.wait(
                lambda: "NameTaken" in {e.get("reason") for e in op.api.live_objects("v1/events")},
                "a NameTaken Event",
            )
            # before: both were patched and owned by the job (and its deletion deleted them)
            config_map = op.objects("ConfigMap")["api-config"]
            assert config_map["data"] == data
            assert not config_map["metadata"].get("ownerReferences")
            assert op.objects("Service")["api-metrics"]["spec"]["selector"] == {"app": "api"}
            assert "api" not in op.objects("Deployment")  # no pods on someone else's config
            # the other app moves away: the job is made, with no change to it
            await op.send("DELETE", resource_path("ConfigMap", NS, "api-config"))
            await op.send("DELETE", resource_path("Service", NS, "api-metrics"))
            await op.wait(lambda: "api" in op.objects("Deployment"), "the job made once free")
            await op.play_deployment_controller("api")
            await op.wait(lambda: op.condition_is("api", "Ready", "True"), "Ready")
            assert op.condition_is("api", "Degraded", "False")

        await op.run(scenario)


async def test_a_deployment_deleted_by_hand_comes_back_at_once() -> None:
    async with operator_under_test() as op:
        assert op.context.drift_interval >= 300  # no periodic pass in this test: the event does it

        async def scenario() -> None:
            await op.apply_job("j")
            await op.wait(lambda: "j" in op.objects("Deployment"), "Deployment")
            await op.play_deployment_controller("j")
            await op.wait(lambda: op.condition_is("j", "Ready", "True"), "Ready")
            first_uid = op.objects("Deployment")["j"]["metadata"]["uid"]
            await op.send("DELETE", resource_path("Deployment", NS, "j"))
            await op.wait(
                lambda: (
                    op.objects("Deployment").get("j", {}).get("metadata", {}).get("uid")
                    not in (None, first_uid)
                ),
                "the Deployment made again",
            )
            assert op.context.metrics.drift_repairs.labels(resource="object")._value.get() == 1
            # Deleting the job itself is not drift: nothing is made again.
            await op.delete_job("j")
            await op.wait(lambda: "j" not in op.objects("KlioJob"), "job gone")
            await op.wait(lambda: "j" not in op.objects("Deployment"), "Deployment gone")
            assert op.context.metrics.drift_repairs.labels(resource="object")._value.get() == 1

        await op.run(scenario)


async def test_only_the_operators_own_workloads_and_pods_are_watched() -> None:
    # Filtered by the API server: other apps' pods are never streamed to the operator.
    workloads = {"deployments", "jobs", "pods"}
    async with operator_under_test() as op:

        async def scenario() -> None:
            await op.wait(lambda: workloads | {"kliojobs"} <= op.api.watched, "the watches")

        await op.run(scenario)
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
        assert {plural: op.api.watch_selectors[plural] for plural in workloads} == {
            plural: {selector} for plural in workloads
        }
        assert op.api.watch_selectors["kliojobs"] == {None}
