"""Pure planning: a KlioJob (+ its resolved parents + cluster facts) → the desired children.

No IO here. `plan_job` returns every Kubernetes object the job needs (as plain dicts ready to
apply) and the Pub/Sub topics and subscriptions of its edges. The handlers apply the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from klio_runtime.config import ConfigError, dump_config, parse_config
from klio_runtime.io import EMULATOR_PROJECT
from klio_runtime.io.pubsub import resource_path

from klio_operator import dag, worker_contract, yaml_text
from klio_operator.models import (
    API_VERSION,
    DNS1035_LABEL,
    DNS1123_LABEL_MAX,
    KIND,
    DataInput,
    DataOutput,
    EventInput,
    FieldErrors,
    KlioJobSpec,
)

MANAGED_BY = "klio-operator"
APP_NAME = "klio-job"
LABEL_JOB = "klio.io/job"
ANNOTATION_CONFIG_HASH = "klio.io/config-hash"
DEFAULT_PROJECT = EMULATOR_PROJECT  # the runtime's name for a project none was given
ENV_KEDA_AUTHENTICATION = "KLIO_KEDA_AUTHENTICATION"
"""Names the KEDA TriggerAuthentication of the ScaledObjects (else `klio-pubsub`)."""
ENV_SERVICE_MONITOR_LABELS = "KLIO_SERVICE_MONITOR_LABELS"
"""Labels (a JSON object) for the workers' ServiceMonitors, e.g. the `release` label a
kube-prometheus-stack Prometheus selects ServiceMonitors by. The chart sets it from
`metrics.serviceMonitor.labels`."""
MAX_DELIVERY_ATTEMPTS = 5  # Pub/Sub's minimum for a dead-letter policy
ACK_DEADLINE_SECONDS = 60
RUNNER_NAMES = {"direct": "FnApiRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner"}
ENGINES = {"dataflow": "Dataflow", "flink": "Flink"}
"""The engines a launcher Job submits a pipeline to, by spec.runner (direct has none)."""

Component = Literal["worker", "config", "metrics", "autoscaler", "launcher"]


class PlanningError(FieldErrors):
    """The spec cannot be turned into children."""


@dataclass(frozen=True)
class ClusterFacts:
    """What the operator knows of the cluster and its own configuration."""

    has_service_monitor: bool = False  # monitoring.coreos.com CRDs installed
    has_keda: bool = False  # keda.sh CRDs installed
    default_project: str = DEFAULT_PROJECT  # Pub/Sub project when pipelineOptions has none
    keda_authentication: str = "klio-pubsub"  # KEDA TriggerAuthentication for gcp-pubsub
    # (named by ENV_KEDA_AUTHENTICATION in the operator's environment)
    service_monitor_labels: tuple[tuple[str, str], ...] = ()  # see ENV_SERVICE_MONITOR_LABELS


@dataclass(frozen=True)
class ParentInfo:
    """A resolved parent: where its output goes and what data it writes."""

    name: str
    project: str
    data_outputs: tuple[DataOutput, ...] = ()
    input_topic: str | None = None
    """The topic the parent reads (see `topic_read_by`): bottom-up requests go there. None: the
    parent reads no topic the operator knows (a file input, a team's own subscription)."""


@dataclass(frozen=True)
class Owner:
    """The KlioJob object the children belong to."""

    name: str
    namespace: str
    uid: str | None = None  # None when rendering without a cluster: no owner references


@dataclass(frozen=True)
class TopicPlan:
    name: str


@dataclass(frozen=True)
class SubscriptionPlan:
    name: str
    topic: str
    dead_letter_topic: str | None
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    ack_deadline_seconds: int = ACK_DEADLINE_SECONDS


@dataclass(frozen=True)
class PubSubPlan:
    """Topics and subscriptions the job owns (created and deleted by the operator)."""

    topics: tuple[TopicPlan, ...]
    subscriptions: tuple[SubscriptionPlan, ...]
    parent_topics: tuple[TopicPlan, ...] = ()
    """Parents' output topics: ensured before subscribing (a parent may not have made its own
    yet), never deleted by the child."""


@dataclass(frozen=True)
class Plan:
    children: list[dict[str, Any]]
    pubsub: PubSubPlan
    worker_config: dict[str, Any]
    desired_workers: int
    selector: str
    workload: tuple[str, str] | None = None  # (kind, name) of the Deployment / Job watched
    external_subscriptions: tuple[str, ...] = field(default=())  # read, not owned
    advice: tuple[str, ...] = field(default=())
    """`<path>: <message>` lines for what the children will not do of what the spec asks;
    the job still runs (the handler reports them in a Warning Event, render on stderr)."""


def _refuse_other_namespaces(event_input: EventInput, index: int, ns: str) -> None:
    """A tenant's KlioJob may not read the topics and subscriptions the operator made for
    another namespace's jobs: two namespaces never share a topic (a job reads another job of
    its own namespace by naming it a parent)."""
    for field_name in ("topic", "subscription"):
        name = getattr(event_input, field_name)
        owner = dag.made_for_namespace(name) if name else None  # a bare id or a full path
        if owner is not None and owner != ns:
            raise PlanningError(
                [
                    f"spec.eventInputs[{index}].{field_name}: {name} is the operator's for"
                    f" namespace {owner}'s jobs; a KlioJob reads only its own namespace's"
                ]
            )


def project_of(spec: KlioJobSpec, facts: ClusterFacts) -> str:
    """The Pub/Sub project of a job's own topics and subscriptions."""
    project = spec.pipeline_options.get("project")
    return project if isinstance(project, str) and project else facts.default_project


def topic_read_by(
    namespace: str, first_parent: tuple[str, str] | None, event_topics: Sequence[str]
) -> str | None:
    """The topic a job reads: its first parent's output topic (`first_parent` is that parent's
    (name, project)), else its first Pub/Sub event-input topic, else None.

    A child asks a parent for missing data by publishing a bottom-up request to this topic (the
    worker's `job_config.parents[].topic`).
    """
    if first_parent is not None:
        name, project = first_parent
        return dag.output_topic(project, namespace, name)
    return event_topics[0] if event_topics else None


def event_topics_of(spec: KlioJobSpec, project: str) -> tuple[str, ...]:
    """The topics of a job's Pub/Sub event inputs, in order (a bare id is in `project`, the
    job's)."""
    return tuple(
        resource_path(i.topic, "topics", project)
        for i in spec.event_inputs
        if i.type == "pubsub" and i.topic
    )


def labels_for(job: str, component: Component) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "klio",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_JOB: job,
    }


