"""The KlioJob CustomResourceDefinition, generated from `klio_operator.models`.

`scripts/gen_crd.py` writes `kliojob_crd_yaml()` to ``crds/kliojob.yaml``; a test fails when that
file is stale. pydantic's JSON Schema is rewritten into a structural schema the API server
accepts:

- ``$ref`` / single-item ``allOf`` are inlined; ``title`` is dropped;
- ``Optional[X]`` (``anyOf: [X, null]``) becomes ``X`` with ``nullable: true``;
- ``additionalProperties: false`` (pydantic's extra="forbid") is dropped: the API server prunes
  or, with strict field validation, refuses unknown fields by itself;
- free-form maps (marked ``x-kubernetes-preserve-unknown-fields``) lose ``additionalProperties``;
- quantities keep ``x-kubernetes-int-or-string`` with its ``anyOf`` of integer and string;
- defaults: scalar defaults (``mode: streaming``, ``replicas: 1``, ...) are kept, so stored
  objects show them and ``kubectl scale`` finds ``.spec.replicas``; ``null`` and collection
  defaults are dropped (the model supplies those).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from klio_operator.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    KlioJobSpec,
    KlioJobStatus,
)

CRD_NAME = f"{PLURAL}.{GROUP}"
REGENERATE_COMMAND = ".venv/bin/python scripts/gen_crd.py"

_DROPPED_KEYS = frozenset({"title"})
_SCALARS = (str, int, float, bool)


class SchemaError(ValueError):
    """pydantic produced a construct a structural schema cannot express."""


def _structural(node: Any, defs: dict[str, Any], path: str) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs, f"{path}[{i}]") for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the field's own description wins over the class docstring
    if "allOf" in node and len(node["allOf"]) == 1:
        (only,) = node.pop("allOf")
        node = {**_resolve(only, defs), **node}
    if "anyOf" in node and {"type": "null"} in node["anyOf"]:
        rest = [member for member in node.pop("anyOf") if member != {"type": "null"}]
        if len(rest) != 1:
            raise SchemaError(f"{path}: a union of several types other than null")
        node = {**_resolve(rest[0], defs), **node, "nullable": True}
        if "$ref" in node or "allOf" in node:
            return _structural(node, defs, path)
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    if "default" in node and (node["default"] is None or not isinstance(node["default"], _SCALARS)):
        del node["default"]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
        node["type"] = "object"
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "oneOf" in node or "discriminator" in node or node.get("additionalProperties") is True:
        raise SchemaError(f"{path}: not expressible in a structural schema")
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path}: anyOf is only allowed for int-or-string")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: _structural(prop, defs, f"{path}.{name}") for name, prop in value.items()
            }
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs, f"{path}.{key}")
        else:
            out[key] = value
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return {**defs[node["$ref"].rsplit("/", 1)[-1]], **rest}
    return node


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's validation JSON Schema (camelCase) as a Kubernetes structural schema."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    result: dict[str, Any] = _structural(schema, defs, model.__name__)
    return result


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the KlioJob CRD's one version."""
    return {
        "type": "object",
        "description": "A Klio job on Kubernetes: its image, its place in the DAG (parents) and"
        " how its workers run. The operator creates its workers, Pub/Sub topics and"
        " subscriptions.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": f"{API_VERSION}"},
            "kind": {"type": "string", "description": KIND},
            "metadata": {"type": "object"},
            "spec": structural_schema(KlioJobSpec),
            "status": structural_schema(KlioJobStatus),
        },
    }


def kliojob_crd() -> dict[str, Any]:
    """The KlioJob CustomResourceDefinition (apiextensions.k8s.io/v1) as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "klio"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["klio"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
                        {
                            "name": "Workers",
                            "type": "integer",
                            "description": "Workers ready",
                            "jsonPath": ".status.readyWorkers",
                        },
                        {
                            "name": "Desired",
                            "type": "integer",
                            "priority": 1,
                            "jsonPath": ".status.desiredWorkers",
                        },
                        {"name": "Parents", "type": "string", "jsonPath": ".spec.parents"},
                        {
                            "name": "Phase",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": ".status.phase",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }


_HEADER = (
    "# Generated from operator/klio_operator/models.py by scripts/gen_crd.py; do not edit.\n"
    f"# Regenerate: {REGENERATE_COMMAND}\n"
)


def kliojob_crd_yaml() -> str:
    """The CRD as the text of crds/kliojob.yaml."""
    body = yaml.safe_dump(kliojob_crd(), sort_keys=False, width=100, allow_unicode=True)
    return _HEADER + body
