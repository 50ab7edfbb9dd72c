"""kubectl and helm against the cluster named by KUBECONFIG, with deadlines on every wait."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tests.prometheus.server import free_port

T = TypeVar("T")


def kubectl(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    binary = shutil.which("kubectl")
    assert binary is not None, "kubectl not found on PATH"
    proc = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def wait_until(what: str, probe: Callable[[], T | None], timeout: float,
               describe: Callable[[], str] | None = None) -> T:
    """Poll until `probe` returns something truthy; on timeout say what and show the state."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            state = describe() if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{state}")
        time.sleep(1)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def is_true(obj: dict[str, Any], kind: str) -> bool:
    found = condition(obj, kind)
    return bool(found and found["status"] == "True")


@contextmanager
def port_forward(namespace: str, service: str, remote_port: int) -> Iterator[int]:
    """`kubectl port-forward svc/<service>`, yielding the local port once it answers."""
    local = free_port()
    binary = shutil.which("kubectl")
    assert binary is not None
    proc = subprocess.Popen(
        [binary, "-n", namespace, "port-forward", f"svc/{service}", f"{local}:{remote_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(),
    )
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"port-forward to {service} exited: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # an HTTP answer of any status: the tunnel works
            except OSError:
                return False

        wait_until(f"port-forward to svc/{service}", answers, timeout=30)
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)
