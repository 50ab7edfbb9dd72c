"""kopf handlers: thin glue of parse → plan → apply → status. Logic lives in pure modules.

`register(registry)` puts every handler on a kopf registry; importing this module registers
them on kopf's default registry, so `kopf run -m klio_operator` works too.
"""

from __future__ import annotations

import datetime
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

import kopf

from klio_operator import conditions as cond
from klio_operator import dag, drift
from klio_operator.drift import AppliedObjects
from klio_operator.kube import (
    KubeApi,
    KubeApiError,
    NotOwnedError,
    applied_digest,
    apply,
    object_key,
    prune,
    resource_path,
)
from klio_operator.metrics import OperatorMetrics
from klio_operator.models import (
    GROUP,
    PLURAL,
    VERSION,
    DataOutput,
    KlioJobSpec,
    KlioJobStatus,
    SpecError,
    parse_spec,
)
from klio_operator.planning import (
    ENGINES,
    LABEL_JOB,
    MANAGED_BY,
    ClusterFacts,
    Owner,
    ParentInfo,
    Plan,
    PlanningError,
    PubSubPlan,
    child_name_problem,
    desired_workers,
    event_topics_of,
    plan_job,
    project_of,
    topic_read_by,
)
from klio_operator.pubsub_admin import AsyncPubSubAdmin, PubSubAdminError
from klio_operator.together import all_of

KLIOJOBS = (GROUP, VERSION, PLURAL)
PARENTS_CHANGED = "klio.io/parents-changed"
"""Annotation touched on children when a parent appears or goes, so they re-reconcile."""
DRIFT = "klio.io/drift"
"""Annotation noting what drift repair found deleted or changed (see `nudge_drifted`), so the
job re-reconciles and its Event can say what was applied again."""
BLOCKED_REASONS = ("InvalidSpec", "CycleDetected")
WAITING_REASONS = ("ParentNotFound", "ParentInvalid", "CycleDetected")
"""ParentsResolved reasons of a job that waits for its parents (see `JobSummary.waiting`)."""
LABEL_COMPONENT = "app.kubernetes.io/component"
WORKER_COMPONENTS = ("worker", "launcher")
WORKER_PODS = f"{LABEL_COMPONENT} in ({','.join(WORKER_COMPONENTS)})"
STATUS_CLEARED = {field.alias or name: None for name, field in KlioJobStatus.model_fields.items()}
"""Every status field as null: a merge patch of a whole status removes those it leaves out (the
run of a job switched to streaming), which a merge patch does only when told so."""


