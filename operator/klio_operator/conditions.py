"""Pure status: what the operator observed → a KlioJob status in Kubernetes' conventions.

Conditions follow metav1.Condition: `type`, `status` ("True"/"False"/"Unknown"), `reason`
(CamelCase), `message`, `observedGeneration`, `lastTransitionTime` (kept while the status
does not change, so `kubectl wait` and Argo CD see real transitions).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from klio_operator.dag import ParentResolution, format_cycle

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
SUCCEEDED = "Succeeded"
PARENTS_RESOLVED = "ParentsResolved"
TOPICS_READY = "TopicsReady"
WORKERS_READY = "WorkersReady"

# Container waiting reasons that will not fix themselves: the job is degraded, say why.
STUCK_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
)


@dataclass(frozen=True)
class ConditionState:
    """A condition without its bookkeeping (generation, transition time)."""

    type: str
    status: Status
    reason: str
    message: str = ""


@dataclass(frozen=True)
class WorkloadObservation:
    """The Deployment or Job running the workers (None until created) and its pods."""

    kind: Literal["Deployment", "Job"] | None = None
    obj: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    desired: int = 0
    suspended: bool = False
    engine: str | None = None
    """For runner dataflow or flink: the engine the Job (a launcher) submits the pipeline to."""


@dataclass(frozen=True)
class Observation:
    """Everything status is computed from."""

    generation: int
    parents: ConditionState
    topics: ConditionState
    workload: WorkloadObservation = field(default_factory=WorkloadObservation)
    selector: str | None = None
    topic_names: Sequence[str] = ()
    subscription_names: Sequence[str] = ()
    parent_names: Sequence[str] = ()
    batch: bool = False
    blocked: ConditionState | None = None  # a spec error or a cycle: nothing is reconciled
    run: str | None = None
    """The name of the run's Job, for a Job workload (see `KlioJobStatus.run`)."""


def parents_condition(resolution: ParentResolution) -> ConditionState:
    if resolution.cycle is not None:
        return ConditionState(
            PARENTS_RESOLVED,
            "False",
            "CycleDetected",
            f"parents form a cycle: {format_cycle(resolution.cycle)}",
        )
    if resolution.missing:
        return ConditionState(
            PARENTS_RESOLVED,
            "False",
            "ParentNotFound",
            f"no KlioJob named {', '.join(resolution.missing)} in this namespace",
        )
    if not resolution.found:
        return ConditionState(PARENTS_RESOLVED, "True", "NoParents", "a root job")
    return ConditionState(
        PARENTS_RESOLVED, "True", "ParentsFound", f"parents: {', '.join(resolution.found)}"
    )


def topics_ready(count: int) -> ConditionState:
    return ConditionState(TOPICS_READY, "True", "TopicsReady", f"{count} Pub/Sub resources ready")


def topics_failed(error: str) -> ConditionState:
    return ConditionState(TOPICS_READY, "False", "PubSubError", error)


def topics_waiting(why: str) -> ConditionState:
    return ConditionState(TOPICS_READY, "Unknown", "WaitingForParents", why)


def invalid_spec(errors: Sequence[str]) -> ConditionState:
    return ConditionState(READY, "False", "InvalidSpec", "; ".join(errors))


