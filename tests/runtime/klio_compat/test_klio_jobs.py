"""Jobs written as Klio's own jobs are (its integration jobs' configs and transforms, its docs'
examples), run in-process the way `klio job run` runs them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from klio_runtime.io.gcs import write_emulator_credentials
from klio_runtime.runner import JobSummary, load_job, load_run_function, run_job

JOBS = Path(__file__).parent / "jobs"


def copy_job(name: str, tmp_path: Path) -> Path:
    job = tmp_path / name
    shutil.copytree(JOBS / name, job)
    return job


def run_dir(job: Path) -> JobSummary:
    config, run_fn, _ = load_job(job)
    return run_job(config, run_fn)


def event_lines(prefix: Path) -> list[str]:
    shards = sorted(prefix.parent.glob(prefix.name + "-[0-9]*-of-[0-9]*"))
    return sorted(line for shard in shards for line in shard.read_text().split())


def test_read_file_write_file_runs_unchanged(tmp_path: Path, capsys: Any) -> None:
    job = copy_job("read_file_write_file", tmp_path)
    summary = run_dir(job)
    ids = ["alpha", "bravo", "charlie", "delta"]
    assert (summary.received, summary.processed, summary.output) == (4, 4, 4)
    # one element per line, Beam's shard naming (what Klio's integration test reads)
    assert (job / "ids_output-00000-of-00001").is_file()
    assert event_lines(job / "ids_output") == ids
    assert not (job / "dead-letter").exists(), "no dead letters, no dead-letter directory"
    err = capsys.readouterr().err
    for element in ids:
        assert f"INFO klio [{element}] Received element b'{element}'" in err
        assert f"INFO klio [{element}] Received payload b''" in err
    assert err.count("Hello, Klio!") == 4


def test_message_state_payloads_set_and_clear(tmp_path: Path, capsys: Any) -> None:
    job = copy_job("message_state", tmp_path)
    summary = run_dir(job)
    # bar-2 has no "foo": filter_response returned None → passed on, payload cleared, no drop
    assert summary.dropped == {}
    assert sorted(event_lines(job / "out" / "events")) == ["bar-2", "foo-1", "foo-3"]
    seen = job / "out" / "seen"
    # PrivetKlio yielded `data`: the payload it saw ('"foo-1"') is cleared for the next step
    assert sorted(p.name for p in seen.iterdir()) == ["bar-2", "foo-1", "foo-3"]
    assert (seen / "foo-1").read_bytes() == b"payload="
    err = capsys.readouterr().err
    assert "Privet got payload b'\"foo-1\"'" in err
    assert "INFO klio [bar-2] Privet got payload b''" in err  # None cleared bar-2's payload
    assert "No 'foo' in the response for b'bar-2'" in err
    assert "ERROR" not in err


@pytest.fixture
def emulator_env(gcs_emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    credentials = tmp_path / "fake-credentials.json"
    with credentials.open("w") as handle:
        write_emulator_credentials(handle)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    return gcs_emulator


@pytest.mark.slow
def test_batch_modular_default_shape_on_the_gcs_emulator(
    tmp_path: Path, emulator_env: str, capsys: Any
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="klio-local",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator_env},
    )
    bucket = client.create_bucket("klio-integration")
    for element in ("has-input-1", "has-input-2", "has-input-3", "done-before"):
        bucket.blob(f"beatbox/{element}.ogg").upload_from_string(b"audio")
    bucket.blob("batch-modular-default/outputs/done-before.wav").upload_from_string(b"done")

    job = copy_job("gcs_checks", tmp_path)
    summary = run_dir(job)
    assert summary.received == 5 and summary.processed == 3
    assert summary.skipped == {"output_exists": 1}
    assert summary.dropped == {"input_missing": 1}
    assert summary.dropped_ids == {"input_missing": ["no-input"]}
    # processed and already-done messages both go on to the event output, as in Klio
    assert event_lines(job / "ids_output") == [
        "done-before",
        "has-input-1",
        "has-input-2",
        "has-input-3",
    ]
    err = capsys.readouterr().err
    assert "Received element b'has-input-2'" in err
    assert "Received element b'done-before'" not in err


KLIO_STYLE_TESTS = '''
import logging

import pytest
from klio.transforms import decorators
from klio_core.proto import klio_pb2

import transforms


@pytest.fixture
def klio_msg():
    msg = klio_pb2.KlioMessage()
    msg.data.element = b"s0m3_tr4ck_1d"
    msg.version = klio_pb2.Version.V2
    return msg


@decorators.handle_klio
def first_func(ctx, item):
    ctx.logger.info(f"[first_func]: {item.element}")
    return item


def klio_lines(transform, *job_lines):
    """What Klio logs around one message at DEBUG, in its order (its own integration jobs'
    tests list these)."""
    limiter = f"KlioThreadLimiter(name={transform})"
    counter = "tags: {'metric_type': 'counter'}"
    return [
        ("klio.concurrency", f"{limiter} Blocked – waiting on semaphore for an available thread"),
        ("klio.metrics", f"[kmsg-received] value: 1 transform: '{transform}' {counter}"),
        *(("klio", line) for line in job_lines),
        ("klio.concurrency", f"{limiter} Released semaphore"),
        ("klio.metrics", f"[kmsg-success] value: 1 transform: '{transform}' {counter}"),
        ("klio.metrics", "[kmsg-timer] value: "),
    ]


def assert_logged(records, expected):
    assert [r.name for r in records] == [name for name, _ in expected]
    for record, (_, start) in zip(records, expected):
        assert record.message.startswith(start), (record.message, start)
    assert records[-1].message.endswith("tags: {'metric_type': 'timer', 'unit': 's'}")


def test_process_yields_the_message(klio_msg, caplog):
    caplog.set_level(logging.DEBUG)
    output = transforms.LogKlioMessage().process(klio_msg.SerializeToString())
    assert list(output) == [klio_msg.SerializeToString()]
    assert_logged(caplog.records, klio_lines(
        "LogKlioMessage.process",
        "Hello, Klio!", "Received element b's0m3_tr4ck_1d'", "Received payload b''",
    ))


def test_a_function_logs_once(klio_msg, caplog):
    caplog.set_level(logging.DEBUG)
    assert first_func(klio_msg.SerializeToString()) == klio_msg.SerializeToString()
    assert_logged(caplog.records, klio_lines("first_func", "[first_func]: b's0m3_tr4ck_1d'"))


def test_info_level_shows_the_jobs_lines_only(klio_msg, caplog):
    caplog.set_level(logging.INFO)
    assert first_func(klio_msg.SerializeToString()) == klio_msg.SerializeToString()
    assert [r.message for r in caplog.records] == ["[first_func]: b's0m3_tr4ck_1d'"]


def test_the_job_context_is_bound():
    from klio.transforms import core

    assert core.KlioContext().config.job_name == "compat-read-file-write-file"
'''


def test_klio_job_test_runs_a_jobs_own_tests_as_klio_does(tmp_path: Path) -> None:
    import subprocess
    import sys

    job = copy_job("read_file_write_file", tmp_path)
    (job / "tests").mkdir()
    (job / "tests" / "test_transforms.py").write_text(KLIO_STYLE_TESTS)
    klio = str(Path(sys.executable).parent / "klio")
    command = [
        klio,
        "job",
        "test",
        "-j",
        str(job),
        "--image-tag",
        "x",
        "--",
        "tests",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout

    (job / "tests" / "test_fails.py").write_text("def test_fails():\n    assert False\n")
    failed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1 and "1 failed, 4 passed" in failed.stdout
    assert "Tests failed with exit code 1" in failed.stderr  # Klio's words and exit code

    # no tests found: pytest's 5, which Klio's test command also turns into 1
    (job / "tests" / "test_none.py").write_text("VALUE = 1\n")
    nothing = subprocess.run(
        [*command[:-4], "tests/test_none.py", *command[-3:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert nothing.returncode == 1, nothing.stdout + nothing.stderr
    assert "Tests failed with exit code 5" in nothing.stderr


def test_run_basic_is_the_jobs_function_when_run_py_has_one(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(
        "def run(pcoll, config):\n    return 'run'\n\n"
        "def run_basic(pcoll, config):\n    return 'run_basic'\n"
    )
    assert load_run_function(tmp_path)(None, None) == "run_basic"  # as Klio's exec picks it
    (tmp_path / "run.py").write_text("def run(pcoll, config):\n    return 'run'\n")
    assert load_run_function(tmp_path)(None, None) == "run"
