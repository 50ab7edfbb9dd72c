"""A Klio DAG moved to Kubernetes really runs wired: two Klio job configs (the child reading the
topic its parent writes) → `klio-operator manifest` → `klio-operator render` → the Pub/Sub
resources the operator ensures, on the real emulator → two real `klio worker` processes running
the rendered configs. A message on the root's topic reaches the child through the topic the
operator made for the parent, not the Klio topic the configs named.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from klio_operator import dag
from klio_operator.cli import main as operator_cli
from klio_operator.planning import LABEL_JOB
from klio_runtime.message import new_message, parse, serialize

from tests.operator.harness import apply_plans, pubsub_plans, remove_plans, worker_inputs
from tests.worker.helpers import PubSub, WorkerProcess, audit_jobs, unique

pytestmark = pytest.mark.slow
PROJECT = "klio-local"


def klio_config(name: str, inputs: str, output_topic: str, data: str, tmp: Path) -> str:
    return f"""
version: 2
job_name: {name}
pipeline_options:
  streaming: true
  runner: DataflowRunner
  project: {PROJECT}
  worker_harness_container_image: gcr.io/{PROJECT}/{name}
job_config:
  processed_log: {tmp / f"{name}.processed.log"}
  events:
    inputs:
{inputs}
    outputs:
      - type: pubsub
        topic: {output_topic}
  data:
{data}
"""


def test_a_converted_klio_dag_runs_from_parent_to_child(
    pubsub_emulator: str, tmp_path: Path
) -> None:
    namespace = f"ns{uuid.uuid4().hex[:8]}"
    pubsub = PubSub()
    root_topic = pubsub.topic(unique("root"))
    klio_topic = f"projects/{PROJECT}/topics/{unique('parent-out')}"  # never made: not used
    parent_data = tmp_path / "data" / "parent"
    configs = {
        "parent": klio_config(
            "parent",
            f"      - type: pubsub\n        topic: {root_topic}",
            klio_topic,
            f"    outputs:\n      - type: file\n        location: {parent_data}",
            tmp_path,
        ),
        "child": klio_config(
            "child",
            f"      - type: pubsub\n        topic: {klio_topic}\n"
            f"        subscription: projects/{PROJECT}/subscriptions/klio-child",
            f"projects/{PROJECT}/topics/{unique('child-out')}",
            f"    inputs:\n      - type: file\n        location: {parent_data}\n"
            f"    outputs:\n      - type: file\n        location: {tmp_path / 'data' / 'child'}",
            tmp_path,
        ),
    }
    args = ["manifest", "-n", namespace]
    for name, text in configs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "klio-job.yaml").write_text(text)
        args += ["-j", str(tmp_path / name)]
    converted = CliRunner().invoke(operator_cli, args)
    assert converted.exit_code == 0, converted.stderr
    manifests = {d["metadata"]["name"]: d for d in yaml.safe_load_all(converted.stdout)}
    assert manifests["child"]["spec"]["parents"] == ["parent"]
    (tmp_path / "kliojobs.yaml").write_text(converted.stdout)

    specs: dict[str, dict[str, Any]] = {name: m["spec"] for name, m in manifests.items()}
    plans = pubsub_plans(namespace, specs)
    apply_plans(plans.values())
    watch = pubsub.subscribe(dag.output_topic(PROJECT, namespace, "child"), unique("watch"))
    workers: list[WorkerProcess] = []
    try:
        rendered = CliRunner().invoke(
            operator_cli, ["render", "--project", PROJECT, "-f", str(tmp_path / "kliojobs.yaml")]
        )
        assert rendered.exit_code == 0, rendered.stderr
        documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        for name in ("parent", "child"):
            own = [d for d in documents if d["metadata"]["labels"][LABEL_JOB] == name]
            config, env = worker_inputs(own)
            path = tmp_path / f"{name}.rendered.yaml"
            path.write_text(yaml.safe_dump(config))
            workers.append(WorkerProcess(path, env=env))
        for worker in workers:
            worker.wait_ready()

        element = unique("moved")
        pubsub.publish(root_topic, [serialize(new_message(element))])
        got = pubsub.collect(watch, 1, timeout=60)
        assert element in got
        assert audit_jobs(parse(got[element].data)) == ["parent", "child"]
        assert (parent_data / element).exists()
        assert (tmp_path / "data" / "child" / element).exists()
    finally:
        for worker in workers:
            worker.stop()
        remove_plans(plans.values())
        pubsub.cleanup()
