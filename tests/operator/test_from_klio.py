"""`klio-operator manifest`: Klio job directories → KlioJob manifests that the API server and the
operator accept, a DAG's topic (or event file) edges becoming spec.parents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from klio_operator.cli import main
from klio_operator.from_klio import (
    ConversionChoices,
    ConversionError,
    KlioJobDir,
    kliojob_manifests,
)
from klio_runtime.config import parse_config

from tests.crd.schema_tools import cel_errors, error_lines

REPO = Path(__file__).resolve().parents[2]

# Two Klio jobs of one DAG, as Klio users write them: Pub/Sub events, GCS data, Dataflow options.
PARENT = """
version: 2
job_name: catvdog-ingest
pipeline_options:
  streaming: true
  runner: DataflowRunner
  project: klio-demo
  worker_harness_container_image: gcr.io/klio-demo/catvdog-ingest
  experiments: [beam_fn_api]
  region: us-central1
  temp_location: gs://klio-demo-dataflow-tmp/ingest
  num_workers: 2
  max_num_workers: 6
  autoscaling_algorithm: THROUGHPUT_BASED
job_config:
  model_file: model.h5
  thread_pool_size: 4
  timeout_seconds: 2.5
  metrics:
    logger: false
  events:
    inputs:
      - type: pubsub
        topic: projects/klio-demo/topics/new-images
        subscription: projects/klio-demo/subscriptions/new-images-ingest
    outputs:
      - type: pubsub
        topic: projects/klio-demo/topics/ingest-output
  data:
    inputs:
      - type: gcs
        location: gs://klio-demo/raw
        file_suffix: .jpg
    outputs:
      - type: gcs
        location: gs://klio-demo/ingested
        file_suffix: .jpg
"""
CHILD = """
version: 2
job_name: catvdog-classify
pipeline_options:
  streaming: true
  project: klio-demo
  worker_harness_container_image: gcr.io/klio-demo/catvdog-classify
job_config:
  allow_non_klio_messages: true
  events:
    inputs:
      - type: pubsub
        topic: ingest-output
        subscription: projects/klio-demo/subscriptions/classify
    outputs:
      - type: pubsub
        topic: projects/klio-demo/topics/classified
  data:
    inputs:
      - type: gcs
        location: gs://klio-demo/ingested
        file_suffix: .jpg
        ping: true
    outputs:
      - type: gcs
        location: gs://klio-demo/classified
        file_suffix: .json
        force: true
