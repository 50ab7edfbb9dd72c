"""What the e2e flow deploys, checked without a cluster (runs everywhere)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.e2e.test_e2e import EMULATORS, PUBSUB_HOST, example_jobs
from tests.helm.chart import CHART, REPO, assert_pod_security_restricted


def emulator_objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(EMULATORS.read_text()) if doc]


def test_emulator_manifests_are_valid_and_restricted() -> None:
    objects = emulator_objects()
    assert sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects) == [
        "Deployment/gcs-emulator", "Deployment/pubsub-emulator",
        "Service/gcs-emulator", "Service/pubsub-emulator",
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        if obj["kind"] == "Deployment":
            assert_pod_security_restricted(obj["spec"]["template"]["spec"])


def test_kind_values_point_the_operator_at_the_emulator() -> None:
    values = yaml.safe_load((CHART / "ci" / "kind-values.yaml").read_text())
    assert values["pubsub"]["emulatorHost"] == PUBSUB_HOST
    service = next(o for o in emulator_objects() if o["kind"] == "Service"
                   and o["metadata"]["name"] == "pubsub-emulator")
    host, port = PUBSUB_HOST.split(":")
    assert host.split(".")[:2] == [service["metadata"]["name"], service["metadata"]["namespace"]]
    assert int(port) == service["spec"]["ports"][0]["port"]


def test_kind_config_pins_a_supported_node_image() -> None:
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and "worker" in roles
    for node in config["nodes"]:
        match = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.(\d+)(@sha256:[0-9a-f]{64})?",
                             node["image"])
        assert match, f"unpinned node image {node['image']}"
        assert (int(match[1]), int(match[2])) >= (1, 25), "below the chart's kubeVersion"


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "kliojob.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_example_jobs_with_emulator_env_still_fit_the_crd() -> None:
    schema = crd_schema()
    jobs = example_jobs()
    for job in jobs:
        try:
            jsonschema.validate(job, schema)
        except jsonschema.ValidationError as err:
            pytest.fail(f"{job['metadata']['name']}: {err.message} at {list(err.absolute_path)}")
        names = [e["name"] for e in job["spec"]["env"]]
        assert len(names) == len(set(names))
        assert "PUBSUB_EMULATOR_HOST" in names and "STORAGE_EMULATOR_HOST" in names
    # The DAG has a root reading Pub/Sub and at least one child.
    assert any(not j["spec"].get("parents") for j in jobs)
    assert any(j["spec"].get("parents") for j in jobs)


def test_makefile_e2e_flow_is_complete() -> None:
    """`make -n e2e` spells out the flow without running it."""
    proc = subprocess.run(["make", "-n", "e2e"], cwd=REPO, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    steps = proc.stdout
    for needed in ("kind create cluster --config kind-config.yaml", "docker/operator.Dockerfile",
                   "docker/runtime.Dockerfile", "kind load docker-image", "pytest",
                   "tests/e2e"):
        assert needed in steps, f"make e2e does not run: {needed}"