def worker_selector(job: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/component": "worker",
    }


def selector_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _metadata(owner: Owner, name: str, component: Component) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels_for(owner.name, component),
    }
    if owner.uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


# -- Pub/Sub ----------------------------------------------------------------------------------


def plan_pubsub(
    owner: Owner,
    spec: KlioJobSpec,
    parents: Sequence[ParentInfo],
    facts: ClusterFacts,
    kept_subscriptions: Mapping[str, str] | None = None,
) -> tuple[PubSubPlan, list[tuple[str, str]], tuple[str, ...]]:
    """The job's topics/subscriptions, its (topic, subscription) inputs and external ones.

    `kept_subscriptions`: event-input topic → the job's own subscription that reads it already
    under another name (an earlier naming); it is kept instead of replaced, with its backlog.
    """
    kept = kept_subscriptions or {}
    project = project_of(spec, facts)
    ns, job = owner.namespace, owner.name
    dead_letter = dag.dead_letter_topic(project, ns, job)
    topics = [
        TopicPlan(dag.output_topic(project, ns, job)),
        TopicPlan(dead_letter),
    ]
    subscriptions = [
        SubscriptionPlan(dag.dead_letter_subscription(project, ns, job), dead_letter, None)
    ]
    inputs: list[tuple[str, str]] = []
    external: list[str] = []
    for parent in parents:
        topic = dag.output_topic(parent.project, ns, parent.name)
        name = dag.parent_subscription(project, ns, job, parent.name)
        subscriptions.append(SubscriptionPlan(name, topic, dead_letter))
        inputs.append((topic, name))
    subscribed: dict[str, int] = {}  # topic → the input we subscribe it for
    for index, event_input in enumerate(spec.event_inputs):
        if event_input.type != "pubsub":
            continue
        _refuse_other_namespaces(event_input, index, ns)
        topic = resource_path(event_input.topic, "topics", project) if event_input.topic else ""
        if event_input.subscription:  # the team's own subscription: read it, don't own it
            own = resource_path(event_input.subscription, "subscriptions", project)
            external.append(own)
            inputs.append((topic, own))
        elif topic:
            if topic in subscribed:
                raise PlanningError(
                    [
                        f"spec.eventInputs[{index}].topic: {topic} is read by"
                        f" spec.eventInputs[{subscribed[topic]}] already; give this input a"
                        " subscription of its own"
                    ]
                )
            subscribed[topic] = index
            name = kept.get(topic) or dag.input_subscription(project, ns, job, topic)
            subscriptions.append(SubscriptionPlan(name, topic, dead_letter))
            inputs.append((topic, name))
    parent_topics = tuple(
        TopicPlan(dag.output_topic(parent.project, ns, parent.name)) for parent in parents
    )
    return (
        PubSubPlan(tuple(topics), tuple(subscriptions), parent_topics),
        inputs,
        tuple(external),
    )


# -- the worker's klio-job.yaml ---------------------------------------------------------------


def _data_entry(location: DataInput | DataOutput) -> dict[str, Any]:
    return {
        "type": location.storage_type,
        "location": location.location,
        "file_suffix": location.file_suffix,
        "skip_klio_existence_check": location.skip_klio_existence_check,
    }


def worker_config(
    owner: Owner,
    spec: KlioJobSpec,
    parents: Sequence[ParentInfo],
    inputs: Sequence[tuple[str, str]],
    facts: ClusterFacts,
) -> dict[str, Any]:
    """The klio-job.yaml the workers read, validated by the runtime's own config model."""
    project = project_of(spec, facts)
    event_inputs: list[dict[str, Any]] = [
        {"type": "pubsub", "topic": topic, "subscription": sub}
        if topic
        else {"type": "pubsub", "subscription": sub}
        for topic, sub in inputs
    ]
    event_inputs += [
        {"type": "file", "location": event_input.location}
        for event_input in spec.event_inputs
        if event_input.type == "file"
    ]
    if spec.data_inputs is not None:
        data_inputs = [{**_data_entry(item), "ping": item.ping} for item in spec.data_inputs]
    else:
        # A parent's first data output becomes this job's input (Klio's convention).
        data_inputs = [_data_entry(out) for parent in parents for out in parent.data_outputs[:1]]
    pipeline_options = {
        **spec.pipeline_options,
        # The spec's own fields win over free-form options that say the same thing.
        "runner": RUNNER_NAMES[spec.runner],
        "streaming": spec.mode == "streaming",
        "project": project,
    }
    if spec.runner == "dataflow":
        # Dataflow names running jobs per project and region: two namespaces' jobs of one name
        # must not update each other.
        pipeline_options.setdefault("job_name", f"{owner.namespace}-{owner.name}")
    job_config: dict[str, Any] = {
        **spec.config,
        "allow_non_klio_messages": spec.allow_non_klio_messages,
        "retries": spec.retries,
        "events": {
            "inputs": event_inputs,
            "outputs": [
                {"type": "pubsub", "topic": dag.output_topic(project, owner.namespace, owner.name)}
            ],
        },
        "data": {
            "inputs": data_inputs,
            "outputs": [{**_data_entry(out), "force": out.force} for out in spec.data_outputs],
        },
    }
    if bottom_up := worker_parents(spec, parents, data_inputs):
        job_config[worker_contract.PARENTS_KEY] = bottom_up
    if spec.thread_pool_size is not None:
        job_config["thread_pool_size"] = spec.thread_pool_size
    if spec.timeout_seconds is not None:
        job_config["timeout_seconds"] = spec.timeout_seconds
    raw = {
        "version": 2,
        "job_name": owner.name,
        "pipeline_options": pipeline_options,
        "job_config": job_config,
    }
    try:
        return dump_config(parse_config(raw))
    except ConfigError as exc:
        # The spec's free-form parts (config, pipelineOptions) map onto these paths.
        raise PlanningError([f"klio-job.yaml {error}" for error in exc.errors]) from exc


