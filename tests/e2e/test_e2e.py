"""End to end on a real cluster: the chart, the example DAG, a message through it.

Needs KUBECONFIG (a kind cluster from kind-config.yaml, or any cluster) with the operator and job
images loaded; `make e2e` does all of it. Without KUBECONFIG every test here is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from klio_operator import dag
from klio_operator.planning import LABEL_JOB

from tests.e2e.cluster import is_true, kubectl, kubectl_json, port_forward, wait_until
from tests.helm.chart import CHART, REPO, run_helm

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG is not set: the e2e suite needs a real cluster (`make e2e` makes one "
        "with kind-config.yaml)",
    ),
    # The deadlines below (first image pulls, Beam's start-up) outlast pytest-timeout's default.
    pytest.mark.timeout(5400),
]

SYSTEM_NAMESPACE = "klio-system"
JOBS_NAMESPACE = os.environ.get("KLIO_E2E_NAMESPACE", "klio-e2e")
EXAMPLES = REPO / "examples" / "kliojobs"
EMULATORS = Path(__file__).parent / "manifests" / "emulators.yaml"
PUBSUB_HOST = f"pubsub-emulator.{SYSTEM_NAMESPACE}.svc.cluster.local:8085"
GCS_HOST = f"http://gcs-emulator.{SYSTEM_NAMESPACE}.svc.cluster.local:9023"
# The operator image's tag (`make e2e VERSION=x` builds and loads klio-operator:x).
OPERATOR_TAG = os.environ.get("KLIO_E2E_OPERATOR_TAG")
# Deadlines: first image pulls and Beam's start-up dominate.
INSTALL_TIMEOUT = 300
READY_TIMEOUT = 600
MESSAGE_TIMEOUT = 300


def example_jobs() -> list[dict[str, Any]]:
    """The example DAG, pointed at the in-cluster emulators through spec.env, one small worker
    per job: the flow is under test here, not capacity (a laptop's kind node)."""
    jobs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "KlioJob":
                spec = doc["spec"]
                env = [e for e in spec.get("env", [])
                       if e["name"] not in {"PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"}]
                spec["env"] = [*env, {"name": "PUBSUB_EMULATOR_HOST", "value": PUBSUB_HOST},
                               {"name": "STORAGE_EMULATOR_HOST", "value": GCS_HOST}]
                for key in ("resources", "autoscaling", "replicas"):
                    spec.pop(key, None)
                doc["metadata"]["namespace"] = JOBS_NAMESPACE
                jobs.append(doc)
    assert jobs, f"no KlioJobs in {EXAMPLES}"
    return jobs


def root_inputs(job: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(topic, subscription or None) of each Pub/Sub event input: a team's own, which exist
    before the job (the operator subscribes to a topic, or reads the subscription given)."""
    inputs: list[tuple[str, str | None]] = []
    for given in job["spec"].get("eventInputs", []):
        if given.get("type", "pubsub") != "pubsub":
            continue
        if given.get("topic"):
            inputs.append((given["topic"], None))
        elif given.get("subscription"):
            subscription = given["subscription"]
            inputs.append((subscription.replace("/subscriptions/", "/topics/"), subscription))
    return inputs


def describe_jobs() -> str:
    return kubectl("-n", JOBS_NAMESPACE, "get", "kliojobs,deployments,pods", "-o", "wide")


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    kubectl("apply", "-f", "-", stdin=kubectl(
        "create", "namespace", SYSTEM_NAMESPACE, "--dry-run=client", "-o", "yaml"))
    kubectl("apply", "-f", str(EMULATORS))
    for name in ("pubsub-emulator", "gcs-emulator"):
        kubectl("-n", SYSTEM_NAMESPACE, "rollout", "status", f"deployment/{name}",
                f"--timeout={INSTALL_TIMEOUT}s", timeout=INSTALL_TIMEOUT + 10)
    tag = ["--set-string", f"image.tag={OPERATOR_TAG}"] if OPERATOR_TAG else []  # "20261207"
    run_helm(["upgrade", "--install", "klio", str(CHART), "--namespace", SYSTEM_NAMESPACE,
              "--values", str(CHART / "ci" / "kind-values.yaml"), *tag, "--wait",
              f"--timeout={INSTALL_TIMEOUT}s"], timeout=INSTALL_TIMEOUT + 60)
    yield
    # Leave the release for inspection when a test failed; `make e2e-down` removes the cluster.


def test_operator_is_available_and_crd_served(installed: None) -> None:
    crd = kubectl_json("get", "crd", "kliojobs.klio.io")
    assert is_true(crd, "Established")
    deployment = kubectl_json("-n", SYSTEM_NAMESPACE, "get", "deployment", "klio")
    assert is_true(deployment, "Available")
    assert deployment["status"].get("readyReplicas") == 1
    # The operator answers /metrics through its Service.
    with port_forward(SYSTEM_NAMESPACE, "klio-metrics", 9090) as port:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert "klio_operator_reconciles_total" in resp.read().decode()


def test_manifests_made_from_klio_job_directories_are_accepted_by_the_api_server(
    installed: None,
) -> None:
    """`klio-operator manifest` of the four local example jobs together (their event files wire
    them: three get spec.parents): the API server, with the CRD's schema and CEL rules, accepts
    every KlioJob in a server-side dry run."""
    from click.testing import CliRunner
    from klio_operator.cli import main as operator_cli

    # the chart's namespace: it exists once installed, and a dry run leaves nothing in it
    args = ["manifest", "-n", SYSTEM_NAMESPACE]
    args += ["-O", "pipeline_options.worker_harness_container_image=reg.example/dag"]
    for job in ("track_ingest", "spectrograms", "loudness", "track_report"):
        args += ["-j", str(REPO / "examples" / job)]
    result = CliRunner().invoke(operator_cli, args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("parents:") == 3
    kubectl("apply", "--dry-run=server", "-f", "-", stdin=result.stdout)


@dataclass
class AppliedDag:
    jobs: list[dict[str, Any]]
    roots: list[dict[str, Any]]
    leaves: list[dict[str, Any]]
    root_topics: list[str]
    pubsub_port: int  # the emulator, port-forwarded


def job_status(name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl_json("-n", JOBS_NAMESPACE, "get", "kliojob", name)
    return found


@pytest.fixture(scope="module")
def applied_dag(installed: None) -> Iterator[AppliedDag]:
    """The example DAG applied, every job Ready; the Pub/Sub emulator port-forwarded."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    jobs = example_jobs()
    roots = [job for job in jobs if not job["spec"].get("parents")]
    leaves = [job for job in jobs if not any(
        job["metadata"]["name"] in other["spec"].get("parents", []) for other in jobs)]
    assert roots and leaves

    with port_forward(SYSTEM_NAMESPACE, "pubsub-emulator", 8085) as port, \
            pytest.MonkeyPatch.context() as env:
        env.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        # The roots' event inputs exist before the jobs (a team's own topic or subscription).
        root_topics = []
        for topic, subscription in (i for root in roots for i in root_inputs(root)):
            with contextlib.suppress(AlreadyExists):  # a rerun on the same cluster
                publisher.create_topic(name=topic)
            if subscription:
                with contextlib.suppress(AlreadyExists):
                    subscriber.create_subscription(name=subscription, topic=topic)
            root_topics.append(topic)
        assert root_topics, "the example roots read no Pub/Sub topic or subscription"

        kubectl("apply", "-f", "-", stdin=kubectl(
            "create", "namespace", JOBS_NAMESPACE, "--dry-run=client", "-o", "yaml"))
        # Service accounts the jobs name (a team's own, with its workload identity).
        for account in {j["spec"]["serviceAccountName"] for j in jobs
                        if j["spec"].get("serviceAccountName")}:
            kubectl("apply", "-f", "-", stdin=kubectl(
                "-n", JOBS_NAMESPACE, "create", "serviceaccount", account, "--dry-run=client",
                "-o", "yaml"))
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(jobs))

        def conditions_true(name: str, *kinds: str) -> bool:
            status = job_status(name)
            return all(is_true(status, kind) for kind in kinds)

        names = [job["metadata"]["name"] for job in jobs]
        for name in names:
            wait_until(f"{name} ParentsResolved and TopicsReady",
                       functools.partial(conditions_true, name, "ParentsResolved", "TopicsReady"),
                       timeout=120, describe=describe_jobs)
        for name in names:
            wait_until(f"{name} Ready", functools.partial(conditions_true, name, "Ready"),
                       timeout=READY_TIMEOUT, describe=describe_jobs)
        yield AppliedDag(jobs, roots, leaves, root_topics, port)


def test_ping_travels_the_example_dag(applied_dag: AppliedDag) -> None:
    from google.api_core.exceptions import DeadlineExceeded, RetryError
    from google.cloud import pubsub_v1
    from klio_runtime.message import new_message, parse_exact, serialize

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    # Listen on each leaf's output topic, then send a ping in at the root.
    listeners = {}
    for leaf in applied_dag.leaves:
        name = leaf["metadata"]["name"]
        topics = job_status(name)["status"]["topics"]  # its output and dead-letter topics
        project = topics[0].split("/")[1]
        topic = dag.output_topic(project, JOBS_NAMESPACE, name)
        assert topic in topics, topics
        # one per run: a rerun's topic may be new (the delete test removes the leaf's), and a
        # subscription left from before would stay on the deleted one
        listener = topic.replace("/topics/", "/subscriptions/") + f".e2e-{os.getpid()}"
        subscriber.create_subscription(name=listener, topic=topic)
        listeners[name] = listener
    element = f"e2e-ping-{os.getpid()}"
    for topic in applied_dag.root_topics:
        publisher.publish(topic, serialize(new_message(element, ping=True))).result(timeout=30)

    roots = {r["metadata"]["name"] for r in applied_dag.roots}
    for leaf, listener in listeners.items():
        def arrived(listener: str = listener) -> Any:
            try:
                response = subscriber.pull(subscription=listener, max_messages=10, timeout=10)
            except (DeadlineExceeded, RetryError):  # the emulator's answer to an empty pull
                return None
            for received in response.received_messages:
                subscriber.acknowledge(subscription=listener, ack_ids=[received.ack_id])
                msg = parse_exact(received.message.data)
                if msg.data.element.decode() == element:
                    return msg
            return None

        msg = wait_until(f"the ping out of {leaf}", arrived, timeout=MESSAGE_TIMEOUT,
                         describe=describe_jobs)
        visited = [item.klio_job.job_name for item in msg.metadata.job_audit_log]
        assert visited[0] in roots
        assert visited[-1] == leaf, visited


def test_deleting_a_job_removes_its_children(applied_dag: AppliedDag) -> None:
    leaf = applied_dag.leaves[-1]["metadata"]["name"]
    kubectl("-n", JOBS_NAMESPACE, "delete", "kliojob", leaf, "--wait=true", "--timeout=120s",
            timeout=130)

    def children_gone() -> bool:
        owned = kubectl_json("-n", JOBS_NAMESPACE, "get", "deployments,jobs,configmaps,services",
                             "-l", f"{LABEL_JOB}={leaf}")
        return not owned["items"]

    wait_until(f"the children of {leaf} to be garbage-collected", children_gone, timeout=120,
               describe=describe_jobs)
