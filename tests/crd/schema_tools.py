"""Validate manifests against the CRD's openAPIV3Schema the way the API server does (mostly)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "kliojob.yaml"


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema as JSON Schema with the API server's strict field validation.

    Unknown fields are errors unless the schema preserves them; `nullable` allows null. CEL
    rules (x-kubernetes-validations) are not evaluated here: the models check those.
    """
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable"):
            if "type" in node:
                node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for key, value in node.items():
            if key in ("properties",):
                for prop in value.values():
                    visit(prop)
            elif key in ("items", "additionalProperties", "anyOf"):
                visit(value)

    visit(schema)
    return schema


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict_schema(crd_schema()))


def error_lines(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation as ``<path>: <message>``, paths like spec.parents[1]."""
    lines = []
    for error in sorted(validator().iter_errors(manifest), key=lambda e: list(e.absolute_path)):
        path = ""
        for part in error.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{path or '(root)'}: {error.message}")
    return lines


def example_kliojobs() -> Iterable[tuple[str, dict[str, Any]]]:
    """Every KlioJob document under examples/, named file#index."""
    for path in sorted((REPO / "examples").glob("**/*.yaml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if isinstance(document, dict) and document.get("kind") == "KlioJob":
                yield f"{path.relative_to(REPO)}#{index}", document
