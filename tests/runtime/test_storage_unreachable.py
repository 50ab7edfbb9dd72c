"""gs:// paths when storage cannot be reached: said at once, not after the clients' two-minute
retries of every call (offline, or the emulator not started)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from klio_runtime.audio.errors import AudioError
from klio_runtime.audio.item import AudioItem
from klio_runtime.audio.transforms import _audio_source
from klio_runtime.io import gcs
from klio_runtime.io.gcs import StorageUnreachable, ready_for
from klio_runtime.io.storage import DataStore
from klio_runtime.message import new_message

from tests.emulators.pubsub import free_port
from tests.runtime.helpers import klio_in

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UNCHECKED_GCS_AUDIO = (
    "-O",
    "job_config.data.inputs[0].type=gcs",
    "-O",
    "job_config.data.inputs[0].location=gs://bucket/audio",
    "-O",
    "job_config.data.inputs[0].skip_klio_existence_check=true",
)
"""The audio_mel example's audio on gs://, read by its steps (no existence check first)."""


@pytest.fixture(autouse=True)
def local_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in `klio job run` (fail_fast_when_unreachable), with nothing looked at yet."""
    monkeypatch.setattr(gcs, "_fail_fast", True)
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


def test_an_audio_payload_naming_gs_is_an_io_error_of_the_element(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    item = AudioItem(new_message("e1"), b"gs://b/e1.wav", "raw")
    with pytest.raises(AudioError, match="is it running") as refused:
        _audio_source(item)  # LoadAudio's reading of a payload that names where the audio is
    assert (refused.value.element, refused.value.reason) == ("e1", "io_error")


def test_a_worker_keeps_the_clients_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # in a pod a DNS blip must not drop elements: nothing is looked at unless a local run asks
    monkeypatch.setattr(gcs, "_fail_fast", False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    ready_for("gs://b/x.wav")
    assert gcs._looked == {}


def test_all_proxy_alone_is_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(gcs, "GCS_HOST", "storage.invalid")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")  # requests sends through it
    ready_for("gs://b/x.wav")


def test_a_look_is_trusted_from_when_it_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    # a look that takes longer than a failure is trusted (a connect timing out) still counts:
    # the next elements are refused at once, not each after its own slow look
    clock = [100.0]
    looks: list[float] = []

    def slow_look() -> str:
        looks.append(clock[0])
        clock[0] += 5.0  # the look timed out
        return "cannot be reached"

    monkeypatch.setattr(gcs, "monotonic", lambda: clock[0])
    monkeypatch.setattr(gcs, "_unreachable_reason", slow_look)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://10.255.255.1:9023")
    for _ in range(3):
        with pytest.raises(StorageUnreachable):
            ready_for("gs://b/x.wav")
    assert looks == [100.0]
    clock[0] += gcs._TRUST_UNREACHABLE  # then it is looked at again
    with pytest.raises(StorageUnreachable):
        ready_for("gs://b/x.wav")
    assert len(looks) == 2


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
    run = klio_in(job, "job", "run", *UNCHECKED_GCS_AUDIO, env=env)
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    assert "dropped: io_error" in output and "a.wav, b.wav, c.wav" in output
    assert (
        "io_error: cannot read or write gs://bucket/audio/a.wav: the GCS emulator "
        "STORAGE_EMULATOR_HOST names" in output
    )


def test_klio_job_profile_drops_each_unreadable_element_at_once(tmp_path: Path) -> None:
    job = tmp_path / "audio_mel"
    shutil.copytree(EXAMPLES / "audio_mel", job)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    run = klio_in(
        job, "job", "profile", "timeit", "-n", "2", *UNCHECKED_GCS_AUDIO, "a.wav", env=env
    )
    assert run.returncode == 0, run.stderr
    assert "2 received, 2 sent to run, 0 skipped (output exists), 2 dropped" in run.stderr


def test_klio_job_run_with_gs_events_fails_at_once_naming_the_file(tmp_path: Path) -> None:
    job = tmp_path / "uppercase"
    shutil.copytree(EXAMPLES / "uppercase", job)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    for field, path in (
        ("job_config.events.inputs[0].location", "gs://bucket/ids.txt"),
        ("job_config.events.outputs[0].location", "gs://bucket/out"),
    ):
        run = klio_in(job, "job", "run", "--no-progress", "-O", f"{field}={path}", env=env)
        assert run.returncode == 1, run.stdout + run.stderr
        said = " ".join(run.stderr.split())  # rich wraps the line
        assert f"StorageUnreachable: cannot read or write {path}: the GCS emulator" in said
