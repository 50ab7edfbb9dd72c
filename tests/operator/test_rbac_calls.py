"""The chart's RBAC (operator/klio_operator/rbac.py) allows every API call the running operator
makes: kopf's own and the Klio operator's, as the API emulator recorded them over a lifecycle."""

from __future__ import annotations

import pytest
from klio_operator import rbac
from klio_operator.kube import USER_AGENT, resource_path
from klio_operator.planning import labels_for

from tests.kube.emulator import ApiCall
from tests.operator.harness import NS, PROJECT, operator_under_test

pytestmark = pytest.mark.usefixtures("pubsub_clean")

OPERATOR_AGENTS = ("kopf/", USER_AGENT.split("/")[0] + "/")


def allowed(call: ApiCall) -> bool:
    return any(
        rule.api_group == call.group and call.resource in rule.resources and call.verb in rule.verbs
        for rule in rbac.RULES
    )


async def test_every_call_of_a_whole_lifecycle_is_allowed_by_the_rbac_rules() -> None:
    async with operator_under_test(optional_groups=("monitoring.coreos.com", "keda.sh")) as op:
        uploads = f"projects/{PROJECT}/topics/uploads"
        await op.context.pubsub.ensure_topic(uploads)

        async def scenario() -> None:
            await op.apply_job("child", parents=["root"])  # waits for its parent
            await op.apply_job(
                "root",
                eventInputs=[{"type": "pubsub", "topic": uploads}],
                dataOutputs=[{"location": "gs://bkt/root"}],
                autoscaling={"minReplicas": 1, "maxReplicas": 3},
            )
            await op.apply_job("loop-a", parents=["loop-b"])  # a cycle: a condition and an Event
            await op.apply_job("loop-b", parents=["loop-a"])
            await op.wait(lambda: op.condition_is("loop-b", "ParentsResolved", "False"), "cycle")
            await op.apply_job("once", mode="batch", parents=["root"])
            submit = {"region": "europe-west1", "temp_location": "gs://bkt/tmp"}
            await op.apply_job("flow", runner="dataflow", parents=["root"], pipelineOptions=submit)
            for job in ("root", "child"):
                await op.wait(lambda job=job: job in op.objects("Deployment"), f"{job} workers")
                await op.play_deployment_controller(job)
            await op.wait(lambda: op.condition_is("child", "Ready", "True"), "child Ready")
            # A spec change (rolled in place), a stuck pod, a suspend, then everything deleted.
            patch = {"spec": {"serviceAccountName": "reader", "threadPoolSize": 2}}
            await op.send("PATCH", resource_path("KlioJob", NS, "child"), patch)
            await op.wait(
                lambda: (
                    op.objects("Deployment")["child"]["spec"]["template"]["spec"].get(
                        "serviceAccountName"
                    )
                    == "reader"
                ),
                "child updated",
            )
            await op.play_deployment_controller("child")
            await op.wait(lambda: op.condition_is("child", "Ready", "True"), "child rolled")
            pod = {"metadata": {"name": "child-x", "labels": labels_for("child", "worker")}}
            await op.send("POST", resource_path("Pod", NS), pod)
            stuck = {
                "containerStatuses": [
                    {
                        "name": "worker",
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    }
                ]
            }
            await op.send("PATCH", resource_path("Pod", NS, "child-x", "status"), {"status": stuck})
            await op.wait(lambda: op.condition_is("child", "Degraded", "True"), "child Degraded")
            suspend = {"spec": {"suspend": True}}
            await op.send("PATCH", resource_path("KlioJob", NS, "root"), suspend)
            await op.wait(
                lambda: op.objects("Deployment")["root"]["spec"].get("replicas") == 0, "suspended"
            )
            for job in ("loop-a", "loop-b", "flow", "once", "child", "root"):
                await op.delete_job(job)
            await op.wait(lambda: not op.objects("KlioJob"), "every KlioJob gone")

        await op.run(scenario)
        calls = [c for c in op.api.calls if c.agent.startswith(OPERATOR_AGENTS)]

    agents = {c.agent.split("/")[0] for c in calls}
    assert agents == {"kopf", "klio-operator"}, agents  # both clients were seen and told apart
    refused = sorted({(c.group, c.resource, c.verb) for c in calls if not allowed(c)})
    assert not refused, f"calls the chart's RBAC would refuse: {refused}"
    # The operator wrote what only it writes: children and the KlioJob status.
    made = {(c.resource, c.verb) for c in calls}
    assert {
        ("deployments", "create"),
        ("jobs", "create"),
        ("kliojobs/status", "patch"),
        ("events", "create"),
    } <= made