def stuck_pod_parts(name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`stuck_pod` reads of a pod, as plain dicts: its name, its containers'
    waiting states and its scheduling conditions (what a cache of worker pods keeps)."""
    kept: dict[str, Any] = {}
    for statuses in ("initContainerStatuses", "containerStatuses"):
        waiting = [
            {"state": {"waiting": dict(container["state"]["waiting"])}}
            for container in status.get(statuses) or []
            if (container.get("state") or {}).get("waiting")
        ]
        if waiting:
            kept[statuses] = waiting
    scheduling = [
        dict(condition)
        for condition in status.get("conditions") or []
        if condition.get("type") == "PodScheduled"
    ]
    if scheduling:
        kept["conditions"] = scheduling
    return {"metadata": {"name": name}, "status": kept}


def stuck_pod(pods: Sequence[Mapping[str, Any]]) -> ConditionState | None:
    """The first pod that will not start by itself: image pull, crash loop, unschedulable."""
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        containers = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        for container in containers:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                detail = waiting.get("message") or waiting["reason"]
                return ConditionState(DEGRADED, "True", waiting["reason"], f"pod {name}: {detail}")
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                detail = condition.get("message") or "no node fits"
                return ConditionState(DEGRADED, "True", "Unschedulable", f"pod {name}: {detail}")
    return None


@dataclass(frozen=True)
class WorkerState:
    ready: int
    replicas: int
    conditions: tuple[ConditionState, ...]
    finished: Literal["Succeeded", "Failed"] | None = None


def _deployment_state(w: WorkloadObservation) -> WorkerState:
    obj = w.obj or {}
    status = obj.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    current = int(status.get("observedGeneration") or 0) >= int(
        obj.get("metadata", {}).get("generation") or 0
    )
    desired = w.desired
    if w.suspended:
        workers = ConditionState(WORKERS_READY, "True", "Suspended", "suspended: no workers")
    elif ready >= desired and current:
        workers = ConditionState(WORKERS_READY, "True", "WorkersReady", f"{ready}/{desired} ready")
    else:
        workers = ConditionState(
            WORKERS_READY, "False", "WorkersStarting", f"{ready}/{desired} ready"
        )
    rolling = not current or updated < desired or replicas > desired or ready < desired
    if w.suspended and replicas > 0:
        progressing = ConditionState(PROGRESSING, "True", "ScalingDown", f"{replicas} running")
    elif rolling and not w.suspended:
        progressing = ConditionState(
            PROGRESSING, "True", "RollingOut", f"{updated}/{desired} updated, {ready} ready"
        )
    else:
        progressing = ConditionState(PROGRESSING, "False", "Stable", "all workers up to date")
    stalled = _progress_deadline_exceeded(status) if current and not w.suspended else None
    if stalled is not None:
        # The Deployment gave up waiting for its new workers (they run but never get ready,
        # say): not progressing any more, and degraded until a new spec or a fix.
        return WorkerState(
            ready,
            replicas,
            (
                workers,
                ConditionState(PROGRESSING, "False", "ProgressDeadlineExceeded", stalled),
                ConditionState(DEGRADED, "True", "ProgressDeadlineExceeded", stalled),
            ),
        )
    return WorkerState(ready, replicas, (workers, progressing))


def _progress_deadline_exceeded(status: Mapping[str, Any]) -> str | None:
    """What the Deployment says when its rollout did not finish within its progress deadline
    (its `Progressing` condition), else None."""
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("status") == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            said = condition.get("message")
            return f"the rollout did not finish in time{f': {said}' if said else ''}"
    return None


def _job_state(w: WorkloadObservation) -> WorkerState:
    obj = w.obj or {}
    status = obj.get("status") or {}
    active = int(status.get("active") or 0)
    succeeded = int(status.get("succeeded") or 0)
    job_conditions = {c.get("type"): c for c in status.get("conditions") or []}
    failed = job_conditions.get("Failed", {}).get("status") == "True"
    complete = job_conditions.get("Complete", {}).get("status") == "True"
    if complete and w.engine is not None:
        # A launcher's work is to submit: the pipeline now runs (or ran) on the engine, which
        # reports its own progress; the KlioJob has not succeeded for that.
        submitted = f"the pipeline was submitted to {w.engine}"
        return WorkerState(
            0,
            0,
            (
                ConditionState(WORKERS_READY, "True", "Submitted", submitted),
                ConditionState(PROGRESSING, "False", "Submitted", submitted),
            ),
        )
    if complete:
        return WorkerState(
            0,
            0,
            (
                ConditionState(WORKERS_READY, "True", "Completed", f"{succeeded} pods succeeded"),
                ConditionState(PROGRESSING, "False", "Completed", "the batch job finished"),
                ConditionState(SUCCEEDED, "True", "Completed", "the batch job finished"),
            ),
            finished="Succeeded",
        )
    if failed:
        message = job_conditions["Failed"].get("message") or (
            f"the launcher could not submit the pipeline to {w.engine}"
            if w.engine is not None
            else "the batch job failed"
        )
        no_success = (ConditionState(SUCCEEDED, "False", "JobFailed", message),)
        succeeded_state = () if w.engine else no_success
        return WorkerState(
            0,
            0,
            (
                ConditionState(WORKERS_READY, "False", "JobFailed", message),
                ConditionState(PROGRESSING, "False", "JobFailed", message),
                *succeeded_state,
                ConditionState(DEGRADED, "True", "JobFailed", message),
            ),
            finished="Failed",
        )
    if w.suspended:
        workers = ConditionState(WORKERS_READY, "True", "Suspended", "the batch job is suspended")
    elif active > 0:
        workers = ConditionState(WORKERS_READY, "True", "Running", f"{active} pods running")
    else:
        workers = ConditionState(WORKERS_READY, "False", "WorkersStarting", "no pod running yet")
    if w.suspended:
        paused = "suspended: its pods are not run until it is resumed"
        held: tuple[ConditionState, ...] = (
            ConditionState(PROGRESSING, "False", "Suspended", paused),
        )
        if w.engine is None:
            held += (ConditionState(SUCCEEDED, "Unknown", "Suspended", "not finished"),)
        return WorkerState(active, active, (workers, *held))
    if w.engine is not None:
        submitting = f"submitting the pipeline to {w.engine}"
        return WorkerState(
            active, active, (workers, ConditionState(PROGRESSING, "True", "Submitting", submitting))
        )
    return WorkerState(
        active,
        active,
        (
            workers,
            ConditionState(PROGRESSING, "True", "Running", "the batch job is running"),
            ConditionState(SUCCEEDED, "Unknown", "Running", "not finished"),
        ),
    )


def worker_state(w: WorkloadObservation) -> WorkerState:
    if w.obj is None:
        return WorkerState(
            0,
            0,
            (
                ConditionState(WORKERS_READY, "False", "WorkloadMissing", "not created yet"),
                ConditionState(PROGRESSING, "True", "Creating", "creating the workers"),
            ),
        )
    state = _deployment_state(w) if w.kind == "Deployment" else _job_state(w)
    if stuck := stuck_pod(w.pods):
        return WorkerState(state.ready, state.replicas, (*state.conditions, stuck), state.finished)
    return state


ENDED_REASONS = ("Completed", "Submitted", "JobFailed")
"""WorkersReady reasons of a run that ended (or, for a launcher, did its work)."""


def ended_run(previous: Mapping[str, Any], run: str, engine: str | None) -> WorkerState:
    """The state of a run whose Job is gone: as the run ended, or stopped when its Job was
    deleted before it finished. It is not made again (see `KlioJobStatus.run`)."""
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    if (before.get(WORKERS_READY) or {}).get("reason") in ENDED_REASONS:
        kept = tuple(
            state_of(c)
            for t in (WORKERS_READY, PROGRESSING, SUCCEEDED, DEGRADED)
            if (c := before.get(t)) is not None
        )
        phase = previous.get("phase")
        return WorkerState(0, 0, kept, phase if phase in ("Succeeded", "Failed") else None)
    message = (
        f"the Job {run} was deleted before it finished; it is not run again until a spec"
        " change makes a new run"
    )
    stopped: tuple[ConditionState, ...] = (
        ConditionState(WORKERS_READY, "False", "RunDeleted", message),
        ConditionState(PROGRESSING, "False", "RunDeleted", message),
    )
    if engine is None:
        stopped += (ConditionState(SUCCEEDED, "False", "RunDeleted", message),)
    return WorkerState(0, 0, stopped, "Failed")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    states: Sequence[ConditionState],
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """States → wire conditions; lastTransitionTime kept while a condition's status holds."""
    before = {c.get("type"): c for c in previous}
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = []
    for state in states:
        old = before.get(state.type)
        kept = old is not None and old.get("status") == state.status
        result.append(
            {
                "type": state.type,
                "status": state.status,
                "reason": state.reason,
                "message": state.message,
                "observedGeneration": generation,
                "lastTransitionTime": old.get("lastTransitionTime") if kept and old else stamp,
            }
        )
    return result


def replace_conditions(
    previous: Sequence[Mapping[str, Any]],
    states: Sequence[ConditionState],
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """``previous`` with ``states`` in place of the conditions of their types (a new type
    appended), every other condition kept as it was: a status that changes in part only."""
    merged = {c["type"]: c for c in merge_conditions(previous, states, generation, now)}
    kept = [merged.pop(c["type"]) if c.get("type") in merged else dict(c) for c in previous]
    return [*kept, *merged.values()]


def _phase(states: Mapping[str, ConditionState], finished: str | None, suspended: bool) -> str:
    if finished is not None:
        return finished
    if states[READY].reason in ("InvalidSpec", "CycleDetected"):
        return "Failed"
    if states[DEGRADED].status == "True":
        return "Degraded"
    if suspended and states[READY].status == "True":
        return "Suspended"
    if states[READY].status == "True":
        return "Running"
    return "Pending"


def build_status(
    observation: Observation,
    previous: Mapping[str, Any] | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The whole `status` of a KlioJob (camelCase, as stored)."""
    previous = previous or {}
    o = observation
    desired = o.workload.desired
    if o.blocked is not None:
        # Nothing is applied or pruned for a blocked job: the workers of its last good spec
        # keep running, so their counts stay as last seen (none for a job never reconciled).
        desired = int(previous.get("desiredWorkers") or 0)
        workers = WorkerState(
            int(previous.get("readyWorkers") or 0),
            int(previous.get("replicas") or 0),
            (
                ConditionState(WORKERS_READY, "Unknown", o.blocked.reason, o.blocked.message),
                ConditionState(PROGRESSING, "False", o.blocked.reason, o.blocked.message),
            ),
        )
    elif o.run is not None and o.workload.obj is None and previous.get("run") == o.run:
        workers = ended_run(previous, o.run, o.workload.engine)
    else:
        workers = worker_state(o.workload)
    states: dict[str, ConditionState] = {s.type: s for s in workers.conditions}
    states[PARENTS_RESOLVED] = o.parents
    states[TOPICS_READY] = o.topics
    states.setdefault(DEGRADED, ConditionState(DEGRADED, "False", "AsExpected", ""))
    if o.batch and o.workload.engine is None:  # a launcher's job runs on the engine
        states.setdefault(SUCCEEDED, ConditionState(SUCCEEDED, "Unknown", "NotStarted", ""))
    blockers = [
        o.blocked,
        *(s for s in (o.parents, o.topics, states[WORKERS_READY]) if s.status != "True"),
        states[DEGRADED] if states[DEGRADED].status == "True" else None,
    ]
    blocker = next((b for b in blockers if b is not None), None)
    if blocker is None and o.workload.suspended:
        suspended = "suspended: no workers run (its subscriptions keep the backlog)"
        states[READY] = ConditionState(READY, "True", "Suspended", suspended)
    elif blocker is None:
        states[READY] = ConditionState(READY, "True", "Ready", "the job is running")
    else:
        states[READY] = ConditionState(READY, "False", blocker.reason, blocker.message)
    order = [READY, PROGRESSING, DEGRADED, SUCCEEDED, PARENTS_RESOLVED, TOPICS_READY, WORKERS_READY]
    ordered = [states[t] for t in order if t in states]
    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "phase": _phase(states, workers.finished, o.workload.suspended),
        "conditions": merge_conditions(
            previous.get("conditions") or [], ordered, o.generation, now
        ),
        "readyWorkers": workers.ready,
        "desiredWorkers": desired,
        "replicas": workers.replicas,
        "topics": list(o.topic_names),
        "subscriptions": list(o.subscription_names),
        "parents": list(o.parent_names),
    }
    # A blocked job's workers run on: their selector stays (the scale subresource reads it).
    selector = o.selector if o.selector is not None else (
        previous.get("selector") if o.blocked else None
    )
    if selector is not None:
        status["selector"] = selector
    # a blocked job (no workload observed) keeps its run: fixed, it must not make it again
    run = o.run if o.run is not None else previous.get("run") if o.blocked else None
    if run is not None:
        status["run"] = run
    return status


def state_of(condition: Mapping[str, Any]) -> ConditionState:
    """A condition as stored in a status, as the state it was made from."""
    return ConditionState(
        str(condition.get("type")),
        condition.get("status", "Unknown"),
        str(condition.get("reason") or ""),
        str(condition.get("message") or ""),
    )


def condition_of(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None