def worker_parents(
    spec: KlioJobSpec, parents: Sequence[ParentInfo], data_inputs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`job_config.parents` for the worker's bottom-up (klio_runtime.worker.bottom_up).

    Each entry names the parent, the topic it reads and the index of the data input it
    produces. Inputs taken from parents: its place among the parents with outputs. Explicit
    `dataInputs`: the input at a location the parent writes, else the first input no parent
    writes, in order. A parent that reads no known topic, or produces none of the inputs,
    cannot be asked and has no entry.
    """
    index_of: dict[int, int] = {}
    if spec.data_inputs is None:
        with_outputs = [i for i, parent in enumerate(parents) if parent.data_outputs]
        index_of = {position: index for index, position in enumerate(with_outputs)}
    else:
        for position, parent in enumerate(parents):
            locations = {out.location for out in parent.data_outputs}
            for index, item in enumerate(data_inputs):
                if item.get("location") in locations:
                    index_of[position] = index
                    break
        free = [i for i in range(len(data_inputs)) if i not in index_of.values()]
        for position in range(len(parents)):
            if position not in index_of and free:
                index_of[position] = free.pop(0)
    return [
        {
            "job_name": parent.name,
            "gcp_project": parent.project,
            "topic": parent.input_topic,
            "data_input": index_of[position],
        }
        for position, parent in enumerate(parents)
        if parent.input_topic is not None and position in index_of
    ]


def config_hash(config: Mapping[str, Any]) -> str:
    """A short digest of a JSON-able mapping (a worker config, a pod template)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


# -- pods -------------------------------------------------------------------------------------

RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _env(owner: Owner, spec: KlioJobSpec, facts: ClusterFacts) -> list[dict[str, Any]]:
    project = project_of(spec, facts)
    ours: list[dict[str, Any]] = [
        {"name": worker_contract.ENV_JOB_NAME, "value": owner.name},
        {"name": worker_contract.ENV_NAMESPACE, "value": owner.namespace},
        {
            "name": worker_contract.ENV_POD_NAME,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {"name": worker_contract.ENV_PUBSUB_PROJECT, "value": project},
        {
            "name": worker_contract.ENV_DEAD_LETTER_TOPIC,
            "value": dag.dead_letter_topic(project, owner.namespace, owner.name),
        },
    ]
    ours += [{"name": name, "value": value} for name, value in worker_contract.SCRATCH_ENV]
    own_names = {var.name for var in spec.env}
    return [var for var in ours if var["name"] not in own_names] + [
        var.to_wire() for var in spec.env
    ]


def pod_template(
    owner: Owner,
    spec: KlioJobSpec,
    facts: ClusterFacts,
    *,
    component: Component,
    command: Sequence[str],
    config_digest: str,
    probes: bool,
    restart_policy: str,
) -> dict[str, Any]:
    """The pod template of workers and launchers: restricted security, config mounted."""
    container: dict[str, Any] = {
        "name": component,
        "image": spec.image,
        "command": list(command),
        "env": _env(owner, spec, facts),
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "config", "mountPath": worker_contract.CONFIG_DIR, "readOnly": True},
            {"name": "scratch", "mountPath": worker_contract.SCRATCH_DIR},
        ],
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources is not None:
        container["resources"] = spec.resources.to_wire()
    if probes:
        container["ports"] = [
            {"name": "health", "containerPort": worker_contract.HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": worker_contract.METRICS_PORT, "protocol": "TCP"},
        ]
        container["livenessProbe"] = {
            "httpGet": {"path": worker_contract.LIVENESS_PATH, "port": "health"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        }
        container["readinessProbe"] = {
            "httpGet": {"path": worker_contract.READINESS_PATH, "port": "health"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        }
        container["startupProbe"] = {
            # Decoders and models warm up in setup: allow up to 5 minutes before liveness.
            "httpGet": {"path": worker_contract.LIVENESS_PATH, "port": "health"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        }
    pod_spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,  # workers never call the Kubernetes API
        "securityContext": RESTRICTED_POD_SECURITY,
        # Room to drain: stop pulling, finish the in-flight elements, publish, ack.
        "terminationGracePeriodSeconds": worker_contract.DRAIN_SECONDS
        + (spec.timeout_seconds or 0),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(owner.name)}},
            {"name": "scratch", "emptyDir": {}},
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    labels = labels_for(owner.name, component)
    return {
        "metadata": {"labels": labels, "annotations": {ANNOTATION_CONFIG_HASH: config_digest}},
        "spec": pod_spec,
    }


def config_map_name(job: str) -> str:
    return f"{job}-config"


def metrics_service_name(job: str) -> str:
    return f"{job}-metrics"


# -- the whole plan ---------------------------------------------------------------------------


def desired_workers(spec: KlioJobSpec) -> int:
    if spec.suspend:
        return 0
    if spec.autoscaling is not None:
        return spec.autoscaling.min_replicas
    return spec.replicas


_DIGEST_SUFFIX = len("-") + 8


def child_name_problem(name: str, spec: KlioJobSpec) -> str | None:
    """Why the children's names made from the job's ``name`` would be refused by the API server
    (the metrics Service's, a Job's: DNS-1035 labels of at most 63 characters), or None."""
    suffixes = [len(metrics_service_name(""))]
    if spec.runner != "direct":
        suffixes.append(len("-launch") + _DIGEST_SUFFIX)
    elif spec.mode == "batch":
        suffixes.append(_DIGEST_SUFFIX)
    longest = DNS1123_LABEL_MAX - max(suffixes)
    if not re.fullmatch(DNS1035_LABEL, name):
        return (
            f"'{name}' must be lowercase letters, digits and '-', start with a letter and end "
            "with a letter or digit: the job's Service and workers are named after it"
        )
    if len(name) > longest:
        return (
            f"'{name}' is {len(name)} characters; at most {longest} for this job, whose "
            f"children's names add up to {max(suffixes)} more (Kubernetes allows 63)"
        )
    return None


def plan_job(
    owner: Owner,
    spec: KlioJobSpec,
    parents: Sequence[ParentInfo] = (),
    facts: ClusterFacts | None = None,
    kept_subscriptions: Mapping[str, str] | None = None,
) -> Plan:
    """Everything a KlioJob needs, computed from its spec, its parents and the cluster facts.

    `parents` are the resolved parents in the order of `spec.parents`; the caller checks that
    all exist and that there is no cycle (see `klio_operator.dag.resolve_parents`).
    `kept_subscriptions`: see `plan_pubsub`.
    """
    facts = facts or ClusterFacts()
    known = {parent.name for parent in parents}
    if missing := [name for name in spec.parents if name not in known]:
        raise PlanningError([f"spec.parents: not resolved: {', '.join(missing)}"])
    if problem := child_name_problem(owner.name, spec):
        raise PlanningError([f"metadata.name: {problem}"])
    pubsub, inputs, external = plan_pubsub(owner, spec, parents, facts, kept_subscriptions)
    config = worker_config(owner, spec, parents, inputs, facts)
    digest = config_hash(config)
    job = owner.name
    children: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(owner, config_map_name(job), "config"),
            "data": {worker_contract.CONFIG_FILE: yaml_text.dump(config)},
        }
    ]
    selector = worker_selector(job)
    workers = desired_workers(spec)
    workload: tuple[str, str] | None = None
    advice: list[str] = []
    if spec.runner != "direct":
        launcher = _batch_job(owner, spec, facts, f"{job}-launch", "launcher", digest, 1)
        children.append(launcher)
        workload = ("Job", launcher["metadata"]["name"])
        workers = 0 if spec.suspend else 1
    elif spec.mode == "batch":
        batch = _batch_job(owner, spec, facts, job, "worker", digest, spec.replicas)
        children.append(batch)
        workload = ("Job", batch["metadata"]["name"])
        workers = 0 if spec.suspend else spec.replicas
    else:
        children.append(_deployment(owner, spec, facts, digest, workers))
        workload = ("Deployment", job)
        children.append(_metrics_service(owner))
        if facts.has_service_monitor:
            children.append(_service_monitor(owner, facts))
        if spec.autoscaling is not None and not spec.suspend:
            if facts.has_keda:
                subs = [sub for _, sub in inputs]
                children.append(_scaled_object(owner, spec, facts, subs))
            else:
                children.append(_hpa(owner, spec))
                advice += cpu_autoscaling_advice(spec)
    return Plan(
        children=children,
        pubsub=pubsub,
        worker_config=config,
        desired_workers=workers,
        selector=selector_string(selector),
        workload=workload,
        external_subscriptions=external,
        advice=tuple(advice),
    )


def _deployment(
    owner: Owner, spec: KlioJobSpec, facts: ClusterFacts, digest: str, workers: int
) -> dict[str, Any]:
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": worker_selector(owner.name)},
        "revisionHistoryLimit": 3,
        # Roll one new worker in before an old one drains: capacity never drops.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": pod_template(
            owner,
            spec,
            facts,
            component="worker",
            command=worker_contract.WORKER_COMMAND,
            config_digest=digest,
            probes=True,
            restart_policy="Always",
        ),
    }
    if spec.autoscaling is None or spec.suspend:
        deployment_spec["replicas"] = workers  # else the autoscaler owns the count
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, owner.name, "worker"),
        "spec": deployment_spec,
    }


