"""Every object the operator renders passes `kubernetes-validate --strict`.

ServiceMonitor and ScaledObject are CRD kinds that kubernetes-validate has no schema for (the
CLI only warns); for those the test checks the shape the CRDs require by hand.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from klio_operator.models import DataOutput, KlioJobSpec
from klio_operator.planning import ClusterFacts, Owner, ParentInfo, plan_job

CRD_KINDS = {"ServiceMonitor", "ScaledObject"}
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

SPECS: dict[str, dict[str, Any]] = {
    "streaming": {"parents": ["a"], "replicas": 2, "serviceAccountName": "sa"},
    "everything": {
        "parents": ["a"],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "timeoutSeconds": 30,
        "imagePullPolicy": "IfNotPresent",
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5},
    },
    "suspended": {"suspend": True, "autoscaling": {"maxReplicas": 3}},
    "batch": {"mode": "batch", "replicas": 3, "eventInputs": [{"type": "file", "location": "/x"}]},
    "dataflow": {
        "runner": "dataflow",
        "pipelineOptions": {"region": "europe-west1", "temp_location": "gs://tmp-bucket/x"},
    },
    "flink": {"runner": "flink", "pipelineOptions": {"flink_master": "jm:8081"}},
}
FACTS = {
    "bare": ClusterFacts(),
    "prometheus+keda": ClusterFacts(has_service_monitor=True, has_keda=True),
}


def rendered(spec_name: str, facts_name: str, with_owner: bool) -> list[dict[str, Any]]:
    spec = KlioJobSpec.model_validate({"image": "reg.example/job:1", **SPECS[spec_name]})
    owner = Owner("job", "team", "0b8c8a3e-1111-2222-3333-444455556666" if with_owner else None)
    parents = [ParentInfo("a", "klio-local", (DataOutput(location="gs://b/a"),))]
    return plan_job(owner, spec, parents[: len(spec.parents)], FACTS[facts_name]).children


@pytest.mark.parametrize("facts_name", FACTS)
@pytest.mark.parametrize("spec_name", SPECS)
def test_every_rendered_object_validates_strictly(spec_name: str, facts_name: str) -> None:
    for with_owner in (True, False):
        for obj in rendered(spec_name, facts_name, with_owner):
            if obj["kind"] in CRD_KINDS:
                check_crd_object(obj)
                continue
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{obj['kind']} {obj['metadata']['name']} ({version}): {exc}")


def check_crd_object(obj: dict[str, Any]) -> None:
    """The fields the ServiceMonitor / ScaledObject CRDs require, with their types."""
    assert obj["metadata"]["name"]
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert isinstance(spec["selector"]["matchLabels"], dict)
        for endpoint in spec["endpoints"]:
            assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")
    else:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert isinstance(spec["scaleTargetRef"]["name"], str)
        assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
        for trigger in spec["triggers"]:
            assert trigger["type"] == "gcp-pubsub"
            assert all(isinstance(v, str) for v in trigger["metadata"].values())
