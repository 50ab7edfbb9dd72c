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


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server does before CEL runs."""
    if isinstance(value, dict) and "properties" in schema:
        value = dict(value)
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = prop["default"]
            if name in value:
                value[name] = with_defaults(prop, value[name])
    elif isinstance(value, list) and "items" in schema:
        value = [with_defaults(schema["items"], item) for item in value]
    return value


def cel_errors(manifest: dict[str, Any]) -> list[str]:
    """Every failing x-kubernetes-validations rule as ``<path>: <message>`` (cel-python)."""
    import celpy

    environment = celpy.Environment()
    schema = crd_schema()
    errors: list[str] = []

    def visit(node: dict[str, Any], value: Any, path: str) -> None:
        if value is None:
            return
        for rule in node.get("x-kubernetes-validations", []):
            program = environment.program(environment.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
            if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
                errors.append(f"{path}: {rule['message']}")
        if isinstance(value, dict):
            for name, prop in node.get("properties", {}).items():
                if name in value:
                    visit(prop, value[name], f"{path}.{name}" if path else name)
        elif isinstance(value, list) and "items" in node:
            for index, item in enumerate(value):
                visit(node["items"], item, f"{path}[{index}]")

    visit(schema, with_defaults(schema, manifest), "")
    return errors