def _batch_job(
    owner: Owner,
    spec: KlioJobSpec,
    facts: ClusterFacts,
    prefix: str,
    component: Component,
    digest: str,
    parallelism: int,
) -> dict[str, Any]:
    """A Job named `<prefix>-<digest of its pod template>`: a Job's pod template is immutable,
    so a new config, image, env or resources is a new Job (a new run)."""
    command = (
        worker_contract.WORKER_COMMAND
        if component == "worker"
        else worker_contract.LAUNCHER_COMMAND
    )
    if component == "launcher" and spec.runner == "dataflow" and spec.mode == "streaming":
        # A new spec replaces the running streaming job in place (Dataflow's update), rather
        # than starting a second one beside it; the first launch has nothing to update and
        # submits a new job (klio job run --update, as Klio's).
        command = (*command, "--update")
    template = pod_template(
        owner,
        spec,
        facts,
        component=component,
        command=command,
        config_digest=digest,
        probes=component == "worker",
        restart_policy="Never",
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, f"{prefix}-{config_hash(template)[:8]}", component),
        "spec": {
            "suspend": spec.suspend,
            "parallelism": parallelism,  # 0 pauses a Job's pods, as status then says
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": template,
        },
    }


def _metrics_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, metrics_service_name(owner.name), "metrics"),
        "spec": {
            "selector": worker_selector(owner.name),
            "ports": [
                {
                    "name": "metrics",
                    "port": worker_contract.METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                }
            ],
        },
    }


