"""The operator's plan really wires a DAG: `klio-operator render` output of a 2-job DAG, its
Pub/Sub resources ensured on the real emulator by the operator's own AsyncPubSubAdmin, and two real
`klio worker` processes running the rendered configs with the rendered environment.

Top-down: a message on the root's event-input topic flows parent → child. Bottom-up: a message
reaching the child whose data input is missing makes the child ask the parent (on the topic the
rendered `job_config.parents` names), the parent runs, and the child then runs too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from klio_operator import dag, worker_contract
from klio_operator.cli import main as operator_cli
from klio_runtime.message import new_message, parse, serialize

from tests.operator.harness import apply_plans, pubsub_plans, remove_plans, worker_inputs
from tests.worker.helpers import PubSub, WorkerProcess, audit_jobs, lines, unique, wait_for

pytestmark = pytest.mark.slow
PROJECT = "klio-local"


@dataclass
class RenderedDag:
    namespace: str
    root_topic: str
    watch: str  # a test subscription on the child's output topic
    tmp: Path
    pubsub: PubSub
    workers: dict[str, WorkerProcess]
    configs: dict[str, dict[str, Any]]
    envs: dict[str, dict[str, str]]

    def data(self, job: str, element: str) -> Path:
        return self.tmp / "data" / job / element

    def processed(self, job: str) -> list[str]:
        return lines(self.tmp / f"{job}.processed.log")


def manifest(name: str, namespace: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "klio.io/v1alpha1",
            "kind": "KlioJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def render(*paths: Path) -> tuple[list[dict[str, Any]], str]:
    args = ["render", "--project", PROJECT]
    for path in paths:
        args += ["-f", str(path)]
    result = CliRunner().invoke(operator_cli, args)
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.output) if d], result.output


@pytest.fixture(scope="module")
def rendered_dag(
    pubsub_emulator: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RenderedDag]:
    tmp = tmp_path_factory.mktemp("rendered-dag")
    namespace = f"ns{uuid.uuid4().hex[:8]}"
    pubsub = PubSub()
    root_topic = pubsub.topic(unique("root"))  # the team's own event source
    specs = {
        "parent": {
            "image": "reg.example/parent:1",
            "eventInputs": [{"type": "pubsub", "topic": root_topic}],
            "dataOutputs": [{"location": str(tmp / "data" / "parent")}],
            "config": {"processed_log": str(tmp / "parent.processed.log")},
        },
        "child": {
            "image": "reg.example/child:1",
            "parents": ["parent"],
            "dataOutputs": [{"location": str(tmp / "data" / "child")}],
            "config": {"processed_log": str(tmp / "child.processed.log")},
        },
    }
    paths = {}
    for name, spec in specs.items():
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(manifest(name, namespace, spec))
    rendered = {
        "parent": render(paths["parent"]),
        "child": render(paths["child"], paths["parent"]),
    }
    plans = pubsub_plans(namespace, specs)
    for name, plan in plans.items():
        # The render's comments list exactly the resources the operator ensures.
        for sub in plan.subscriptions:
            assert f"Pub/Sub subscription {sub.name} on {sub.topic}" in rendered[name][1]
    apply_plans(plans.values())
    watch = pubsub.subscribe(dag.output_topic(PROJECT, namespace, "child"), unique("watch"))
    configs: dict[str, dict[str, Any]] = {}
    envs: dict[str, dict[str, str]] = {}
    workers: dict[str, WorkerProcess] = {}
    try:
        for name in ("parent", "child"):
            config, env = worker_inputs(rendered[name][0])
            configs[name], envs[name] = config, env
            path = tmp / f"{name}.klio-job.yaml"
            path.write_text(yaml.safe_dump(config))
            workers[name] = WorkerProcess(path, env=env)
        for worker in workers.values():
            worker.wait_ready()
        yield RenderedDag(namespace, root_topic, watch, tmp, pubsub, workers, configs, envs)
    finally:
        for worker in workers.values():
            worker.stop()
        remove_plans(plans.values())
        pubsub.cleanup()


def test_rendered_child_config_names_its_parent_and_the_topic_it_reads(
    rendered_dag: RenderedDag,
) -> None:
    ns = rendered_dag.namespace
    child = rendered_dag.configs["child"]["job_config"]
    assert child["parents"] == [
        {
            "job_name": "parent",
            "gcp_project": PROJECT,
            "topic": rendered_dag.root_topic,
            "data_input": 0,
        }
    ]
    assert [(i["type"], i["topic"], i["subscription"]) for i in child["events"]["inputs"]] == [
        (
            "pubsub",
            dag.output_topic(PROJECT, ns, "parent"),
            dag.parent_subscription(PROJECT, ns, "child", "parent"),
        )
    ]
    assert [(o["type"], o["topic"]) for o in child["events"]["outputs"]] == [
        ("pubsub", dag.output_topic(PROJECT, ns, "child"))
    ]
    assert "parents" not in rendered_dag.configs["parent"]["job_config"]  # a root asks nobody
    assert rendered_dag.envs["child"][worker_contract.ENV_DEAD_LETTER_TOPIC] == (
        dag.dead_letter_topic(PROJECT, ns, "child")
    )
    assert rendered_dag.envs["child"][worker_contract.ENV_PUBSUB_PROJECT] == PROJECT


def test_a_message_on_the_root_topic_flows_from_parent_to_child(
    rendered_dag: RenderedDag,
) -> None:
    element = unique("td")
    rendered_dag.pubsub.publish(rendered_dag.root_topic, [serialize(new_message(element))])
    got = rendered_dag.pubsub.collect(rendered_dag.watch, 1, timeout=60)
    assert element in got
    assert audit_jobs(parse(got[element].data)) == ["parent", "child"]
    assert rendered_dag.data("parent", element).exists()
    assert rendered_dag.data("child", element).exists()


def test_a_child_missing_its_input_asks_the_parent_bottom_up(rendered_dag: RenderedDag) -> None:
    element = unique("bu")
    parent_output = dag.output_topic(PROJECT, rendered_dag.namespace, "parent")
    # Straight to the child, as if the parent had run, but its data is not there.
    rendered_dag.pubsub.publish(parent_output, [serialize(new_message(element))])
    wait_for(lambda: rendered_dag.data("child", element).exists(), 60, f"child ran {element}")
    assert rendered_dag.processed("parent").count(element) == 1
    assert rendered_dag.data("parent", element).exists()
    _, metrics = rendered_dag.workers["child"].get("/metrics")
    sent = 'klio_worker_bottom_up_requests_total{job="child",parent="parent"} 1.0'
    assert sent in metrics.splitlines(), metrics
