"""gcp-storage-emulator (PyPI) for tests: a real GCS-compatible server in memory.

`running_gcs_emulator()` starts it on a free localhost port, polls until it answers (with a
deadline)
and kills it on exit. The `gcs_emulator` fixture (session) sets STORAGE_EMULATOR_HOST for the
session;
the klio runtime then sets up fake credentials by itself (klio_runtime.io.gcs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> str:
    beside_python = Path(sys.executable).parent / "gcp-storage-emulator"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("gcp-storage-emulator")
    if not found:
        raise RuntimeError(
            "gcp-storage-emulator is not installed (pip install gcp-storage-emulator)"
        )
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except OSError:
        return False


@contextlib.contextmanager
def running_gcs_emulator(timeout: float = 20.0) -> Iterator[str]:
    """Start the emulator; yield its URL (``http://127.0.0.1:<port>``); kill it on exit."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [_command(), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{url}/storage/v1/b"):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"gcp-storage-emulator exited with {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gcp-storage-emulator did not answer on {url} in {timeout} s")
            time.sleep(0.05)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The emulator's URL; STORAGE_EMULATOR_HOST points at it for the session."""
    with running_gcs_emulator() as url, pytest.MonkeyPatch.context() as env:
        env.setenv("STORAGE_EMULATOR_HOST", url)
        yield url