def service_monitor_labels(text: str | None) -> tuple[tuple[str, str], ...]:
    """The labels ENV_SERVICE_MONITOR_LABELS gives (a JSON object of strings), sorted."""
    if not text:
        return ()
    try:
        labels = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{ENV_SERVICE_MONITOR_LABELS}: not JSON ({err}): {text!r}") from None
    if not isinstance(labels, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in labels.items()
    ):
        raise ValueError(
            f"{ENV_SERVICE_MONITOR_LABELS}: a JSON object of string labels, not {text!r}"
        )
    return tuple(sorted(labels.items()))


def with_environment(facts: ClusterFacts) -> ClusterFacts:
    """``facts`` with what the operator's environment sets (ENV_KEDA_AUTHENTICATION,
    ENV_SERVICE_MONITOR_LABELS): the running operator and ``klio-operator render`` alike."""
    return dataclasses.replace(
        facts,
        keda_authentication=os.environ.get(ENV_KEDA_AUTHENTICATION) or facts.keda_authentication,
        service_monitor_labels=service_monitor_labels(os.environ.get(ENV_SERVICE_MONITOR_LABELS))
        or facts.service_monitor_labels,
    )


def _service_monitor(owner: Owner, facts: ClusterFacts) -> dict[str, Any]:
    metadata = _metadata(owner, owner.name, "metrics")
    # the job's own labels win: pruning and drift repair find its children by them
    metadata["labels"] = {**dict(facts.service_monitor_labels), **metadata["labels"]}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels_for(owner.name, "metrics")},
            "endpoints": [
                {
                    "port": "metrics",
                    "path": worker_contract.METRICS_PATH,
                    "interval": "30s",
                    # The worker's series carry `job` = the Klio job (klio_messages_received_total
                    # {job=...}); without this Prometheus renames it exported_job.
                    "honorLabels": True,
                }
            ],
        },
    }


