"""Status and conditions from observations (pure)."""

from __future__ import annotations

import datetime
from typing import Any

from klio_operator import conditions as cond
from klio_operator.dag import ParentResolution

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)
OK_PARENTS = cond.parents_condition(ParentResolution(("a",), (), None))
OK_TOPICS = cond.topics_ready(3)


def deployment(ready: int, desired: int = 2, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": generation,
            "replicas": desired,
            "readyReplicas": ready,
            "updatedReplicas": desired,
        },
    }


def observe(obj: Any = None, pods: Any = (), desired: int = 2, **kw: Any) -> cond.Observation:
    return cond.Observation(
        generation=7,
        parents=kw.pop("parents", OK_PARENTS),
        topics=kw.pop("topics", OK_TOPICS),
        workload=cond.WorkloadObservation(
            kind=kw.pop("kind", "Deployment"),
            obj=obj,
            pods=pods,
            desired=desired,
            suspended=kw.pop("suspended", False),
            engine=kw.pop("engine", None),
        ),
        selector=kw.pop("selector", "app=x"),
        **kw,
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_when_parents_topics_and_workers_are() -> None:
    status = cond.build_status(observe(deployment(ready=2)), None, T0)
    c = conditions(status)
    assert c["Ready"]["status"] == "True" and status["phase"] == "Running"
    assert c["WorkersReady"]["status"] == "True" and c["Progressing"]["status"] == "False"
    assert c["Degraded"]["status"] == "False"
    assert all(x["observedGeneration"] == 7 and x["reason"] for x in c.values())
    assert (status["readyWorkers"], status["desiredWorkers"], status["selector"]) == (2, 2, "app=x")


def test_starting_workers_are_progressing_not_ready() -> None:
    status = cond.build_status(observe(deployment(ready=1)), None, T0)
    c = conditions(status)
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "WorkersStarting"
    assert c["Progressing"]["status"] == "True" and status["phase"] == "Pending"


def test_last_transition_time_is_kept_while_status_holds() -> None:
    first = cond.build_status(observe(deployment(ready=2)), None, T0)
    second = cond.build_status(observe(deployment(ready=2)), first, T1)
    assert conditions(second)["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    third = cond.build_status(observe(deployment(ready=0)), second, T1)
    assert conditions(third)["Ready"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def pod(waiting: str | None = None, unschedulable: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if waiting:
        status["containerStatuses"] = [
            {"name": "worker", "state": {"waiting": {"reason": waiting, "message": "boom"}}}
        ]
    if unschedulable:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes have enough memory",
            }
        ]
    return {"metadata": {"name": "w-1"}, "status": status}


def test_stuck_pods_degrade_the_job_with_their_reason() -> None:
    for reason in ("ImagePullBackOff", "CrashLoopBackOff"):
        status = cond.build_status(observe(deployment(ready=1), [pod(reason)]), None, T0)
        c = conditions(status)
        assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == reason
        assert "w-1" in c["Degraded"]["message"] and status["phase"] == "Degraded"
    status = cond.build_status(observe(deployment(ready=0), [pod(unschedulable=True)]), None, T0)
    degraded = conditions(status)["Degraded"]
    assert degraded["reason"] == "Unschedulable" and "memory" in degraded["message"]


def test_the_parts_a_pod_index_keeps_judge_a_pod_as_the_whole_pod_does() -> None:
    running = {"name": "sidecar", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
    scheduled = {"type": "PodScheduled", "status": "True"}
    ready = {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
    for whole in (pod("ImagePullBackOff"), pod("CrashLoopBackOff"), pod(unschedulable=True)):
        whole["status"].setdefault("containerStatuses", []).append(running)
        whole["status"].setdefault("conditions", []).extend([scheduled, ready])
        whole["status"]["initContainerStatuses"] = [running]
        parts = cond.stuck_pod_parts("w-1", whole["status"])
        assert cond.stuck_pod([parts]) == cond.stuck_pod([whole]) is not None
        assert running not in parts["status"].get("containerStatuses", [])
        assert "initContainerStatuses" not in parts["status"]
        assert ready not in parts["status"].get("conditions", [])
    healthy = {"containerStatuses": [running], "conditions": [scheduled]}
    assert cond.stuck_pod([cond.stuck_pod_parts("w-2", healthy)]) is None


def test_missing_parent_and_pubsub_error_block_ready() -> None:
    missing = cond.parents_condition(ParentResolution((), ("a",), None))
    status = cond.build_status(observe(deployment(ready=2), parents=missing), None, T0)
    assert conditions(status)["Ready"]["reason"] == "ParentNotFound"
    failed = cond.topics_failed("create topic x: 403")
    status = cond.build_status(observe(deployment(ready=2), topics=failed), None, T0)
    assert conditions(status)["Ready"]["reason"] == "PubSubError"
    assert conditions(status)["TopicsReady"]["message"] == "create topic x: 403"


def test_cycle_and_invalid_spec_fail_the_job() -> None:
    cycle = cond.parents_condition(ParentResolution((), (), ("a", "b", "a")))
    assert cycle.message == "parents form a cycle: a → b → a"
    status = cond.build_status(observe(parents=cycle, blocked=cycle), None, T0)
    assert status["phase"] == "Failed" and conditions(status)["Ready"]["reason"] == "CycleDetected"
    invalid = cond.invalid_spec(["spec.replicas: must be ≥ 0"])
    status = cond.build_status(observe(blocked=invalid), None, T0)
    assert conditions(status)["Ready"]["message"] == "spec.replicas: must be ≥ 0"


def test_a_blocked_job_keeps_the_worker_counts_of_its_last_good_spec() -> None:
    # Nothing is applied or pruned for it: its running workers go on running.
    running = cond.build_status(observe(deployment(ready=2, desired=3), desired=3), None, T0)
    invalid = cond.invalid_spec(["spec.replicas: must be ≥ 0"])
    # (a blocked job's workload is not observed: no selector of its own)
    status = cond.build_status(observe(blocked=invalid, desired=0, selector=None), running, T1)
    assert (status["readyWorkers"], status["replicas"], status["desiredWorkers"]) == (2, 3, 3)
    assert status["phase"] == "Failed"
    # so does their selector: the scale subresource (kubectl scale, an HPA) reads it
    assert status["selector"] == "app=x"
    # A job never reconciled has none.
    fresh = cond.build_status(observe(blocked=invalid, desired=0), None, T0)
    assert (fresh["readyWorkers"], fresh["replicas"], fresh["desiredWorkers"]) == (0, 0, 0)


def test_suspended_job_is_ready_with_zero_workers() -> None:
    status = cond.build_status(
        observe(deployment(ready=0, desired=0), desired=0, suspended=True), None, T0
    )
    assert status["phase"] == "Suspended"
    assert conditions(status)["WorkersReady"]["reason"] == "Suspended"
    # said so, not "the job is running" (kubectl get shows Ready's reason and message)
    ready = conditions(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")
    assert "no workers run" in ready["message"]
    batch = {"metadata": {}, "spec": {"suspend": True}, "status": {}}
    held = conditions(cond.build_status(
        observe(batch, kind="Job", desired=0, suspended=True, batch=True), None, T0
    ))
    assert (held["Progressing"]["status"], held["Progressing"]["reason"]) == ("False", "Suspended")
    assert held["Succeeded"]["reason"] == "Suspended"


def test_a_rollout_past_its_progress_deadline_degrades_the_job() -> None:
    # new workers that run but never get ready: the Deployment gives up after its deadline
    stuck = deployment(ready=2, generation=2)
    stuck["status"].update(updatedReplicas=1, conditions=[{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "j-7d9" has timed out progressing.',
    }])
    status = cond.build_status(observe(stuck), None, T0)
    c = conditions(status)
    assert (c["Progressing"]["status"], c["Progressing"]["reason"]) == (
        "False", "ProgressDeadlineExceeded")
    assert c["Degraded"]["status"] == "True" and "has timed out" in c["Degraded"]["message"]
    assert status["phase"] == "Degraded"


def test_batch_job_succeeds_or_fails() -> None:
    done = {
        "metadata": {},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    status = cond.build_status(observe(done, kind="Job", batch=True, desired=1), None, T0)
    assert status["phase"] == "Succeeded" and conditions(status)["Succeeded"]["status"] == "True"
    failed = {
        "metadata": {},
        "status": {
            "failed": 4,
            "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}],
        },
    }
    status = cond.build_status(observe(failed, kind="Job", batch=True, desired=1), None, T0)
    c = conditions(status)
    assert status["phase"] == "Failed" and c["Succeeded"]["status"] == "False"
    assert c["Degraded"]["reason"] == "JobFailed"
    running = {"metadata": {}, "status": {"active": 1}}
    status = cond.build_status(observe(running, kind="Job", batch=True, desired=1), None, T0)
    assert conditions(status)["Succeeded"]["status"] == "Unknown" and status["phase"] == "Running"


def test_a_launcher_that_submitted_is_ready_not_succeeded() -> None:
    """runner dataflow/flink: the Job only submits; the pipeline runs on the engine."""
    submitting = {"metadata": {}, "status": {"active": 1}}
    launcher = {"kind": "Job", "desired": 1, "engine": "Dataflow", "batch": True}
    status = cond.build_status(observe(submitting, **launcher), None, T0)
    c = conditions(status)
    assert c["Progressing"]["reason"] == "Submitting" and "Succeeded" not in c
    done = {
        "metadata": {},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    status = cond.build_status(observe(done, **launcher), None, T1)
    c = conditions(status)
    assert status["phase"] == "Running" and c["Ready"]["status"] == "True"
    assert c["WorkersReady"]["message"] == "the pipeline was submitted to Dataflow"
    assert c["Progressing"]["reason"] == "Submitted" and "Succeeded" not in c
    failed = {"metadata": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    status = cond.build_status(observe(failed, kind="Job", desired=1, engine="Flink"), None, T0)
    c = conditions(status)
    assert status["phase"] == "Failed" and "Succeeded" not in c
    assert c["Degraded"]["message"] == "the launcher could not submit the pipeline to Flink"


def test_rollout_of_a_new_generation_is_progressing() -> None:
    rolling = deployment(ready=2, generation=2)
    rolling["status"]["observedGeneration"] = 1
    status = cond.build_status(observe(rolling), None, T0)
    assert conditions(status)["Progressing"]["reason"] == "RollingOut"
