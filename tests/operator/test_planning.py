"""Pure planning: every spec feature → the children and Pub/Sub resources it needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from klio_operator import worker_contract
from klio_operator.dag import input_subscription
from klio_operator.models import DataOutput, KlioJobSpec, SpecError, parse_spec
from klio_operator.planning import (
    ClusterFacts,
    Owner,
    ParentInfo,
    Plan,
    PlanningError,
    event_topics_of,
    plan_job,
    service_monitor_labels,
)
from klio_runtime.config import parse_config
from klio_runtime.pipeline import build_pipeline
from klio_runtime.runner import beam_options

from tests.runtime.helpers import beam_pubsub_io

OWNER = Owner("child", "team", "uid-123")


def spec(**fields: Any) -> KlioJobSpec:
    return KlioJobSpec.model_validate({"image": "reg.example/job:1", **fields})


def by_kind(plan: Plan) -> dict[str, dict[str, Any]]:
    return {child["kind"]: child for child in plan.children}


def worker_container(plan: Plan, kind: str = "Deployment") -> dict[str, Any]:
    return by_kind(plan)[kind]["spec"]["template"]["spec"]["containers"][0]


PARENTS = [
    ParentInfo("a", "proj-a", (DataOutput(location="gs://b/a", file_suffix=".ogg"),)),
    ParentInfo("b", "klio-local", (DataOutput(location="/data/b"),)),
]


def test_streaming_job_gets_config_deployment_service() -> None:
    plan = plan_job(OWNER, spec(parents=["a", "b"]), PARENTS)
    assert sorted(by_kind(plan)) == ["ConfigMap", "Deployment", "Service"]
    assert plan.workload == ("Deployment", "child")
    assert plan.desired_workers == 1
    assert plan.selector == (
        "app.kubernetes.io/component=worker,app.kubernetes.io/instance=child,"
        "app.kubernetes.io/name=klio-job"
    )


def test_config_map_is_valid_for_the_runtime_and_wires_the_dag() -> None:
    job = spec(
        parents=["a", "b"],
        config={"model": "m.bin"},
        threadPoolSize=4,
        timeoutSeconds=30,
        retries=2,
        allowNonKlioMessages=True,
        pipelineOptions={"experiments": ["x"], "runner": "DirectRunner"},
        dataOutputs=[{"location": "gs://b/out", "fileSuffix": ".png", "force": True}],
    )
    plan = plan_job(OWNER, job, PARENTS)
    data = by_kind(plan)["ConfigMap"]["data"][worker_contract.CONFIG_FILE]
    config = parse_config(yaml.safe_load(data))
    assert config.job_name == "child"
    assert config.pipeline_options.runner == "FnApiRunner"  # the spec's runner, in-process
    assert config.pipeline_options.streaming is True
    assert config.pipeline_options.experiments == ["x"]
    jc = config.job_config
    assert (jc.thread_pool_size, jc.timeout_seconds, jc.retries) == (4, 30, 2)
    assert jc.allow_non_klio_messages is True
    assert jc.model == "m.bin"  # type: ignore[attr-defined]
    inputs = [(i.topic, i.subscription) for i in jc.events.inputs]  # type: ignore[union-attr]
    assert inputs == [
        (
            "projects/proj-a/topics/klio.team.a.output",
            "projects/klio-local/subscriptions/klio.team.child.from.a",
        ),
        (
            "projects/klio-local/topics/klio.team.b.output",
            "projects/klio-local/subscriptions/klio.team.child.from.b",
        ),
    ]
    assert jc.events.outputs[0].topic == "projects/klio-local/topics/klio.team.child.output"  # type: ignore[union-attr]
    # Data inputs default to the parents' outputs, in order.
    assert [(d.type, d.location, d.file_suffix) for d in jc.data.inputs] == [
        ("gcs", "gs://b/a", ".ogg"),
        ("file", "/data/b", ""),
    ]
    assert [(d.location, d.force) for d in jc.data.outputs] == [("gs://b/out", True)]


def test_explicit_data_inputs_win_over_parents_outputs() -> None:
    job = spec(parents=["a"], dataInputs=[{"location": "gs://x/in", "ping": True}])
    plan = plan_job(OWNER, job, PARENTS[:1])
    config = parse_config(yaml.safe_load(by_kind(plan)["ConfigMap"]["data"]["klio-job.yaml"]))
    assert [(d.location, d.ping) for d in config.job_config.data.inputs] == [("gs://x/in", True)]


def test_pubsub_topics_subscriptions_and_dead_letters() -> None:
    plan = plan_job(OWNER, spec(parents=["a", "b"]), PARENTS)
    dead = "projects/klio-local/topics/klio.team.child.dead-letter"
    assert [t.name for t in plan.pubsub.topics] == [
        "projects/klio-local/topics/klio.team.child.output",
        dead,
    ]
    subs = {s.name: s for s in plan.pubsub.subscriptions}
    keeper = subs["projects/klio-local/subscriptions/klio.team.child.dead-letter"]
    assert keeper.topic == dead and keeper.dead_letter_topic is None  # keeps dead letters
    from_a = subs["projects/klio-local/subscriptions/klio.team.child.from.a"]
    assert from_a.topic == "projects/proj-a/topics/klio.team.a.output"
    assert from_a.dead_letter_topic == dead and from_a.max_delivery_attempts >= 5


UPLOADS_SUBSCRIPTION = input_subscription(
    "klio-local", "team", "child", "projects/p/topics/uploads"
)


def test_an_input_subscription_is_named_after_its_topic_not_its_place() -> None:
    # reordering inputs keeps each subscription (one named by position would be replaced, its
    # backlog lost); a topic read twice without a subscription of its own is refused by field
    inputs = [
        {"type": "pubsub", "topic": "projects/p/topics/uploads"},
        {"type": "pubsub", "topic": "projects/p/topics/reprocess"},
    ]
    forward = plan_job(OWNER, spec(eventInputs=inputs))
    backward = plan_job(OWNER, spec(eventInputs=inputs[::-1]))
    assert set(forward.pubsub.subscriptions) == set(backward.pubsub.subscriptions)
    assert "/subscriptions/klio.team.child.input.uploads." in UPLOADS_SUBSCRIPTION
    # same id, another project: another subscription
    assert input_subscription("klio-local", "team", "child", "projects/q/topics/uploads") != (
        UPLOADS_SUBSCRIPTION
    )
    twice = r"eventInputs\[1\]\.topic: .* by spec\.eventInputs\[0\]"
    with pytest.raises(PlanningError, match=twice):
        plan_job(OWNER, spec(eventInputs=[inputs[0], inputs[0]]))


def test_a_subscription_made_under_an_earlier_name_is_kept_with_its_topic() -> None:
    inputs = [
        {"type": "pubsub", "topic": "projects/p/topics/uploads"},
        {"type": "pubsub", "topic": "projects/p/topics/reprocess"},
    ]
    earlier = "projects/klio-local/subscriptions/klio.team.child.input-0"
    plan = plan_job(
        OWNER, spec(eventInputs=inputs), kept_subscriptions={"projects/p/topics/uploads": earlier}
    )
    reads = {s.topic: s.name for s in plan.pubsub.subscriptions}
    assert reads["projects/p/topics/uploads"] == earlier
    assert reads["projects/p/topics/reprocess"] == input_subscription(
        "klio-local", "team", "child", "projects/p/topics/reprocess"
    )
    config_map = yaml.safe_load(by_kind(plan)["ConfigMap"]["data"][worker_contract.CONFIG_FILE])
    read_by_workers = [i.get("subscription") for i in config_map["job_config"]["events"]["inputs"]]
    assert earlier in read_by_workers
    assert UPLOADS_SUBSCRIPTION not in read_by_workers


def test_root_event_inputs_topic_gets_our_subscription_and_theirs_is_read_only() -> None:
    job = spec(
        eventInputs=[
            {"type": "pubsub", "topic": "projects/p/topics/uploads"},
            {"type": "pubsub", "subscription": "projects/p/subscriptions/theirs"},
            {"type": "file", "location": "gs://b/ids.txt"},
        ]
    )
    plan = plan_job(OWNER, job)
    names = [s.name for s in plan.pubsub.subscriptions]
    assert UPLOADS_SUBSCRIPTION in names
    assert "projects/p/subscriptions/theirs" not in names
    assert plan.external_subscriptions == ("projects/p/subscriptions/theirs",)
    config = parse_config(yaml.safe_load(by_kind(plan)["ConfigMap"]["data"]["klio-job.yaml"]))
    kinds = [
        (i.type, getattr(i, "subscription", None) or getattr(i, "location", None))
        for i in config.job_config.events.inputs
    ]
    assert kinds == [
        ("pubsub", UPLOADS_SUBSCRIPTION),
        ("pubsub", "projects/p/subscriptions/theirs"),
        ("file", "gs://b/ids.txt"),
    ]


def test_another_namespaces_topics_and_subscriptions_are_not_read() -> None:
    # what the operator made for namespace team-b's jobs is not for a KlioJob of team to read
    for field, name in (
        ("topic", "projects/p/topics/klio.team-b.secret.output"),
        ("subscription", "klio.team-b.secret.from.ingest"),
        ("subscription", "klio.team-b.secret.input-0"),  # the earlier naming, still kept
    ):
        with pytest.raises(PlanningError) as caught:
            plan_job(OWNER, spec(eventInputs=[{"type": "pubsub", field: name}]))
        assert caught.value.errors == [
            f"spec.eventInputs[0].{field}: {name} is the operator's for namespace team-b's"
            " jobs; a KlioJob reads only its own namespace's"
        ]
    # its own namespace's, and names of the user's own that merely start with klio., are read
    for name in ("klio.team.ingest.output", "klio.raw.audio", "klio.raw.audio.v2"):
        plan_job(OWNER, spec(eventInputs=[{"type": "pubsub", "topic": name}]))


def test_bare_topic_and_subscription_ids_are_in_the_jobs_project() -> None:
    # the CRD documents "projects/P/topics/T, or T in the job's project"
    job = spec(
        pipelineOptions={"project": "proj"},
        eventInputs=[
            {"type": "pubsub", "topic": "uploads"},
            {"type": "pubsub", "topic": "more", "subscription": "theirs"},
        ],
    )
    plan = plan_job(OWNER, job)
    ours = [s for s in plan.pubsub.subscriptions if ".input." in s.name]
    assert [s.topic for s in ours] == ["projects/proj/topics/uploads"]
    assert plan.external_subscriptions == ("projects/proj/subscriptions/theirs",)
    config = parse_config(yaml.safe_load(by_kind(plan)["ConfigMap"]["data"]["klio-job.yaml"]))
    assert [(i.topic, i.subscription) for i in config.job_config.events.inputs] == [
        (
            "projects/proj/topics/uploads",
            input_subscription("proj", "team", "child", "projects/proj/topics/uploads"),
        ),
        ("projects/proj/topics/more", "projects/proj/subscriptions/theirs"),
    ]
    # what a child publishes its bottom-up requests to
    assert event_topics_of(job, "proj") == (
        "projects/proj/topics/uploads",
        "projects/proj/topics/more",
    )


def test_project_from_pipeline_options_and_facts() -> None:
    plan = plan_job(OWNER, spec(pipelineOptions={"project": "mine"}))
    assert plan.pubsub.topics[0].name == "projects/mine/topics/klio.team.child.output"
    plan = plan_job(OWNER, spec(), facts=ClusterFacts(default_project="ops"))
    assert plan.pubsub.topics[0].name.startswith("projects/ops/")


def test_pod_security_is_restricted_and_probes_hit_the_worker_contract() -> None:
    plan = plan_job(OWNER, spec(serviceAccountName="klio-sa", imagePullPolicy="Always"))
    pod = by_kind(plan)["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert container["command"] == list(worker_contract.WORKER_COMMAND)
    assert container["livenessProbe"]["httpGet"]["path"] == worker_contract.LIVENESS_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == worker_contract.READINESS_PATH
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": worker_contract.HEALTH_PORT, "metrics": worker_contract.METRICS_PORT}
    assert pod["serviceAccountName"] == "klio-sa"
    assert container["imagePullPolicy"] == "Always"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[worker_contract.CONFIG_DIR]["readOnly"] is True
    assert worker_contract.SCRATCH_DIR in mounts  # writable scratch on a read-only root


def test_env_and_resources() -> None:
    job = spec(
        env=[{"name": "A", "value": "1"}, {"name": "KLIO_JOB_NAME", "value": "override"}],
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
    )
    container = worker_container(plan_job(OWNER, job))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["A"] == "1" and env["KLIO_JOB_NAME"] == "override"
    assert env["KLIO_DEAD_LETTER_TOPIC"].endswith("klio.team.child.dead-letter")
    assert env["NUMBA_CACHE_DIR"].startswith(worker_contract.SCRATCH_DIR)  # read-only root
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": 2},
    }


def test_rolling_update_drains_before_old_workers_go() -> None:
    plan = plan_job(OWNER, spec(timeoutSeconds=120))
    deployment = by_kind(plan)["Deployment"]["spec"]
    assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    grace = deployment["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == worker_contract.DRAIN_SECONDS + 120


def test_a_config_change_changes_the_pod_template() -> None:
    one = by_kind(plan_job(OWNER, spec(config={"k": 1})))["Deployment"]
    two = by_kind(plan_job(OWNER, spec(config={"k": 2})))["Deployment"]
    annotations = lambda d: d["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert annotations(one) != annotations(two)  # so the workers roll over to the new config


def test_owner_references_and_labels_on_every_child() -> None:
    plan = plan_job(OWNER, spec(autoscaling={"maxReplicas": 3}), facts=ClusterFacts(True, True))
    assert len(plan.children) == 5
    for child in plan.children:
        meta = child["metadata"]
        assert meta["namespace"] == "team"
        ref = meta["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "KlioJob",
            "child",
            "uid-123",
            True,
        )
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == "child"
        assert labels["app.kubernetes.io/managed-by"] == "klio-operator"
        assert {
            "app.kubernetes.io/name",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
        } <= set(labels)


def test_rendering_without_a_cluster_has_no_owner_references() -> None:
    plan = plan_job(Owner("child", "team"), spec())
    assert all("ownerReferences" not in c["metadata"] for c in plan.children)


def test_service_monitor_only_when_prometheus_operator_exists() -> None:
    assert "ServiceMonitor" not in by_kind(plan_job(OWNER, spec()))
    monitor = by_kind(plan_job(OWNER, spec(), facts=ClusterFacts(has_service_monitor=True)))[
        "ServiceMonitor"
    ]
    assert monitor["spec"]["endpoints"][0]["path"] == worker_contract.METRICS_PATH
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # the Klio job's `job` label
    service = by_kind(plan_job(OWNER, spec()))["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_the_workers_service_monitor_carries_the_labels_prometheus_selects_by() -> None:
    # kube-prometheus-stack selects ServiceMonitors by `release` (before: no way to give it)
    labels = service_monitor_labels('{"release": "kube-prometheus-stack", "klio.io/job": "x"}')
    facts = ClusterFacts(has_service_monitor=True, service_monitor_labels=labels)
    monitor = by_kind(plan_job(OWNER, spec(), facts=facts))["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["klio.io/job"] == "child"  # the job's own win
    assert service_monitor_labels("") == ()
    with pytest.raises(ValueError, match="KLIO_SERVICE_MONITOR_LABELS"):
        service_monitor_labels('["release"]')


def test_hpa_without_keda() -> None:
    job = spec(
        autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCpuUtilizationPercentage": 70}
    )
    plan = plan_job(OWNER, job)
    hpa = by_kind(plan)["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "child"}
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert "replicas" not in by_kind(plan)["Deployment"]["spec"]  # the HPA owns the count


def test_a_cpu_target_above_the_request_reaches_the_hpa() -> None:
    """As in the HPA, utilization is of the CPU request: a worker allowed to burst past it may
    be meant to run at 150% of it."""
    job = spec(
        autoscaling={"maxReplicas": 4, "targetCpuUtilizationPercentage": 150},
        resources={"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}},
    )
    hpa = by_kind(plan_job(OWNER, job))["HorizontalPodAutoscaler"]["spec"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 150
    with pytest.raises(SpecError, match="targetCpuUtilizationPercentage"):
        parse_spec(
            {
                "image": "reg.example/job:1",
                "autoscaling": {"maxReplicas": 4, "targetCpuUtilizationPercentage": 0},
            }
        )


def test_cpu_autoscaling_advises_what_the_hpa_cannot_do() -> None:
    """Without KEDA the HPA measures CPU against the request and cannot scale to zero: the job
    still gets it, with advice naming the fields (the handler warns in an Event)."""
    plan = plan_job(OWNER, spec(autoscaling={"minReplicas": 0, "maxReplicas": 3}))
    assert [line.split(":")[0] for line in plan.advice] == [
        "spec.resources.requests.cpu",
        "spec.autoscaling.minReplicas",
    ]
    assert by_kind(plan)["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 1
    for resources in ({"requests": {"cpu": "500m"}}, {"limits": {"cpu": "1"}}):
        claimed = spec(autoscaling={"maxReplicas": 3}, resources=resources)
        assert plan_job(OWNER, claimed).advice == ()
    to_zero = spec(autoscaling={"minReplicas": 0, "maxReplicas": 3})
    assert plan_job(OWNER, to_zero, facts=ClusterFacts(has_keda=True)).advice == ()
    assert plan_job(OWNER, spec()).advice == ()  # no autoscaling asked, none advised


def test_keda_scales_on_backlog_and_oldest_unacked_age() -> None:
    job = spec(
        parents=["a"],
        autoscaling={"minReplicas": 0, "maxReplicas": 5, "targetBacklogPerReplica": 50},
    )
    plan = plan_job(OWNER, job, PARENTS[:1], ClusterFacts(has_keda=True))
    kinds = by_kind(plan)
    assert "HorizontalPodAutoscaler" not in kinds
    scaled = kinds["ScaledObject"]["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 5)
    modes = {(t["metadata"]["mode"], t["metadata"]["value"]) for t in scaled["triggers"]}
    assert modes == {("SubscriptionSize", "50"), ("OldestUnackedMessageAge", "60")}
    assert {t["metadata"]["subscriptionName"] for t in scaled["triggers"]} == {
        "projects/klio-local/subscriptions/klio.team.child.from.a"
    }


def test_suspend_scales_to_zero_keeps_subscriptions_drops_autoscaler() -> None:
    job = spec(parents=["a"], suspend=True, autoscaling={"maxReplicas": 4})
    plan = plan_job(OWNER, job, PARENTS[:1], ClusterFacts(has_keda=True))
    kinds = by_kind(plan)
    assert kinds["Deployment"]["spec"]["replicas"] == 0
    assert "ScaledObject" not in kinds and "HorizontalPodAutoscaler" not in kinds
    assert plan.desired_workers == 0
    assert "projects/klio-local/subscriptions/klio.team.child.from.a" in [
        s.name for s in plan.pubsub.subscriptions
    ]


def test_replicas() -> None:
    plan = plan_job(OWNER, spec(replicas=3))
    assert by_kind(plan)["Deployment"]["spec"]["replicas"] == 3 and plan.desired_workers == 3


def test_batch_job_is_a_kubernetes_job_named_by_config() -> None:
    job = spec(mode="batch", replicas=2, eventInputs=[{"type": "file", "location": "gs://b/ids"}])
    plan = plan_job(OWNER, job)
    kinds = by_kind(plan)
    assert "Deployment" not in kinds and "Service" not in kinds
    batch = kinds["Job"]
    assert batch["metadata"]["name"].startswith("child-")
    assert batch["spec"]["parallelism"] == 2 and batch["spec"]["suspend"] is False
    assert batch["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    config = parse_config(yaml.safe_load(kinds["ConfigMap"]["data"]["klio-job.yaml"]))
    assert config.pipeline_options.streaming is False
    other = plan_job(OWNER, spec(mode="batch", replicas=2, config={"k": 1}))
    assert by_kind(other)["Job"]["metadata"]["name"] != batch["metadata"]["name"]
    # A Job's pod template is immutable: anything in it makes a new Job (a new run); its
    # mutable fields (parallelism, suspend) keep the run
    name, base = batch["metadata"]["name"], job.model_dump(by_alias=True, exclude_none=True)
    for changed in ({"image": "reg.example/job:2"}, {"env": [{"name": "A", "value": "1"}]},
                    {"resources": {"requests": {"cpu": "1"}}}):
        other_job = KlioJobSpec.model_validate({**base, **changed})
        assert by_kind(plan_job(OWNER, other_job))["Job"]["metadata"]["name"] != name, changed
    for kept in ({"replicas": 3}, {"suspend": True}):
        same_run = KlioJobSpec.model_validate({**base, **kept})
        assert by_kind(plan_job(OWNER, same_run))["Job"]["metadata"]["name"] == name, kept
    suspended = by_kind(plan_job(OWNER, spec(mode="batch", suspend=True)))["Job"]
    assert suspended["spec"]["suspend"] is True
    # scaled to 0 (kubectl scale): no worker runs, as the status's desiredWorkers 0 says
    paused = plan_job(OWNER, KlioJobSpec.model_validate({**base, "replicas": 0}))
    assert by_kind(paused)["Job"]["spec"]["parallelism"] == 0 and paused.desired_workers == 0


@pytest.mark.parametrize(
    ("runner", "beam"), [("dataflow", "DataflowRunner"), ("flink", "FlinkRunner")]
)
def test_distributed_runners_get_a_launcher_job(runner: str, beam: str) -> None:
    options = {
        "region": "europe-west1",
        "temp_location": "gs://tmp-bucket/child",
        "flink_master": "flink-jobmanager:8081",
    }
    plan = plan_job(OWNER, spec(runner=runner, pipelineOptions=options))
    kinds = by_kind(plan)
    assert "Deployment" not in kinds
    launcher = kinds["Job"]
    assert launcher["metadata"]["labels"]["app.kubernetes.io/component"] == "launcher"
    container = launcher["spec"]["template"]["spec"]["containers"][0]
    # a streaming Dataflow job is updated in place when its spec changes
    update = ["--update"] if runner == "dataflow" else []
    assert container["command"] == [*worker_contract.LAUNCHER_COMMAND, *update]
    batch = by_kind(plan_job(OWNER, spec(runner=runner, mode="batch", pipelineOptions=options)))
    assert batch["Job"]["spec"]["template"]["spec"]["containers"][0]["command"] == list(
        worker_contract.LAUNCHER_COMMAND
    )
    config = parse_config(yaml.safe_load(kinds["ConfigMap"]["data"]["klio-job.yaml"]))
    assert config.pipeline_options.runner == beam
    assert config.pipeline_options.as_dict()["flink_master"] == "flink-jobmanager:8081"
    assert plan.workload == ("Job", launcher["metadata"]["name"])


def test_unresolved_parent_is_an_error_naming_it() -> None:
    with pytest.raises(PlanningError, match=r"spec\.parents: not resolved: b"):
        plan_job(OWNER, spec(parents=["a", "b"]), PARENTS[:1])


def test_config_that_the_runtime_refuses_is_an_error_with_its_path() -> None:
    with pytest.raises(PlanningError) as caught:
        plan_job(OWNER, spec(config={"blocking": "not-a-bool"}))
    assert any("job_config.blocking" in error for error in caught.value.errors)


def test_a_dataflow_launcher_submits_a_pipeline_wired_to_the_planned_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataflow = {"region": "europe-west1", "temp_location": "gs://proj-tmp/child"}
    job = spec(runner="dataflow", parents=["a", "b"], pipelineOptions=dataflow)
    plan = plan_job(OWNER, job, PARENTS)
    launcher = worker_container(plan, "Job")
    for var in launcher["env"]:  # what the launcher's pod sees
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
    data = by_kind(plan)["ConfigMap"]["data"][worker_contract.CONFIG_FILE]
    config = parse_config(yaml.safe_load(data))
    submitted = beam_options(config).get_all_options()  # the launcher's `klio job run`
    assert (submitted["runner"], submitted["streaming"]) == ("DataflowRunner", True)
    assert submitted["job_name"] == "team-child"  # unique per namespace on Dataflow

    # The graph is the runner's to run: built here for Flink, which checks no GCP credentials.
    options = beam_options(config, "FlinkRunner")
    found = beam_pubsub_io(build_pipeline(config, lambda pcoll, _: pcoll, options))
    subscriptions = "projects/klio-local/subscriptions"
    from_parents = [f"{subscriptions}/klio.team.child.from.{parent}" for parent in "ab"]
    assert sorted(path for _, path in found["read"]) == from_parents
    assert {sub.name for sub in plan.pubsub.subscriptions} >= set(from_parents)
    # its output topic and its dead-letter topic, both planned
    assert set(found["write"]) == {topic.name for topic in plan.pubsub.topics}


@pytest.mark.parametrize(
    ("runner", "options", "errors"),
    [
        (
            "dataflow",
            {},
            [
                "spec.pipelineOptions.region: required by the dataflow runner",
                "spec.pipelineOptions.temp_location: required by the dataflow runner",
            ],
        ),
        (
            "dataflow",
            {"region": "europe-west1", "staging_location": "/tmp/staging"},
            ["spec.pipelineOptions.staging_location: must be a gs:// path"],
        ),
        ("flink", {"parallelism": 2}, ["spec.pipelineOptions.flink_master: required"]),
    ],
)
def test_a_runner_missing_what_it_needs_to_submit_is_refused_naming_the_option(
    runner: str, options: dict[str, Any], errors: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"image": "reg.example/job:1", "runner": runner, "pipelineOptions": options})
    assert len(caught.value.errors) == len(errors)
    for error, expected in zip(caught.value.errors, errors, strict=True):
        assert error.startswith(expected), error


def test_runner_or_streaming_options_saying_otherwise_than_the_spec_are_refused() -> None:
    # as a Klio config writes them: refused, naming each, not silently overridden
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "image": "reg.example/job:1",
                "pipelineOptions": {"runner": "DataflowRunner", "streaming": False},
            }
        )
    errors = caught.value.errors
    assert any(
        e.startswith("spec.pipelineOptions.runner: 'DataflowRunner' is not spec.runner")
        for e in errors
    ), errors
    assert any(
        e.startswith("spec.pipelineOptions.streaming: False is not spec.mode") for e in errors
    )
    # saying the same as the spec is fine
    parse_spec(
        {
            "image": "reg.example/job:1",
            "mode": "batch",
            "pipelineOptions": {"runner": "DirectRunner", "streaming": False},
        }
    )