@dataclass
class OperatorContext:
    """What the handlers need, passed through kopf's memo (`memo.klio`)."""

    kube: KubeApi
    pubsub: AsyncPubSubAdmin
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    facts: ClusterFacts = field(default_factory=ClusterFacts)
    retry_delay: float = 30.0
    """Seconds before retrying a job whose parent is missing or whose Pub/Sub call failed."""
    pubsub_applied: dict[tuple[str, str], PubSubPlan] = field(default_factory=dict)
    """The Pub/Sub plan this process last applied successfully for each job."""
    parsed: dict[tuple[str, str], ParsedJob] = field(default_factory=dict)
    """Each job's spec, parsed once per generation (the index and the handlers share it)."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """The newest body of each job that the watch delivered or we wrote (an informer's cache):
    a status refresh starts from it instead of reading the job, and writes only over its
    generation and status, so a stale copy costs a refused write and a read, never a wrong
    status."""
    workload_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Events seen of each job's workload or pods: a reconcile that saw this count change
    while it ran looks at the workload again (their refresh may have found no status yet)."""
    children_applied: dict[tuple[str, str], AppliedObjects] = field(default_factory=dict)
    """The child objects (kind, name) this process last applied for each job, each with the
    digest of its applied fields as stored (see `drift`)."""
    reconciled: dict[tuple[str, str], int] = field(default_factory=dict)
    """The generation each job's reconcile last started on in this process."""
    reconciling: set[tuple[str, str]] = field(default_factory=set)
    """The jobs being reconciled now: a drift pass leaves their half-applied children alone."""
    drift_interval: float = 300.0
    """Seconds between checks that the Pub/Sub resources and child objects made are still
    there (0: never)."""
    drift_reported: dict[tuple[str, str], str] = field(default_factory=dict)
    """The drift note (annotation) of each job whose repair this process reported in an Event."""
    subscription_topics: dict[str, str] = field(default_factory=dict)
    """The topic of each input subscription a job listed under an earlier naming, as Pub/Sub
    said (a subscription never changes topic): asked once per process."""
    advice_reported: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """The plan's advice each job was last warned of, so a re-reconcile does not repeat it."""
    worker_pods: Mapping[tuple[str, str], Iterable[Mapping[str, Any]]] | None = None
    """kopf's index of worker pods by (namespace, job) (`index_worker_pod`), set at startup:
    a pod event then costs no LIST of the job's pods. None: they are listed."""


class ParsedJob(NamedTuple):
    """A job's spec as of one (uid, generation): what the index and the handlers need of it."""

    stamp: tuple[str, int]
    summary: JobSummary
    spec: KlioJobSpec | None
    """None: the spec is invalid (the reconcile reports why)."""


class JobSummary(NamedTuple):
    """A KlioJob as its children see it (kept in a kopf index, no LIST calls)."""

    name: str
    parents: tuple[str, ...]
    project: str
    data_outputs: tuple[DataOutput, ...]
    event_topics: tuple[str, ...] = ()
    waiting: bool = False
    """Its status says a parent is missing or invalid, or its parents form a cycle: a parent
    that appears (or reconciles, once fixed or the cycle is broken) must nudge it."""
    invalid: bool = False
    """Its spec cannot be reconciled (it does not parse, its name is too long for its
    children's, or its status says its current generation was refused): its children wait for
    it, and make nothing of its."""


def _context(memo: Any) -> OperatorContext:
    context = memo.get("klio") if isinstance(memo, Mapping) else getattr(memo, "klio", None)
    if not isinstance(context, OperatorContext):
        raise kopf.PermanentError("the operator was started without its startup handler")
    return context


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


# -- the index of jobs per namespace ----------------------------------------------------------


JobKey = tuple[str, str, str]
"""The index's keys: `("job", namespace, name)` → the job; `("child", namespace, parent)` →
every job naming that parent. Direct lookups: a reconcile never scans the namespace."""


async def index_job(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> dict[JobKey, JobSummary]:
    context = _context(memo)
    key = (namespace or "", name)
    if meta.get("deletionTimestamp"):
        context.parsed.pop(key, None)
        context.latest.pop(key, None)
        return {}  # a job being deleted no longer counts as a parent
    context.latest[key] = dict(body)  # the top level only: the watch's dicts are not reused
    summary = parsed_job(context, name, spec, meta).summary
    ready = cond.condition_of(status, cond.READY)
    if (
        ready is not None
        and ready.get("reason") in BLOCKED_REASONS
        and status.get("observedGeneration") == meta.get("generation")
    ):
        # refused as it is now (a plan the API or planning refuses, a cycle): see `invalid`
        summary = summary._replace(invalid=True)
    parents = cond.condition_of(status, cond.PARENTS_RESOLVED)
    if parents is not None and parents.get("reason") in WAITING_REASONS:
        summary = summary._replace(waiting=True)
    keys: dict[JobKey, JobSummary] = {("job", namespace or "", name): summary}
    for parent in summary.parents:
        keys["child", namespace or "", parent] = summary
    return keys


async def index_worker_pod(
    namespace: str | None, name: str, labels: Mapping[str, str], status: Mapping[str, Any], **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """A worker or launcher pod under its job, as far as the job's status reads it."""
    job = labels.get(LABEL_JOB)
    if not job or labels.get(LABEL_COMPONENT) not in WORKER_COMPONENTS:
        return {}
    return {(namespace or "", job): cond.stuck_pod_parts(name, status)}


def _indexed_job(index: Any, namespace: str, name: str) -> JobSummary | None:
    for summary in index.get(("job", namespace, name), ()):
        return summary
    return None


def _children_of(index: Any, namespace: str, parent: str) -> list[JobSummary]:
    return list(index.get(("child", namespace, parent), ()))


def _ancestors(index: Any, namespace: str, parents: Iterable[str]) -> dict[str, JobSummary]:
    """The indexed jobs reachable from `parents` through parent links (what cycle detection
    and the parents' own parents need); absent ones are left out."""
    found: dict[str, JobSummary] = {}
    todo = list(parents)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        summary = _indexed_job(index, namespace, name)
        if summary is not None:
            found[name] = summary
            todo.extend(summary.parents)
    return found


def parsed_job(
    context: OperatorContext, name: str, spec: Mapping[str, Any], meta: Mapping[str, Any]
) -> ParsedJob:
    """The job's parsed spec and summary, made once per generation: the spec changes only with
    the generation, so status writes and kopf's own annotations (most events) reuse them."""
    key = (str(meta.get("namespace") or ""), name)
    stamp = (str(meta.get("uid")), int(meta.get("generation") or 0))
    cached = context.parsed.get(key)
    if cached is not None and cached.stamp == stamp and stamp[1]:
        return cached
    try:
        parsed: KlioJobSpec | None = parse_spec(dict(spec))
    except SpecError:
        parsed = None
    known = ParsedJob(stamp, summarize(name, spec, context.facts, parsed), parsed)
    context.parsed[key] = known
    return known


def summarize(
    name: str,
    spec: Mapping[str, Any],
    facts: ClusterFacts,
    parsed: KlioJobSpec | None = None,
) -> JobSummary:
    """What children need to know of a job (also for a job whose spec is invalid); `parsed`:
    the spec already parsed, if it is valid."""
    if parsed is None:
        try:
            parsed = parse_spec(dict(spec))
        except SpecError:
            raw_parents = spec.get("parents") or []
            parents = tuple(p for p in raw_parents if isinstance(p, str))
            return JobSummary(name, parents, facts.default_project, (), invalid=True)
    project = project_of(parsed, facts)
    return JobSummary(
        name,
        tuple(parsed.parents),
        project,
        tuple(parsed.data_outputs),
        event_topics_of(parsed, project),
        invalid=child_name_problem(name, parsed) is not None,
    )


def parent_info(
    namespace: str, parent: JobSummary, jobs: Mapping[str, JobSummary], facts: ClusterFacts
) -> ParentInfo:
    """A resolved parent as planning needs it, with the topic it reads (for bottom-up)."""
    first = None
    if parent.parents:
        grandparent = jobs.get(parent.parents[0])
        project = grandparent.project if grandparent else facts.default_project
        first = (parent.parents[0], project)
    return ParentInfo(
        parent.name,
        parent.project,
        parent.data_outputs,
        topic_read_by(namespace, first, parent.event_topics),
    )


async def _fetch_summary(context: OperatorContext, namespace: str, name: str) -> JobSummary | None:
    body = await context.kube.get(resource_path("KlioJob", namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    return summarize(name, body.get("spec") or {}, context.facts)


# -- observing ---------------------------------------------------------------------------------


async def observe_workload(
    context: OperatorContext, namespace: str, name: str, kind: str | None, workload_name: str | None
) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
    """The job's Deployment / Job (the newest one if the name is unknown) and its pods."""
    obj: Mapping[str, Any] | None = None
    if kind and workload_name:
        obj = await context.kube.get(resource_path(kind, namespace, workload_name))
    elif kind:
        selector = f"{LABEL_JOB}={name},{WORKER_PODS}"
        found = await context.kube.list(resource_path(kind, namespace), selector)
        found.sort(key=lambda o: int(o["metadata"].get("resourceVersion") or 0))
        obj = found[-1] if found else None
    return obj, await worker_pods(context, namespace, name)


async def worker_pods(
    context: OperatorContext, namespace: str, name: str
) -> list[Mapping[str, Any]]:
    """The job's worker (or launcher) pods: from the pod index once the operator runs (the
    watch's view, as any informer-fed controller reads), else listed from the API."""
    if context.worker_pods is not None:
        return list(context.worker_pods.get((namespace, name), ()))
    selector = f"{LABEL_JOB}={name},{WORKER_PODS}"
    return list(await context.kube.list(resource_path("Pod", namespace), selector))


def _workload_kind(spec: Any) -> str:
    return "Job" if spec.runner != "direct" or spec.mode == "batch" else "Deployment"


def _workload(
    spec: Any, kind: str | None, obj: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> cond.WorkloadObservation:
    """What status needs to know of the job's Deployment or Job (a launcher's: its engine)."""
    return cond.WorkloadObservation(
        kind=kind,  # type: ignore[arg-type]
        obj=obj,
        pods=pods,
        desired=_desired(spec, obj),
        suspended=spec.suspend or _paused_batch(spec),
        engine=ENGINES.get(spec.runner),
    )


def _paused_batch(spec: Any) -> bool:
    """A batch job of 0 replicas: its Job's parallelism 0 runs no pod until it is scaled up."""
    return _workload_kind(spec) == "Job" and spec.runner == "direct" and spec.replicas == 0


def _desired(spec: Any, obj: Mapping[str, Any] | None) -> int:
    if _workload_kind(spec) == "Job":  # a batch job is not autoscaled
        return 0 if spec.suspend else (1 if spec.runner != "direct" else spec.replicas)
    if spec.autoscaling is not None and not spec.suspend and obj is not None:
        return int((obj.get("spec") or {}).get("replicas") or 0)  # the autoscaler decides
    return desired_workers(spec)


async def _write_status(
    context: OperatorContext,
    namespace: str,
    name: str,
    status: dict[str, Any],
    over: Mapping[str, Any] | None = None,
) -> bool:
    """Patch the status; with `over` (the job it was computed from), only if the job's
    generation and status are still those (else False). Unlike a resourceVersion
    precondition, kopf's own annotation writes in between do not make it fail."""
    path = resource_path("KlioJob", namespace, name, "status")
    try:
        if over is None:
            written = await context.kube.merge_patch(path, {"status": {**STATUS_CLEARED, **status}})
        else:
            written = await context.kube.json_patch(
                path,
                [
                    {
                        "op": "test",
                        "path": "/metadata/generation",
                        "value": over["metadata"].get("generation"),
                    },
                    {"op": "test", "path": "/status", "value": over.get("status")},
                    {"op": "replace", "path": "/status", "value": status},
                ],
            )
    except KubeApiError as exc:
        if exc.status in (409, 422) and over is not None:
            return False
        if exc.status != 404:  # the job is gone: nothing to report on
            raise
        return True
    # Newer than the watch may have delivered yet: a refresh right after starts from it.
    context.latest[(namespace, name)] = written
    context.metrics.set_phase(namespace, name, status.get("phase"))
    return True


def _blocked_status(
    body: Mapping[str, Any],
    parents: cond.ConditionState,
    blocked: cond.ConditionState,
    made: PubSubPlan | None = None,
) -> dict[str, Any]:
    """The status of a job that cannot be reconciled; `made`: the Pub/Sub resources this
    spec made already (else an earlier spec's are still there)."""
    previous = body.get("status") or {}
    observation = cond.Observation(
        generation=int(body["metadata"].get("generation") or 0),
        parents=parents,
        topics=cond.topics_waiting(blocked.message),
        # The deletion finalizer, and the stale check once the spec is fixed, remove what was
        # made by these names.
        topic_names=(
            [t.name for t in made.topics] if made else previous.get("topics") or []
        ),
        subscription_names=(
            [s.name for s in made.subscriptions] if made else previous.get("subscriptions") or []
        ),
        blocked=blocked,
    )
    return cond.build_status(observation, previous, _now())


# -- reconcile ---------------------------------------------------------------------------------


async def _measured(context: OperatorContext, work: Callable[[], Awaitable[None]]) -> None:
    started = time.perf_counter()
    result = "success"
    try:
        await work()
    except kopf.TemporaryError:
        result = "retry"
        raise
    except kopf.PermanentError:
        result = "permanent_error"
        raise
    except Exception:
        result = "error"
        raise
    finally:
        context.metrics.reconciles.labels(result=result).inc()
        context.metrics.reconcile_duration.observe(time.perf_counter() - started)


async def reconcile(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    memo: Any,
    **kwargs: Any,
) -> None:
    klio_jobs = kwargs["klio_jobs"]  # the index, named after its handler id
    context = _context(memo)
    key = (namespace or "", name)

    async def reconcile_or_report_refusal() -> None:
        try:
            await _reconcile(context, body, key[0], name, uid, klio_jobs)
        except KubeApiError as exc:
            if exc.status != 403:
                raise
            await _forbidden(context, body, exc)

    context.reconciling.add(key)
    try:
        await _measured(context, reconcile_or_report_refusal)
    finally:
        context.reconciling.discard(key)


async def _reconcile(
    context: OperatorContext,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    klio_jobs: kopf.Index[str, JobSummary],
) -> None:
    generation = int(body.metadata.get("generation") or 0)
    context.reconciled[(namespace, name)] = generation
    events_seen = context.workload_events[(namespace, name)]
    try:
        # The index parsed this generation already; an invalid spec is parsed again for why.
        spec = parsed_job(context, name, body.spec, body.metadata).spec or parse_spec(
            dict(body.spec)
        )
    except SpecError as exc:
        blocked = cond.invalid_spec(exc.errors)
        parents_state = cond.ConditionState(
            cond.PARENTS_RESOLVED, "Unknown", "InvalidSpec", "the spec is invalid"
        )
        await _report_refusal(context, body, parents_state, blocked, klio_jobs)
        raise kopf.PermanentError(f"invalid spec: {blocked.message}") from exc

    jobs = _ancestors(klio_jobs, namespace, spec.parents)
    for parent in spec.parents:
        if parent not in jobs:  # the index may lag behind the API: ask before giving up
            found = await _fetch_summary(context, namespace, parent)
            if found is not None:
                jobs[parent] = found
                jobs.update(_ancestors(klio_jobs, namespace, found.parents))
    graph = {job.name: list(job.parents) for job in jobs.values()}
    resolution = dag.resolve_parents(name, spec.parents, graph)
    parents_state = cond.parents_condition(resolution)
    if resolution.cycle is not None:
        await _report_refusal(context, body, parents_state, parents_state, klio_jobs)
        raise kopf.PermanentError(parents_state.message)
    if resolution.missing:
        await _wait_for_parents(context, body, parents_state)
        # Not a retry (it would sleep out its delay whatever happens): a parent that appears
        # nudges the jobs whose status says they wait for it (`nudge_waiting_children`). One
        # that appeared while this status was being written may not have seen it: look again.
        for parent in resolution.missing:
            if await _fetch_summary(context, namespace, parent) is not None:
                raise kopf.TemporaryError(f"parent {parent} just appeared", delay=0)
        return
    if invalid := [parent for parent in spec.parents if jobs[parent].invalid]:
        # Nothing made for it (before: its output topic, made here, was left behind when both
        # went): its fix, or any change, nudges this job (`on_spec_changed`).
        message = (
            f"parent {', '.join(invalid)} cannot be reconciled (see its InvalidSpec condition):"
            " this job waits for it"
        )
        state = cond.ConditionState(cond.PARENTS_RESOLVED, "False", "ParentInvalid", message)
        await _wait_for_parents(context, body, state)
        return

    parents = [parent_info(namespace, jobs[p], jobs, context.facts) for p in spec.parents]
    owner = Owner(name, namespace, uid)
    try:
        plan = plan_job(owner, spec, parents, context.facts)
        project = project_of(spec, context.facts)
        if kept := await _kept_input_subscriptions(context, body, project, plan):
            plan = plan_job(owner, spec, parents, context.facts, kept_subscriptions=kept)
    except PlanningError as exc:
        blocked = cond.invalid_spec(exc.errors)
        await _report_refusal(context, body, parents_state, blocked, klio_jobs)
        raise kopf.PermanentError(blocked.message) from exc

    topics_state = await _ensure_pubsub(context, body, plan)
    first = not body.get("status")  # nothing exists yet, nothing stale to remove
    children = await _children_to_apply(context, body, plan)
    # The workload last: its pods start with their ConfigMap in place, and do not start at all
    # when another child's name is taken. The rest refer to each other by name only.
    workloads = [child for child in children if object_key(child) == plan.workload]
    children = [child for child in children if object_key(child) != plan.workload] + workloads
    try:
        applied = []
        for batch in (children[: len(children) - len(workloads)], workloads):
            applied += await all_of(
                apply(context.kube, child, likely_absent=first) for child in batch
            )
    except NotOwnedError as exc:
        await _degraded_until_fixed(context, body, "NameTaken", str(exc), exc)
    except KubeApiError as exc:
        if exc.status not in (400, 422):  # not a refusal of what the spec asks for
            raise
        # Retrying cannot help until the spec changes (a value only the API server checks).
        blocked = cond.invalid_spec([f"the API server refused a child object: {exc}"])
        await _report_refusal(context, body, parents_state, blocked, klio_jobs, plan.pubsub)
        raise kopf.PermanentError(blocked.message) from exc
    stored = {object_key(child): result for child, result in zip(children, applied, strict=True)}
    context.children_applied[(namespace, name)] = {
        key: applied_digest(stored[key][1]) if key in stored else None
        for key in map(object_key, plan.children)
    }
    if topics_state.status == "True":
        _report_drift_repaired(context, body, namespace, name)
    if context.advice_reported.get((namespace, name), ()) != plan.advice:
        context.advice_reported[(namespace, name)] = plan.advice
        if plan.advice:
            kopf.warn(body, reason="AutoscalingLimited", message="; ".join(plan.advice))
    if not first:
        await prune(
            context.kube,
            namespace,
            f"{LABEL_JOB}={name},app.kubernetes.io/managed-by={MANAGED_BY}",
            [object_key(child) for child in plan.children],
        )
    workload = stored.get(plan.workload) if plan.workload else None
    just_created = workload[1] if workload and workload[0] == "created" else None
    await _report(context, body, spec, plan, parents_state, topics_state, resolution, just_created)
    if context.workload_events[(namespace, name)] != events_seen:
        # The workload changed while we worked, and its event may have been dropped as "not
        # reconciled yet": look once more, now that the status exists.
        await refresh_status(context, namespace, name)
    previous_parents = cond.condition_of(body.get("status"), cond.PARENTS_RESOLVED)
    was_waiting = bool(previous_parents and previous_parents.get("reason") in WAITING_REASONS)
    dependents = _children_of(klio_jobs, namespace, name)
    # A job that waited for its parents reads their topics now, where its children's bottom-up
    # requests go (a grandparent made again in another project, say): all of them are told.
    told = dependents if was_waiting else [job for job in dependents if job.waiting]
    await touch_children(context, namespace, name, told, "appeared")
    if topics_state.status != "True":
        raise kopf.TemporaryError(topics_state.message, delay=context.retry_delay)


async def _report_refusal(
    context: OperatorContext,
    body: kopf.Body,
    parents_state: cond.ConditionState,
    blocked: cond.ConditionState,
    klio_jobs: kopf.Index[str, JobSummary],
    made: PubSubPlan | None = None,
) -> None:
    """A job that cannot be reconciled (`blocked` says why): its status and a Warning Event say
    so, and its children are told (the caller raises the PermanentError)."""
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    status = _blocked_status(body, parents_state, blocked, made)
    await _write_status(context, namespace, name, status)
    kopf.warn(body, reason=blocked.reason, message=blocked.message)
    await _tell_children_blocked(context, body, blocked.reason, klio_jobs)


async def _tell_children_blocked(
    context: OperatorContext,
    body: kopf.Body,
    reason: str,
    klio_jobs: kopf.Index[str, JobSummary],
) -> None:
    """A job just refused (`reason`, which its status did not say yet of this generation): its
    children look again, and wait for it. Once a generation: in a cycle, a child is an
    ancestor too, and its own refusal would tell this job again, for ever."""
    ready = cond.condition_of(body.get("status"), cond.READY)
    generation = int(body.metadata.get("generation") or 0)
    if (
        ready is not None
        and ready.get("reason") == reason
        and ready.get("observedGeneration") == generation
    ):
        return
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    children = _children_of(klio_jobs, namespace, name)
    await touch_children(context, namespace, name, children, "blocked")


async def _wait_for_parents(
    context: OperatorContext, body: kopf.Body, parents_state: cond.ConditionState
) -> None:
    """Ready and ParentsResolved say what the job waits for, with an Event; nothing is made.
    The generation is seen: it waits for its parents, not for a reconcile."""
    previous = body.get("status") or {}
    generation = int(body.metadata.get("generation") or 0)
    status = dict(previous)
    status["conditions"] = cond.replace_conditions(
        previous.get("conditions") or [],
        [
            cond.ConditionState(cond.READY, "False", parents_state.reason, parents_state.message),
            parents_state,
        ],
        generation,
        _now(),
    )
    status["phase"] = "Pending"
    status["observedGeneration"] = generation
    await _write_status(context, body.metadata.namespace or "", body.metadata.name or "", status)
    kopf.warn(body, reason=parents_state.reason, message=parents_state.message)


async def _forbidden(context: OperatorContext, body: kopf.Body, exc: KubeApiError) -> NoReturn:
    """The API server refused the operator a call of the reconcile (403): its Role lacks the
    verb (a chart older than the operator, a namespace its Role does not cover). Granting it
    needs no change to the job."""
    message = f"the operator is not allowed this call (grant it in its Role): {exc}"
    await _degraded_until_fixed(context, body, "Forbidden", message, exc)


async def _degraded_until_fixed(
    context: OperatorContext, body: kopf.Body, reason: str, message: str, exc: Exception
) -> NoReturn:
    """Ready and Degraded say what stops the reconcile, with an Event, and it is retried: what
    is to be fixed is outside the job (a Role, someone else's object)."""
    previous = body.get("status") or {}
    # One Event per refusal, not one per retry: the condition already says it while it lasts.
    reported = cond.condition_of(previous, cond.DEGRADED)
    already_reported = bool(
        reported and reported.get("reason") == reason and reported.get("message") == message
    )
    generation = int(body.metadata.get("generation") or 0)
    states = [
        cond.ConditionState(cond.READY, "False", reason, message),
        cond.ConditionState(cond.DEGRADED, "True", reason, message),
    ]
    conditions = cond.replace_conditions(
        previous.get("conditions") or [], states, generation, _now()
    )
    status = {**previous, "conditions": conditions, "phase": "Degraded"}
    await _write_status(context, body.metadata.namespace or "", body.metadata.name or "", status)
    if not already_reported:
        kopf.warn(body, reason=reason, message=message)
    raise kopf.TemporaryError(message, delay=context.retry_delay) from exc


async def _children_to_apply(
    context: OperatorContext, body: kopf.Body, plan: Plan
) -> list[dict[str, Any]]:
    """The plan's children, less the run's Job when that run was made before and its Job is
    gone: a run is made once (see `KlioJobStatus.run`)."""
    run = _run_of(plan)
    if run is None or (body.get("status") or {}).get("run") != run:
        return list(plan.children)
    if await context.kube.get(resource_path("Job", body.metadata.namespace, run)) is not None:
        return list(plan.children)  # still there: its mutable fields (suspend) may change
    return [child for child in plan.children if object_key(child) != ("Job", run)]


def _run_of(plan: Plan) -> str | None:
    return plan.workload[1] if plan.workload and plan.workload[0] == "Job" else None


def _report_drift_repaired(
    context: OperatorContext, body: kopf.Body, namespace: str, name: str
) -> None:
    """The Event for a drift repair (`nudge_drifted` noted what was deleted or changed), once
    per note."""
    note = body.metadata.annotations.get(DRIFT)
    if note and context.drift_reported.get((namespace, name)) != note:
        context.drift_reported[(namespace, name)] = note
        _, _, drifted = note.partition(" drifted: ")
        message = f"applied again after a change outside the operator: {drifted or note}"
        kopf.warn(body, reason="DriftRepaired", message=message)


async def _kept_input_subscriptions(
    context: OperatorContext, body: kopf.Body, project: str, plan: Plan
) -> dict[str, str]:
    """Input topic → the job's subscription in `project` that reads it under an earlier naming.

    Jobs made before input subscriptions were named after their topics list `…input-<n>` ones
    (by the input's place). Replacing them would lose their backlog (a new subscription gets
    only later messages), so one whose topic the plan still reads is kept. Pub/Sub says which
    topic each reads: the spec may have changed since it was made.
    """
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    subscriptions = plan.pubsub.subscriptions
    wanted = {s.name for s in subscriptions}
    read = {s.topic for s in subscriptions if dag.is_input_subscription(namespace, name, s.name)}
    listed = (body.get("status") or {}).get("subscriptions") or []
    in_project = dag.subscription_path(project, "")
    earlier = sorted(
        s
        for s in listed
        if s not in wanted
        and s not in plan.external_subscriptions  # the team's own, named in the spec
        and s.startswith(in_project)  # a job moved to another project gets new ones
        and dag.is_input_subscription(namespace, name, s)
    )
    kept: dict[str, str] = {}
    for subscription in earlier:
        topic = context.subscription_topics.get(subscription)
        if topic is None:
            try:
                topic = await context.pubsub.subscription_topic(subscription)
            except PubSubAdminError as exc:
                _report_pubsub_error(context, body, exc)
                raise kopf.TemporaryError(str(exc), delay=context.retry_delay) from exc
            if topic is None:
                continue  # gone: nothing to keep
            context.subscription_topics[subscription] = topic
        if topic in read and topic not in kept:
            kept[topic] = subscription
    return kept


def _report_pubsub_error(context: OperatorContext, body: kopf.Body, exc: PubSubAdminError) -> None:
    """A Pub/Sub call that failed: counted, and a PubSubError Event on the job."""
    context.metrics.pubsub_errors.inc()
    kopf.warn(body, reason="PubSubError", message=str(exc))


async def _ensure_pubsub(
    context: OperatorContext, body: kopf.Body, plan: Plan
) -> cond.ConditionState:
    previous = body.get("status") or {}
    wanted_subs = {s.name for s in plan.pubsub.subscriptions}
    wanted_topics = {t.name for t in plan.pubsub.topics}
    stale_subs = [s for s in previous.get("subscriptions") or [] if s not in wanted_subs]
    stale_topics = [t for t in previous.get("topics") or [] if t not in wanted_topics]
    stale_subs = [s for s in stale_subs if s not in plan.external_subscriptions]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if context.pubsub_applied.get(key) == plan.pubsub and not (stale_subs or stale_topics):
        # This process made exactly these resources already: a re-reconcile for another reason
        # (a nudge, a worker-only change) needs no admin calls. A restart checks them again.
        return cond.topics_ready(len(wanted_subs) + len(wanted_topics))
    context.pubsub_applied.pop(key, None)
    try:
        await context.pubsub.apply(plan.pubsub)
        if stale_subs or stale_topics:
            await context.pubsub.remove(stale_subs, stale_topics)
    except PubSubAdminError as exc:
        _report_pubsub_error(context, body, exc)
        return cond.topics_failed(str(exc))
    context.pubsub_applied[key] = plan.pubsub
    return cond.topics_ready(len(wanted_subs) + len(wanted_topics))


async def _report(
    context: OperatorContext,
    body: kopf.Body,
    spec: Any,
    plan: Plan,
    parents_state: cond.ConditionState,
    topics_state: cond.ConditionState,
    resolution: dag.ParentResolution,
    just_created: Mapping[str, Any] | None = None,
) -> None:
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    kind, workload_name = plan.workload or (None, None)
    if just_created is not None:  # no pods can exist yet: save two reads
        obj: Mapping[str, Any] | None = just_created
        pods: list[Mapping[str, Any]] = []
    else:
        obj, pods = await observe_workload(context, namespace, name, kind, workload_name)
    observation = cond.Observation(
        generation=int(body.metadata.get("generation") or 0),
        parents=parents_state,
        topics=topics_state,
        workload=_workload(spec, kind, obj, pods),
        selector=plan.selector,
        topic_names=[t.name for t in plan.pubsub.topics],
        subscription_names=[s.name for s in plan.pubsub.subscriptions],
        parent_names=list(resolution.found),
        batch=spec.mode == "batch",
        run=_run_of(plan),
    )
    status = cond.build_status(observation, body.get("status"), _now())
    await _write_status(context, namespace, name, status)


# -- status refresh on workload / pod changes ------------------------------------------------


REFRESH_ATTEMPTS = 5


async def refresh_status(
    context: OperatorContext,
    namespace: str,
    name: str,
    deployment: Mapping[str, Any] | None = None,
) -> None:
    """Recompute the worker conditions of a job after its Deployment, Job or pods changed.

    Starts from the job as last seen (`context.latest`: the watch's or our own last write's),
    else reads it. Writes only over the generation and status it started from (JSON-patch
    `test` operations), so a slower refresh never overwrites what a reconcile of a newer
    generation just reported; on a conflict it reads again. A decision to write nothing is
    made on a fresh read only (a cached copy may lag behind a status written since).
    """
    body = context.latest.get((namespace, name))
    fresh = False
    for _ in range(REFRESH_ATTEMPTS):
        if body is None or fresh:
            body, fresh = await context.kube.get(resource_path("KlioJob", namespace, name)), True
        if await _refresh_once(context, namespace, name, body, deployment, fresh):
            return
        fresh = True


def settled(deployment: Mapping[str, Any], desired: int) -> bool:
    """All desired workers updated, ready and available: no pod can be stuck."""
    status = deployment.get("status") or {}
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and int(status.get("replicas") or 0)
        == int(status.get("updatedReplicas") or 0)
        == int(status.get("readyReplicas") or 0)
        == desired
        and not status.get("unavailableReplicas")
    )


async def _refresh_once(
    context: OperatorContext,
    namespace: str,
    name: str,
    body: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    fresh: bool,
) -> bool:
    """One attempt; True when done. False: look again on a fresh read (a write conflicted, or
    a cached `body` (not `fresh`) suggested there was nothing to write)."""
    if body is None or body["metadata"].get("deletionTimestamp"):
        return fresh
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"].get("generation"):
        return fresh  # a reconcile of the new spec is under way and will report
    ready = cond.condition_of(status, cond.READY)
    parents = cond.condition_of(status, cond.PARENTS_RESOLVED)
    topics = cond.condition_of(status, cond.TOPICS_READY)
    if ready is None or parents is None or topics is None:
        return fresh  # not reconciled yet: the reconcile reports
    if ready.get("reason") in BLOCKED_REASONS or parents.get("status") != "True":
        return fresh  # nothing runs for a blocked job; the reconcile owns its status
    spec = parsed_job(context, name, body.get("spec") or {}, body["metadata"]).spec
    if spec is None:
        return fresh
    kind = _workload_kind(spec)
    workload_name = name if kind == "Deployment" else None
    seen = deployment if kind == "Deployment" else None
    if seen is not None and (seen.get("metadata") or {}).get("name") == name:
        # The event's own Deployment: no need to read it again, nor the pods once it settled.
        obj: Mapping[str, Any] | None = seen
        pods = (
            []
            if settled(seen, _desired(spec, seen))
            else await worker_pods(context, namespace, name)
        )
    else:
        obj, pods = await observe_workload(context, namespace, name, kind, workload_name)
    observation = cond.Observation(
        generation=int(status.get("observedGeneration") or 0),
        parents=cond.state_of(parents),
        topics=cond.state_of(topics),
        workload=_workload(spec, kind, obj, pods),
        selector=status.get("selector"),
        topic_names=status.get("topics") or [],
        subscription_names=status.get("subscriptions") or [],
        parent_names=status.get("parents") or [],
        batch=spec.mode == "batch",
        run=status.get("run") if kind == "Job" else None,
    )
    new_status = cond.build_status(observation, status, _now())
    if new_status == status:
        return fresh
    return await _write_status(context, namespace, name, new_status, over=body)


async def on_workload_event(
    body: kopf.Body,
    labels: Mapping[str, str],
    namespace: str | None,
    status: Mapping[str, Any],
    memo: Any,
    type: str | None = None,
    **_: Any,
) -> None:
    if not status:
        return  # just created: nothing new to report on
    job = labels.get(LABEL_JOB)
    if job and namespace:
        context = _context(memo)
        context.workload_events[(namespace, job)] += 1
        deployment = body if body.get("kind") == "Deployment" else None
        key = (namespace, job)
        wanted = context.children_applied.get(key, {})
        if type == "DELETED" and deployment is not None:
            gone = ("Deployment", str(deployment.metadata.name))
            if gone in wanted:
                # Deleted while the job still wants it (a job's own deletion or a mode change
                # forgets it first): drift repair at once, not at the next pass.
                context.children_applied.pop(key, None)
                await nudge_drifted(context, key, [drift.deleted("/".join(gone))], "object")
        await refresh_status(context, namespace, job, deployment)


# -- parents appearing and going ---------------------------------------------------------------


async def touch_children(
    context: OperatorContext, namespace: str, parent: str, jobs: Iterable[JobSummary], why: str
) -> None:
    """Make every job that names `parent` re-reconcile now (rather than at its next retry)."""
    stamp = f"{parent} {why} {_now().isoformat()}"
    for job in jobs:
        if parent in job.parents and job.name != parent:
            # The parent's topic may be gone or new: the child checks its subscriptions again.
            context.pubsub_applied.pop((namespace, job.name), None)
            await _annotate_job(context, namespace, job.name, PARENTS_CHANGED, stamp)


async def _annotate_job(
    context: OperatorContext, namespace: str, name: str, annotation: str, value: str
) -> None:
    """Set an annotation of ours on a KlioJob (its change makes the job reconcile); a job
    deleted meanwhile needs nothing."""
    try:
        await context.kube.merge_patch(
            resource_path("KlioJob", namespace, name),
            {"metadata": {"annotations": {annotation: value}}},
        )
    except KubeApiError as exc:
        if exc.status != 404:
            raise


async def nudge_drifted(
    context: OperatorContext, key: tuple[str, str], drifted: list[str], resource: str
) -> None:
    """A job whose Pub/Sub resources or child objects were deleted or changed (see `drift`):
    note what, and make it reconcile now, which makes or sets them again (the plan it applied
    was forgotten)."""
    namespace, name = key
    context.metrics.drift_repairs.labels(resource=resource).inc()
    # The reconcile this triggers posts the Event (kopf posts Events from its handlers only).
    note = f"{_now().isoformat()} drifted: {', '.join(drifted)}"
    await _annotate_job(context, namespace, name, DRIFT, note)


async def on_spec_changed(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    old: Any,
    new: Any,
    memo: Any,
    **kwargs: Any,
) -> None:
    """Children depend on what their parents are (parents, outputs, topics): tell them."""
    context = _context(memo)
    generation = int(body.metadata.get("generation") or 0)
    if context.reconciled.get((namespace or "", name), generation) < generation:
        # The spec changed after this cause's reconcile ran: kopf runs a handler once per
        # cause, so this generation would never be reconciled until another change came.
        await reconcile(body, namespace, name, uid, memo, **kwargs)
    before = summarize(name, old or {}, context.facts)
    after = summarize(name, new or {}, context.facts)
    if before == after:
        return
    children = _children_of(kwargs["klio_jobs"], namespace or "", name)
    await touch_children(context, namespace or "", name, children, "changed")
    # A grandchild's bottom-up requests go to the topic its parent reads, this job's output.
    for child in children:
        grandchildren = _children_of(kwargs["klio_jobs"], namespace or "", child.name)
        await touch_children(context, namespace or "", child.name, grandchildren, f"{name} changed")


async def on_deleted(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: Any,
    **kwargs: Any,
) -> None:
    """The finalizer: delete the job's Pub/Sub resources; tell its children."""
    klio_jobs = kwargs["klio_jobs"]  # the index, named after its handler id
    context = _context(memo)
    namespace = namespace or ""
    status = body.get("status") or {}
    subscriptions = set(status.get("subscriptions") or [])
    topics = set(status.get("topics") or [])
    try:
        spec = parse_spec(dict(body.spec))
    except SpecError:
        spec = None  # an invalid job created nothing beyond what its status lists
    if spec is not None:
        project = project_of(spec, context.facts)
        try:
            plan = plan_job(
                Owner(name, namespace),
                spec,
                [ParentInfo(p, project) for p in spec.parents],
                context.facts,
            )
        except PlanningError:
            # Refused, it made nothing; but a child made with it, before its refusal was known,
            # may have made its output topic, named by the operator after it.
            topics.add(dag.output_topic(project, namespace, name))
        else:
            subscriptions |= {s.name for s in plan.pubsub.subscriptions}
            topics |= {t.name for t in plan.pubsub.topics}
            subscriptions -= set(plan.external_subscriptions)
    try:
        await context.pubsub.remove(sorted(subscriptions), sorted(topics))
    except PubSubAdminError as exc:
        _report_pubsub_error(context, body, exc)
        raise kopf.TemporaryError(str(exc), delay=context.retry_delay) from exc
    context.metrics.set_phase(namespace, name, None)
    context.workload_events.pop((namespace, name), None)
    context.pubsub_applied.pop((namespace, name), None)
    context.drift_reported.pop((namespace, name), None)
    context.advice_reported.pop((namespace, name), None)
    context.children_applied.pop((namespace, name), None)
    context.parsed.pop((namespace, name), None)
    context.latest.pop((namespace, name), None)
    children = _children_of(klio_jobs, namespace, name)
    await touch_children(context, namespace, name, children, "deleted")


# -- registration ------------------------------------------------------------------------------


def register(registry: kopf.OperatorRegistry) -> None:
    """Put every handler of the operator on `registry` (the startup handler is in settings)."""
    from klio_operator import settings

    settings.register(registry)
    kopf.index(*KLIOJOBS, registry=registry, id="klio_jobs")(index_job)
    kopf.index(
        *settings.POD_RESOURCE, labels=settings.WORKLOAD_LABELS, registry=registry, id="worker_pods"
    )(index_worker_pod)
    for on in (kopf.on.create, kopf.on.update, kopf.on.resume):
        on(*KLIOJOBS, registry=registry, id="reconcile", backoff=5)(reconcile)
    kopf.on.update(*KLIOJOBS, field="spec", registry=registry, id="spec_changed")(on_spec_changed)
    kopf.on.delete(*KLIOJOBS, registry=registry, id="cleanup", backoff=5)(on_deleted)
    for resource in settings.WORKLOAD_RESOURCES:
        # Without a status (just created) there is nothing to report: not even invoked.
        kopf.on.event(
            *resource,
            labels=settings.WORKLOAD_LABELS,
            field="status",
            value=kopf.PRESENT,
            registry=registry,
            id="workload",
        )(on_workload_event)


register(kopf.get_default_registry())