def cpu_autoscaling_advice(spec: KlioJobSpec) -> list[str]:
    """What the HorizontalPodAutoscaler a job gets without KEDA cannot do of its autoscaling."""
    assert spec.autoscaling is not None
    advice = []
    resources = spec.resources
    claimed = {
        **((resources.limits or {}) if resources else {}),  # a limit alone is also the request
        **((resources.requests or {}) if resources else {}),
    }
    if "cpu" not in claimed:
        advice.append(
            "spec.resources.requests.cpu: not set (nor limits.cpu), so unless the namespace's"
            " LimitRange sets one, the HorizontalPodAutoscaler used without KEDA cannot measure"
            " CPU utilization and will not scale the workers"
        )
    if spec.autoscaling.min_replicas == 0:
        advice.append(
            "spec.autoscaling.minReplicas: 0 needs KEDA (scale to zero on an empty backlog);"
            " the HorizontalPodAutoscaler used without KEDA keeps at least 1 worker"
        )
    return advice


def _hpa(owner: Owner, spec: KlioJobSpec) -> dict[str, Any]:
    assert spec.autoscaling is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner, owner.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": max(spec.autoscaling.min_replicas, 1),  # HPA cannot scale to zero
            "maxReplicas": spec.autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.autoscaling.target_cpu_utilization_percentage
                            or 80,
                        },
                    },
                }
            ],
        },
    }


OLDEST_UNACKED_SECONDS = 60  # scale up when a message has waited longer than this


def _scaled_object(
    owner: Owner, spec: KlioJobSpec, facts: ClusterFacts, subscriptions: Sequence[str]
) -> dict[str, Any]:
    assert spec.autoscaling is not None
    auth = {"name": facts.keda_authentication}
    triggers: list[dict[str, Any]] = []
    for subscription in subscriptions:
        triggers.append(
            {
                "type": "gcp-pubsub",
                "authenticationRef": auth,
                "metadata": {
                    "subscriptionName": subscription,
                    "mode": "SubscriptionSize",
                    "value": str(spec.autoscaling.target_backlog_per_replica),
                },
            }
        )
        triggers.append(
            {
                "type": "gcp-pubsub",
                "authenticationRef": auth,
                "metadata": {
                    "subscriptionName": subscription,
                    "mode": "OldestUnackedMessageAge",
                    "value": str(OLDEST_UNACKED_SECONDS),
                },
            }
        )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(owner, owner.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": {"name": owner.name},
            "minReplicaCount": spec.autoscaling.min_replicas,
            "maxReplicaCount": spec.autoscaling.max_replicas,
            "triggers": triggers,
        },
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the embedded klio-job.yaml) as readable `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def render_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """Objects as a multi-document YAML stream (what `klio-operator render` prints)."""
    return yaml.dump_all([dict(obj) for obj in objects], Dumper=_BlockDumper, sort_keys=False)