"""


def job_dir(tmp_path: Path, name: str, config: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "klio-job.yaml").write_text(config)
    return directory


def manifest(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(main, ["manifest", *args])
    documents = [d for d in yaml.safe_load_all(result.stdout) if d] if result.exit_code == 0 else []
    return result.exit_code, documents, result.stderr


def valid(document: dict[str, Any]) -> None:
    assert error_lines(document) == []
    assert cel_errors(document) == []


def test_a_dag_of_klio_jobs_becomes_kliojobs_wired_by_parents(tmp_path: Path) -> None:
    parent = job_dir(tmp_path, "ingest", PARENT)
    child = job_dir(tmp_path, "classify", CHILD)
    code, documents, stderr = manifest("-j", str(parent), "-j", str(child), "--image-tag", "v3")
    assert code == 0, stderr
    ingest, classify = documents
    for document in documents:
        valid(document)
    assert ingest["metadata"] == {"name": "catvdog-ingest"}
    assert ingest["spec"]["image"] == "gcr.io/klio-demo/catvdog-ingest:v3"
    assert ingest["spec"]["eventInputs"] == [
        {
            "type": "pubsub",
            "topic": "projects/klio-demo/topics/new-images",
            "subscription": "projects/klio-demo/subscriptions/new-images-ingest",
        }
    ]
    assert "parents" not in ingest["spec"]
    assert ingest["spec"]["dataInputs"] == [
        {"location": "gs://klio-demo/raw", "fileSuffix": ".jpg"}
    ]
    # Dataflow's worker counts become the cluster's
    assert ingest["spec"]["replicas"] == 2
    assert ingest["spec"]["autoscaling"] == {"minReplicas": 2, "maxReplicas": 6}
    assert ingest["spec"]["threadPoolSize"] == 4
    assert ingest["spec"]["timeoutSeconds"] == 3
    # the job's own keys and Klio's settings without a field, as written
    assert ingest["spec"]["config"] == {"model_file": "model.h5", "metrics": {"logger": False}}
    options = ingest["spec"]["pipelineOptions"]
    assert "runner" not in options and "streaming" not in options
    assert "worker_harness_container_image" not in options  # spec.image: the pods run it
    assert options["project"] == "klio-demo" and options["num_workers"] == 2

    # the child read the parent's topic (a bare id in its own project): now it names the parent
    assert classify["spec"]["parents"] == ["catvdog-ingest"]
    assert "eventInputs" not in classify["spec"]
    assert classify["spec"]["dataInputs"] == [
        {"location": "gs://klio-demo/ingested", "fileSuffix": ".jpg", "ping": True}
    ]
    assert classify["spec"]["dataOutputs"] == [
        {"location": "gs://klio-demo/classified", "fileSuffix": ".json", "force": True}
    ]
    assert classify["spec"]["allowNonKlioMessages"] is True
    assert classify["spec"]["image"] == "gcr.io/klio-demo/catvdog-classify:v3"

    warnings = stderr.splitlines()
    assert any(
        "ingest: pipeline_options.runner: DataflowRunner is not kept" in line for line in warnings
    )
    assert any("ingest: job_config.timeout_seconds: 2.5 becomes 3" in line for line in warnings)
    # the child's output has no reader among the jobs given; the parent's has, and is silent
    assert any(
        "classify: job_config.events.inputs[0].subscription: projects/klio-demo/subscriptions/"
        "classify is not read" in line
        for line in warnings
    )
    outputs = [line for line in warnings if "events.outputs" in line]
    assert len(outputs) == 1 and "classify: " in outputs[0]
    assert "projects/klio-demo/topics/classified is not written" in outputs[0]


def test_the_manifests_render_as_the_operator_would_apply_them(tmp_path: Path) -> None:
    parent = job_dir(tmp_path, "ingest", PARENT)
    child = job_dir(tmp_path, "classify", CHILD)
    out = tmp_path / "kliojobs.yaml"
    result = CliRunner().invoke(
        main, ["manifest", "-j", str(parent), "-j", str(child), "-n", "team", "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rendered = CliRunner().invoke(main, ["render", "-f", str(out)])
    assert rendered.exit_code == 0, rendered.stderr
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    worker = yaml.safe_load(config_maps["catvdog-classify-config"]["data"]["klio-job.yaml"])
    (event_input,) = worker["job_config"]["events"]["inputs"]
    # the child reads the topic the operator makes for its parent
    assert event_input["topic"] == "projects/klio-demo/topics/klio.team.catvdog-ingest.output"
    assert worker["job_config"]["allow_non_klio_messages"] is True


def test_one_job_alone_keeps_its_topics_and_says_what_it_leaves_out(tmp_path: Path) -> None:
    child = job_dir(tmp_path, "classify", CHILD)
    code, (document,), stderr = manifest("-j", str(child))
    assert code == 0, stderr
    valid(document)
    assert document["spec"]["eventInputs"] == [
        {
            "type": "pubsub",
            "topic": "ingest-output",
            "subscription": "projects/klio-demo/subscriptions/classify",
        }
    ]
    assert document["spec"]["image"] == "gcr.io/klio-demo/catvdog-classify"
    assert "with one -j per job of a DAG wires them" in stderr


def test_dataflow_keeps_the_engine_options_with_the_tagged_image(tmp_path: Path) -> None:
    parent = job_dir(tmp_path, "ingest", PARENT.replace("  region: us-central1\n", ""))
    code, (document,), stderr = manifest(
        "-j", str(parent), "--runner", "dataflow", "--image-tag", "v3"
    )
    assert code == 0, stderr
    valid(document)
    spec = document["spec"]
    assert spec["runner"] == "dataflow"
    assert spec["pipelineOptions"]["worker_harness_container_image"] == (
        "gcr.io/klio-demo/catvdog-ingest:v3"
    )
    assert spec["pipelineOptions"]["region"] == "europe-west1"  # Klio's default
    assert "replicas" not in spec and "autoscaling" not in spec  # Dataflow scales its workers
    assert "runner" not in stderr


@pytest.mark.parametrize(
    ("change", "args", "expected"),
    [
        (
            ("  worker_harness_container_image: gcr.io/klio-demo/catvdog-classify\n", ""),
            (),
            "pipeline_options.worker_harness_container_image: not set",
        ),
        (
            ("job_name: catvdog-classify", "job_name: catvdog_classify"),
            (),
            "job_name: 'catvdog_classify' must be lowercase letters",
        ),
        (
            (
                "      - type: pubsub\n        topic: ingest-output",
                "      - type: avro\n        location: gs://b/in.avro\n"
                "      - type: pubsub\n        topic: ingest-output",
            ),
            (),
            "job_config.events.inputs[0].type: avro is not a KlioJob's event input",
        ),
        (
            (
                "        location: gs://klio-demo/classified\n",
                "        skip_klio_existence_check: true\n",
            ),
            (),
            "job_config.data.outputs[0].location: not set, and a KlioJob's data needs one",
        ),
        (("", ""), ("-n", "Team_A"), "--namespace: 'Team_A' is not a namespace name"),
        (("", ""), ("--runner", "flink"), "pipeline_options.flink_master: required by the flink"),
        (
            ("topic: ingest-output", "topic: my/pubsub/topic"),
            (),
            "job_config.events.inputs[0].topic: String should match pattern",
        ),
        (
            ("  events:\n", "  inputs: [{topic: a, subscription: b}]\n  events:\n"),
            (),
            "job_config.inputs: version 1's layout",
        ),
        (("", ""), ("--name", "Classify_1"), "--name: 'Classify_1' must be lowercase"),
    ],
)
def test_a_config_that_makes_no_kliojob_exits_2_naming_the_field(
    tmp_path: Path, change: tuple[str, str], args: tuple[str, ...], expected: str
) -> None:
    child = job_dir(tmp_path, "classify", CHILD.replace(*change))
    code, documents, stderr = manifest("-j", str(child), *args)
    assert code == 2
    assert expected in stderr, stderr
    assert documents == []


def test_name_and_image_given_make_a_valid_kliojob(tmp_path: Path) -> None:
    config = CHILD.replace("job_name: catvdog-classify", "job_name: catvdog_classify").replace(
        "  worker_harness_container_image: gcr.io/klio-demo/catvdog-classify\n", ""
    )
    child = job_dir(tmp_path, "classify", config)
    code, (document,), stderr = manifest(
        "-j", str(child), "--name", "classify", "--image", "reg.example/classify:1"
    )
    assert code == 0, stderr
    valid(document)
    assert document["metadata"]["name"] == "classify"
    assert document["spec"]["image"] == "reg.example/classify:1"


def test_the_local_example_dag_is_wired_by_its_event_files() -> None:
    dirs = [REPO / "examples" / job for job in ("track_ingest", "spectrograms", "loudness")]
    dirs.append(REPO / "examples" / "track_report")
    args = [arg for d in dirs for arg in ("-j", str(d))]
    code, documents, stderr = manifest(
        *args, "-O", "pipeline_options.worker_harness_container_image=reg.example/dag"
    )
    assert code == 0, stderr
    parents = {d["metadata"]["name"]: d["spec"].get("parents", []) for d in documents}
    # track-report reads loudness's events (its other parent's output only as data)
    assert parents == {
        "track-ingest": [],
        "spectrograms": ["track-ingest"],
        "loudness": ["track-ingest"],
        "track-report": ["loudness"],
    }
    ingest = documents[0]
    assert ingest["spec"]["eventInputs"] == [{"type": "file", "location": "./ids.txt"}]
    assert ingest["spec"]["mode"] == "batch"
    for document in documents:
        valid(document)
    # local data paths hold only inside each pod: said, by field
    assert "examples/track_ingest: job_config.data.outputs[0].location: '../dag/out/audio'" in (
        stderr
    )


def test_two_jobs_of_one_name_and_name_or_image_for_several_are_refused() -> None:
    config = parse_config(yaml.safe_load(CHILD))
    jobs = [KlioJobDir("a", "/a", config), KlioJobDir("b", "/b", config)]
    with pytest.raises(
        ConversionError, match="'catvdog-classify' is the name of several jobs given: a, b"
    ):
        kliojob_manifests(jobs)
    with pytest.raises(ConversionError, match="give one job directory"):
        kliojob_manifests(jobs, ConversionChoices(image="reg.example/x:1"))


def test_dataflow_workers_get_the_image_given(tmp_path: Path) -> None:
    config = PARENT.replace(
        "  worker_harness_container_image: gcr.io/klio-demo/catvdog-ingest\n", ""
    )
    parent = job_dir(tmp_path, "ingest", config)
    code, (document,), stderr = manifest(
        "-j", str(parent), "--runner", "dataflow", "--image", "reg.example/ingest:2"
    )
    assert code == 0, stderr
    assert document["spec"]["image"] == "reg.example/ingest:2"
    options = document["spec"]["pipelineOptions"]
    assert options["worker_harness_container_image"] == "reg.example/ingest:2"


def test_what_a_kliojob_cannot_keep_is_said_by_field(tmp_path: Path) -> None:
    batch = PARENT.replace("streaming: true", "streaming: false").replace(
        "        topic: projects/klio-demo/topics/ingest-output",
        "        topic: projects/klio-demo/topics/ingest-output\n        skip_klio_write: true",
    )
    code, (document,), stderr = manifest("-j", str(job_dir(tmp_path, "batch", batch)))
    assert code == 0, stderr
    assert document["spec"]["replicas"] == 2 and "autoscaling" not in document["spec"]
    assert "pipeline_options.max_num_workers: 6 is not kept: a batch KlioJob" in stderr
    assert "job_config.events.outputs[0].skip_klio_write: not kept" in stderr

    # the scaffold's dead-letter topic: the operator makes the job's own, which the workers use
    dead_letter = PARENT.replace(
        "job_config:\n", "job_config:\n  dead_letter_topic: projects/p/topics/d\n"
    )
    code, (document,), stderr = manifest("-j", str(job_dir(tmp_path, "dl", dead_letter)))
    assert code == 0, stderr
    assert "dead_letter_topic" not in document["spec"].get("config", {})
    assert "job_config.dead_letter_topic: projects/p/topics/d is not kept" in stderr

    more_than_most = PARENT.replace("num_workers: 2", "num_workers: 9")
    code, (document,), stderr = manifest("-j", str(job_dir(tmp_path, "many", more_than_most)))
    assert code == 0, stderr
    assert document["spec"]["autoscaling"] == {"minReplicas": 6, "maxReplicas": 6}
    assert "pipeline_options.num_workers: 9 is above max_num_workers (6)" in stderr

    by_subscription = CHILD.replace("        topic: ingest-output\n", "")
    code, (_, child), stderr = manifest(
        "-j",
        str(job_dir(tmp_path, "ingest", PARENT)),
        "-j",
        str(job_dir(tmp_path, "sub", by_subscription)),
    )
    assert code == 0, stderr
    assert "parents" not in child["spec"]  # nothing to match the subscription against
    assert "sub: job_config.events.inputs[0]: a subscription without its topic" in stderr


# A job Klio ran on Kubernetes (its run_on_kubernetes guide): DirectGKERunner, and the objects
# of kubernetes/*.yaml, as that guide has users write them.
GKE_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  namespace: audio-team
  name: catvdog-classify
  labels: {app: catvdog-classify}
spec:
  replicas: 3
  strategy: {type: Recreate}
  selector:
    matchLabels: {app: catvdog-classify}
  template:
    metadata:
      labels: {app: catvdog-classify}
    spec:
      serviceAccountName: classify-sa
      containers:
      - name: catvdog-classify
        image: gcr.io/klio-demo/catvdog-classify
        resources:
          requests: {cpu: "1", memory: 2Gi}
          limits: {memory: 4Gi}
        volumeMounts:
        - name: sa-key
          mountPath: /var/secrets/google
        env:
        - name: GOOGLE_APPLICATION_CREDENTIALS
          value: /var/secrets/google/key.json
        - name: MODEL_VARIANT
          value: small
      - name: log-shipper
        image: reg.example/shipper:1
      volumes:
      - name: sa-key
        secret: {secretName: klio-sa-key}
"""
GKE_AUTOSCALER = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: catvdog-classify, namespace: audio-team}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: catvdog-classify}
  minReplicas: 2
  maxReplicas: 8
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: catvdog-classify, namespace: audio-team}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app: catvdog-classify}
"""


def test_a_job_klio_ran_on_kubernetes_keeps_what_its_objects_said(tmp_path: Path) -> None:
    config = CHILD.replace("  streaming: true\n", "  streaming: true\n  runner: DirectGKERunner\n")
    child = job_dir(tmp_path, "classify", config)
    (child / "kubernetes").mkdir()
    (child / "kubernetes" / "deployment.yaml").write_text(GKE_DEPLOYMENT)
    (child / "kubernetes" / "hpa.yaml").write_text(GKE_AUTOSCALER)
    code, (document,), stderr = manifest("-j", str(child), "--image-tag", "v7")
    assert code == 0, stderr
    valid(document)
    assert document["metadata"] == {"name": "catvdog-classify", "namespace": "audio-team"}
    spec = document["spec"]
    assert spec["image"] == "gcr.io/klio-demo/catvdog-classify:v7"
    assert spec["replicas"] == 3
    assert spec["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "4Gi"},
    }
    assert spec["serviceAccountName"] == "classify-sa"
    # the key file's variable would name a file no KlioJob pod has: Workload Identity instead
    assert spec["env"] == [{"name": "MODEL_VARIANT", "value": "small"}]
    assert spec["autoscaling"] == {
        "minReplicas": 2,
        "maxReplicas": 8,
        "targetCpuUtilizationPercentage": 70,
    }
    assert spec["threadPoolSize"] == 1  # Klio's GKE runner handled one element at a time per pod
    for said in (
        "kubernetes/deployment.yaml: env GOOGLE_APPLICATION_CREDENTIALS is not kept",
        "kubernetes/deployment.yaml: volumes and volumeMounts are not kept",
        "kubernetes/deployment.yaml: container log-shipper is not kept",
        "kubernetes/hpa.yaml: PodDisruptionBudget catvdog-classify is not kept",
    ):
        assert said in stderr

    # --namespace chooses over the Deployment's; an image that differs from it is said
    moved = config.replace("catvdog-classify\n", "catvdog-classify-v2\n", 1)
    (child / "klio-job.yaml").write_text(
        moved.replace("image: gcr.io/klio-demo/catvdog-classify", "image: gcr.io/x/other")
    )
    code, (document,), stderr = manifest("-j", str(child), "-n", "elsewhere")
    assert code == 0, stderr
    assert document["metadata"]["namespace"] == "elsewhere"
    assert document["spec"]["image"] == "gcr.io/x/other"
    assert "not the Deployment's gcr.io/klio-demo/catvdog-classify" in stderr


def test_jobs_that_read_what_each_other_writes_are_refused(tmp_path: Path) -> None:
    # classify reads ingest-output and writes classified; this ingest reads classified back
    looped = PARENT.replace("topics/new-images", "topics/classified")
    code, documents, stderr = manifest(
        "-j", str(job_dir(tmp_path, "ingest", looped)), "-j", str(job_dir(tmp_path, "c", CHILD))
    )
    assert code == 2 and documents == []
    assert "'catvdog-ingest' reads what it writes, through" in stderr


def deployed(tmp_path: Path, files: dict[str, str], *args: str) -> tuple[int, Any, str]:
    config = CHILD.replace("  streaming: true\n", "  streaming: true\n  runner: DirectGKERunner\n")
    child = job_dir(tmp_path, "classify", config)
    (child / "kubernetes").mkdir()
    for name, text in files.items():
        (child / "kubernetes" / name).write_bytes(text.encode("latin-1"))
    code, documents, stderr = manifest("-j", str(child), *args)
    return code, documents, stderr


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"d.yaml": "kind: Deployment\nspec: [1, 2]\n"},
            "kubernetes/d.yaml: spec: must be a mapping",
        ),
        ({"d.yaml": "kind: Deployment\nmetadata: foo\n"}, "kubernetes/d.yaml: metadata: must be"),
        (
            {"d.yaml": "kind: Deployment\nspec: {template: {spec: {containers: {name: a}}}}\n"},
            "kubernetes/d.yaml: spec.template.spec.containers: must be a list",
        ),
        (
            {"d.yaml": "kind: Deployment\nspec: {template: {spec: {containers: [{env: [A=1]}]}}}"},
            "kubernetes/d.yaml: spec.template.spec.containers[0].env[0]: must be a mapping",
        ),
        (
            {
                "d.yaml": "kind: Deployment\n"
                "spec: {template: {spec: {containers: [{env: [{value: x}]}]}}}"
            },
            "kubernetes/d.yaml: spec.template.spec.containers[0].env[0].name: required",
        ),
        (
            {"d.yaml": "kind: Deployment\nspec: {replicas: three}\n"},
            "kubernetes/d.yaml: spec.replicas: Input should be a valid integer",
        ),
        (
            {"h.yaml": "kind: HorizontalPodAutoscaler\nspec: {minReplicas: 2}\n"},
            "kubernetes/h.yaml: spec.maxReplicas: required",
        ),
        (
            {"h.yaml": "kind: HorizontalPodAutoscaler\nspec: {maxReplicas: 3, metrics: [x]}\n"},
            "kubernetes/h.yaml: spec.metrics[0]: must be a mapping",
        ),
        (
            {"d.yaml": "kind: Deployment\nmetadata: {namespace: 5}\n"},
            "kubernetes/d.yaml: metadata.namespace: 5 is not a namespace name",
        ),
        ({"d.yaml": "kind: [\n"}, "kubernetes/d.yaml: not YAML:"),
        ({"d.yaml": "kind: Deployment # caf\xe9\n"}, "kubernetes/d.yaml: cannot read:"),
    ],
)
def test_kubernetes_objects_of_a_wrong_shape_exit_2_naming_file_and_path(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    code, _, stderr = deployed(tmp_path, files)
    assert code == 2, stderr
    assert expected in stderr, stderr
    assert "Traceback" not in stderr


def test_what_the_objects_say_that_a_kliojob_does_not_keep_is_warned(tmp_path: Path) -> None:
    deployment = GKE_DEPLOYMENT.replace(
        "      serviceAccountName: classify-sa\n",
        "      serviceAccountName: classify-sa\n      nodeSelector: {pool: gpu}\n",
    ).replace(
        "        resources:\n",
        "        envFrom: [{secretRef: {name: s}}]\n        resources:\n",
    )
    hpa = GKE_AUTOSCALER.replace(
        "    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}",
        "    resource: {name: cpu, targetAverageUtilization: 80}",  # autoscaling/v2beta1
    )
    code, (document,), stderr = deployed(tmp_path, {"deployment.yaml": deployment, "hpa.yaml": hpa})
    assert code == 0, stderr
    assert document["spec"]["autoscaling"]["targetCpuUtilizationPercentage"] == 80
    for said in (
        "kubernetes/deployment.yaml: spec.strategy is not kept",
        "kubernetes/deployment.yaml: spec.template.spec.nodeSelector is not kept",
        "kubernetes/deployment.yaml: spec.template.spec.containers[0].envFrom is not kept",
    ):
        assert said in stderr

    # submitted to Dataflow, the engine runs the workers: replicas and autoscaling are not kept
    (tmp_path / "df").mkdir()
    code, (document,), stderr = deployed(
        tmp_path / "df",
        {"deployment.yaml": GKE_DEPLOYMENT, "hpa.yaml": GKE_AUTOSCALER},
        "--runner",
        "dataflow",
        "-O",
        "pipeline_options.temp_location=gs://tmp/x",
    )
    assert code == 0, stderr
    spec = document["spec"]
    assert "replicas" not in spec and "autoscaling" not in spec and "threadPoolSize" not in spec
    assert spec["resources"]["limits"] == {"memory": "4Gi"}
    assert "kubernetes/hpa.yaml: the autoscaler is not kept" in stderr
    assert "kubernetes/deployment.yaml: spec.replicas is not kept" in stderr


def test_a_runner_named_short_is_said_as_a_long_one(tmp_path: Path) -> None:
    config = PARENT.replace("runner: DataflowRunner", "runner: dataflow")
    code, _, stderr = manifest("-j", str(job_dir(tmp_path, "ingest", config)))
    assert code == 0, stderr
    assert "pipeline_options.runner: dataflow is not kept" in stderr


def test_errors_in_the_objects_name_their_own_paths(tmp_path: Path) -> None:
    deployment = GKE_DEPLOYMENT.replace(
        "        - name: MODEL_VARIANT\n          value: small\n",
        "        - name: MODEL_VARIANT\n          value: small\n        - {valueFrom: {}}\n",
    )
    hpa = GKE_AUTOSCALER.replace("averageUtilization: 70", "averageUtilization: -5").replace(
        "minReplicas: 2", "minReplicas: -1"
    )
    code, _, stderr = deployed(tmp_path, {"deployment.yaml": deployment, "hpa.yaml": hpa})
    assert code == 2
    # the third entry: the dropped credentials variable does not shift the count
    assert "kubernetes/deployment.yaml: spec.template.spec.containers[0].env[2].name" in stderr
    assert "kubernetes/hpa.yaml: spec.metrics[0].resource.target.averageUtilization" in stderr
    assert "kubernetes/hpa.yaml: spec.minReplicas" in stderr

    # submitted to Dataflow, the autoscaler is not the job's: it is not checked either
    (tmp_path / "df").mkdir()
    code, _, stderr = deployed(
        tmp_path / "df",
        {"deployment.yaml": GKE_DEPLOYMENT, "hpa.yaml": hpa},
        "--runner",
        "dataflow",
        "-O",
        "pipeline_options.temp_location=gs://tmp/x",
    )
    assert code == 0, stderr


def test_namespace_given_chooses_and_is_checked(tmp_path: Path) -> None:
    deployment = GKE_DEPLOYMENT.replace("namespace: audio-team", "namespace: Audio_Team")
    code, _, stderr = deployed(tmp_path, {"deployment.yaml": deployment})
    assert code == 2
    assert (
        "kubernetes/deployment.yaml: metadata.namespace: 'Audio_Team' is not a namespace" in stderr
    )
    (tmp_path / "given").mkdir()
    code, (document,), stderr = deployed(
        tmp_path / "given", {"deployment.yaml": deployment}, "-n", "audio"
    )
    assert code == 0, stderr
    assert document["metadata"]["namespace"] == "audio"
    (tmp_path / "long").mkdir()
    code, _, stderr = deployed(tmp_path / "long", {"deployment.yaml": deployment}, "-n", "a" * 64)
    assert code == 2
    assert "--namespace: " in stderr


def test_a_gke_job_keeps_its_deployments_workers_not_dataflows_options(tmp_path: Path) -> None:
    deployment = GKE_DEPLOYMENT.replace(
        "    metadata:\n      labels: {app: catvdog-classify}\n",
        "    metadata:\n      labels: {app: catvdog-classify, team: audio}\n"
        "      annotations: {sidecar.istio.io/inject: 'false'}\n",
    )
    hpa_behaviour = GKE_AUTOSCALER.replace(
        "  maxReplicas: 8\n", "  maxReplicas: 8\n  behavior: {scaleDown: {selectPolicy: Min}}\n"
    )
    code, (document,), stderr = deployed(
        tmp_path,
        {"deployment.yaml": deployment},
        "-O",
        "pipeline_options.max_num_workers=10",
        "-O",
        "pipeline_options.autoscaling_algorithm=THROUGHPUT_BASED",
        "-O",
        "pipeline_options.num_workers=2",
    )
    assert code == 0, stderr
    assert document["spec"]["replicas"] == 3  # Klio's GKE runner ignored Dataflow's counts
    assert "autoscaling" not in document["spec"]
    assert "spec.template.metadata.annotations is not kept" in stderr
    assert "spec.template.metadata.labels team are not kept" in stderr
    (tmp_path / "hpa").mkdir()
    code, _, stderr = deployed(
        tmp_path / "hpa", {"deployment.yaml": GKE_DEPLOYMENT, "hpa.yaml": hpa_behaviour}
    )
    assert code == 0, stderr
    assert "kubernetes/hpa.yaml: spec.behavior is not kept" in stderr
