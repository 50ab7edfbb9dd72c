"""gs:// paths when storage cannot be reached: said at once, not after the clients' two-minute
retries of every call (offline, or the emulator not started)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from klio_runtime.io import gcs
from klio_runtime.io.gcs import StorageUnreachable, ready_for
from klio_runtime.io.storage import DataStore

from tests.emulators.pubsub import free_port
from tests.runtime.helpers import klio_in

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def fresh_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs, "_looked", {})
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)


def test_an_emulator_not_started_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnreachable, match=r"x.wav: the GCS emulator .* is it running"):
        ready_for("gs://b/x.wav")
    with pytest.raises(StorageUnreachable, match="is it running"):
        DataStore().exists_many(["gs://b/in/x.wav"])
    ready_for("./local/x.wav")  # other paths need no storage host


def test_an_emulator_host_that_does_not_resolve_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://gcs.invalid:9023")  # RFC 6761: never
    with pytest.raises(StorageUnreachable, match=r"\(http://gcs.invalid:9023\) cannot be reached"):
        ready_for("gs://b/x.wav")


def test_cloud_storage_that_does_not_resolve_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(gcs, "GCS_HOST", "storage.invalid")
    with pytest.raises(StorageUnreachable, match=r"storage.invalid does not resolve .*offline\?"):
        ready_for("gs://b/x.wav")
    # behind a proxy the proxy resolves it: nothing is looked at
    monkeypatch.setattr(gcs, "_looked", {})
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    ready_for("gs://b/x.wav")


def test_a_running_emulator_is_reachable(gcs_emulator: str) -> None:
    ready_for("gs://b/x.wav")
    assert gcs._looked[gcs_emulator][1] is None


def test_klio_job_run_drops_each_unreadable_element_at_once(tmp_path: Path) -> None:
    # Before: each element's read waited two minutes in the client's retries (this run 6 min).
    job = tmp_path / "audio_mel"
    shutil.copytree(EXAMPLES / "audio_mel", job)
    (job / "ids.txt").write_text("a.wav\nb.wav\nc.wav\n")
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
    }
    run = klio_in(
        job,
        "job",
        "run",
        "-O",
        "job_config.data.inputs[0].type=gcs",
        "-O",
        "job_config.data.inputs[0].location=gs://bucket/audio",
        "-O",
        "job_config.data.inputs[0].skip_klio_existence_check=true",
        env=env,
    )
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    assert "dropped: io_error" in output and "a.wav, b.wav, c.wav" in output
    assert (
        "io_error: cannot read or write gs://bucket/audio/a.wav: the GCS emulator "
        "STORAGE_EMULATOR_HOST names" in output
    )
