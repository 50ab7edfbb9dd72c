"""Rendering the klio chart with the real helm binary.

Shared by tests/helm, tests/prometheus and tests/e2e.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "klio"
# Documented values variants (chart-testing's convention: ci/*-values.yaml).
VARIANTS = sorted(CHART.glob("ci/*-values.yaml"))
RELEASE = "klio"
NAMESPACE = "klio-system"


def helm_binary() -> str | None:
    """helm from scripts/install-helm.sh (.tools/bin/helm), else from PATH."""
    local = REPO / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


def require_helm() -> str:
    helm = helm_binary()
    if helm is None:
        pytest.skip("helm not found at .tools/bin/helm or on PATH: run scripts/install-helm.sh")
    return helm


def run_helm(args: Iterable[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [require_helm(), *args], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/klio-helm-cache",
             "HELM_CONFIG_HOME": "/tmp/klio-helm-config", "HELM_DATA_HOME": "/tmp/klio-helm-data"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def set_args(values: Mapping[str, Any] | None) -> list[str]:
    """--set-json key=json for each entry, so types survive (a string stays a string)."""
    return [f"--set-json={key}={json.dumps(value)}" for key, value in (values or {}).items()]


def template_args(
    values_files: Iterable[Path] = (), values: Mapping[str, Any] | None = None
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds"]
    for path in values_files:
        args += ["--values", str(path)]
    return args + set_args(values)


def render(
    values_files: Iterable[Path] = (), values: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every object `helm template` renders (CRDs included), parsed."""
    out = run_helm(template_args(values_files, values)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]
