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


def run_helm(
    args: Iterable[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``timeout``: longer than helm's own ``--timeout`` when it waits (``--wait``)."""
    proc = subprocess.run(
        [require_helm(), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
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
    return [doc for doc in yaml.load_all(out, Loader=_UniqueKeyLoader) if doc]


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, refusing a key given twice in one mapping (safe_load keeps the last, where
    kustomize, Argo CD and strict parsers refuse the whole file)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        twice = sorted({str(key) for key in keys if keys.count(key) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"key(s) {', '.join(twice)} given twice", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def assert_pod_security_restricted(pod: dict[str, Any]) -> None:
    """Pod Security Standards, "restricted" profile (v1.25+), for the fields this chart can set."""
    pod_sc = pod.get("securityContext", {})
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(forbidden), forbidden
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container.get("securityContext", {})
        where = f"container {container['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: drop ALL"
        assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, where
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{where}: runAsUser 0"
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost"), f"{where}: seccompProfile {seccomp}"
        assert not sc.get("privileged"), where
        for port in container.get("ports", []):
            assert "hostPort" not in port, where
