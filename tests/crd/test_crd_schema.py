"""The generated CRD: a structural schema that accepts the examples and refuses bad manifests."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from klio_operator.crd import SchemaError, kliojob_crd, structural_schema
from klio_operator.models import KlioJobSpec, SpecError, parse_spec
from pydantic import BaseModel

from tests.crd.schema_tools import (
    CRD_PATH,
    cel_errors,
    crd_schema,
    error_lines,
    example_kliojobs,
)

EXAMPLES = list(example_kliojobs())
VALID_JOB: dict[str, Any] = {
    "apiVersion": "klio.io/v1alpha1",
    "kind": "KlioJob",
    "metadata": {"name": "child"},
    "spec": {"image": "img:1", "parents": ["parent-a"]},
}


def with_spec(**changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(VALID_JOB)
    manifest["spec"].update(changes)
    return manifest


def test_examples_exist_with_a_two_parent_dag() -> None:
    names = {doc["metadata"]["name"]: doc["spec"] for _, doc in EXAMPLES}
    assert len(names) >= 4
    roots = [name for name, spec in names.items() if not spec.get("parents")]
    assert roots and all(names[root].get("eventInputs") for root in roots)
    assert any(len(spec.get("parents", [])) == 2 for spec in names.values())
    for spec in names.values():  # every parent is itself an example
        assert set(spec.get("parents", [])) <= set(names)


@pytest.mark.parametrize(("name", "manifest"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_examples_are_valid(name: str, manifest: dict[str, Any]) -> None:
    assert error_lines(manifest) == []
    assert cel_errors(manifest) == []
    parse_spec(manifest["spec"])  # the operator's model agrees with the schema


NEGATIVE = [
    ("missing image", {"image": None}, "spec: 'image' is a required property"),
    ("bad mode", {"mode": "sometimes"}, "spec.mode: 'sometimes' is not one of"),
    ("bad runner", {"runner": "spark"}, "spec.runner: 'spark' is not one of"),
    ("negative replicas", {"replicas": -1}, "spec.replicas: -1 is less than the minimum of 0"),
    ("bad parent name", {"parents": ["ok", "Not_OK"]}, "spec.parents[1]: 'Not_OK' does not match"),
    ("unknown field", {"imagee": "x"}, "spec: Additional properties are not allowed ('imagee'"),
    (
        "unknown nested field",
        {"dataOutputs": [{"location": "gs://b/x", "suffix": ".wav"}]},
        "spec.dataOutputs[0]: Additional properties are not allowed ('suffix'",
    ),
    (
        "bad quantity type",
        {"resources": {"limits": {"cpu": [1]}}},
        "spec.resources.limits.cpu: [1] is not valid under any of the given schemas",
    ),
    ("zero threads", {"threadPoolSize": 0}, "spec.threadPoolSize: 0 is less than the minimum of 1"),
    (
        "bad service account",
        {"serviceAccountName": "Bad Name"},
        "spec.serviceAccountName: 'Bad Name' does not match",
    ),
    (
        "max replicas zero",
        {"autoscaling": {"maxReplicas": 0}},
        "spec.autoscaling.maxReplicas: 0 is less than the minimum of 1",
    ),
    (
        "project that cannot name a topic",
        {"pipelineOptions": {"project": "a/topics/b", "region": "europe-west1"}},
        "spec.pipelineOptions.project: 'a/topics/b' does not match",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [n[1:] for n in NEGATIVE], ids=[n[0] for n in NEGATIVE]
)
def test_bad_manifests_fail_with_the_field_path(changes: dict[str, Any], expected: str) -> None:
    manifest = with_spec(**changes)
    manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
    errors = error_lines(manifest)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors
    # the operator's model refuses the same spec, naming the same field
    with pytest.raises(SpecError) as caught:
        parse_spec(manifest["spec"])
    # (pydantic names the key itself where the schema names its object)
    assert caught.value.errors[0].split(": ", 1)[0].startswith(expected.split(": ", 1)[0])


def test_spec_is_required() -> None:
    manifest = {k: v for k, v in VALID_JOB.items() if k != "spec"}
    assert error_lines(manifest) == ["(root): 'spec' is a required property"]


def test_null_is_accepted_where_the_model_says_optional() -> None:
    assert error_lines(with_spec(autoscaling=None, serviceAccountName=None)) == []
    assert error_lines(with_spec(mode=None)) != []


def test_free_form_fields_keep_unknown_keys() -> None:
    manifest = with_spec(
        pipelineOptions={"anything": {"nested": [1, 2]}},
        config={"thresholds": {"cat": 0.8}},
        env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    )
    assert error_lines(manifest) == []
    spec = parse_spec(manifest["spec"])
    assert spec.to_wire()["env"] == manifest["spec"]["env"]


CEL_CASES = [
    ({"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}, "spec.autoscaling"),
    ({"autoscaling": {"maxReplicas": 1, "minReplicas": 2}}, "spec.autoscaling"),
    ({"eventInputs": [{"type": "pubsub"}]}, "spec.eventInputs[0]"),
    ({"eventInputs": [{"topic": "t"}, {}]}, "spec.eventInputs[1]"),  # type defaults to pubsub
    ({"eventInputs": [{"type": "file", "subscription": "s"}]}, "spec.eventInputs[0]"),
]


@pytest.mark.parametrize(("changes", "path"), CEL_CASES)
def test_cel_rules_refuse_and_the_model_agrees(changes: dict[str, Any], path: str) -> None:
    manifest = with_spec(**changes)
    assert error_lines(manifest) == []  # only CEL can say it
    (cel_error,) = cel_errors(manifest)
    assert cel_error.startswith(f"{path}: ")
    with pytest.raises(SpecError) as caught:
        parse_spec(manifest["spec"])
    (model_error,) = caught.value.errors
    assert model_error.startswith(f"{path}: ")


def test_cel_rules_accept_good_values() -> None:
    manifest = with_spec(
        autoscaling={"maxReplicas": 1},  # minReplicas defaults to 1
        eventInputs=[{"subscription": "s"}, {"type": "file", "location": "ids.txt"}],
    )
    assert cel_errors(manifest) == []
    parse_spec(manifest["spec"])


def test_the_model_refuses_a_project_as_the_crd_does() -> None:
    # for a spec read without the API server (render, an older CRD): a YAML block scalar's
    # trailing newline too, which Go's regexp refuses
    for project in ("a/topics/b", "my-project\n", "My Project", 123):
        with pytest.raises(SpecError) as caught:
            parse_spec({"image": "i", "pipelineOptions": {"project": project}})
        assert caught.value.errors[0].startswith("spec.pipelineOptions.project: ")
    for project in ("p", "my-project", "example.com:my-project"):
        parse_spec({"image": "i", "pipelineOptions": {"project": project}})
    with pytest.raises(SpecError) as caught:  # a parent's name, likewise
        parse_spec({"image": "i", "parents": ["ingest\n"]})
    assert caught.value.errors[0].startswith("spec.parents[0]: ")


def test_model_refuses_what_only_it_can_check() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"image": "i", "parents": ["a", "a"], "resources": {"limits": {"cpu": "lots"}}})
    assert caught.value.errors == [
        "spec.parents: parents listed twice: a",
        "spec.resources.limits.cpu: 'lots' is not a Kubernetes quantity (an integer, or e.g. 500m,"
        " 1Gi)",
    ]


def test_wire_round_trip_uses_camel_case() -> None:
    spec = KlioJobSpec(image="i", thread_pool_size=2, allow_non_klio_messages=True)
    wire = spec.to_wire()
    assert wire["threadPoolSize"] == 2 and wire["allowNonKlioMessages"] is True
    assert parse_spec(wire) == spec
    assert error_lines({**VALID_JOB, "spec": wire}) == []


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(walk(item, f"{path}[{index}]"))
    return found


def test_schema_is_structural() -> None:
    schema = crd_schema()
    for path, node in walk(schema):
        assert "$ref" not in node and "title" not in node and "$defs" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "oneOf" not in node and "allOf" not in node, path
        if "anyOf" in node:  # only int-or-string may use it
            assert node.get("x-kubernetes-int-or-string") is True, path
        if "default" in node:
            assert isinstance(node["default"], str | int | float | bool), path
        if path.endswith(".properties"):
            for name, prop in node.items():  # kubectl explain has something to say
                if name not in ("metadata",):
                    assert prop.get("description") or "anyOf" in prop, f"{path}.{name}"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node.get("type") == "object" and "additionalProperties" not in node, path


def test_crd_facts() -> None:
    crd = kliojob_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "kliojobs.klio.io"
    assert (spec["group"], spec["scope"]) == ("klio.io", "Namespaced")
    assert spec["names"]["shortNames"] == ["kj"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c for c in version["additionalPrinterColumns"] if not c.get("priority")}
    assert list(columns) == ["Ready", "Mode", "Workers", "Parents", "Age"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }


class _Ambiguous(BaseModel):
    value: int | str


def test_unions_the_api_server_cannot_express_are_refused() -> None:
    with pytest.raises(SchemaError, match="value"):
        structural_schema(_Ambiguous)


def test_kubernetes_validate_strict_accepts_the_crd() -> None:
    tool = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    result = subprocess.run(
        [tool, "--strict", str(CRD_PATH)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout
