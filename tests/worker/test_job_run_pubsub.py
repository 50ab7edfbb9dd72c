"""`klio job run` on a job with Pub/Sub event inputs, against the Pub/Sub emulator.

With the local runner it runs the streaming worker in the foreground until Ctrl-C; with a Beam
runner named it builds the pipeline with Beam's own Pub/Sub source and sink (what Dataflow and
Flink get), here on Beam's streaming BundleBasedDirectRunner. Both publish each message's output
with this job's audit entry, and send bytes that are not a KlioMessage to the dead-letter topic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from klio_runtime.io.pubsub_events import ATTR_JOB, ATTR_REASON
from klio_runtime.message import new_message, parse, serialize

from tests.worker.helpers import JOB_DIR, PROJECT, PubSub, unique, write_config

pytestmark = pytest.mark.slow
GARBAGE = b"\x08\x96\x01 not a klio message"


@pytest.fixture
def pubsub(pubsub_emulator: str) -> Iterator[PubSub]:
    client = PubSub()
    yield client
    client.cleanup()


def _run_job(
    pubsub: PubSub, tmp_path: Path, *flags: str
) -> tuple[dict[str, object], dict[str, object], str, subprocess.CompletedProcess[str]]:
    """Publish three messages and garbage, run `klio job run` until it has published all four,
    stop it with SIGINT; returns (outputs by element, dead letters by reason, job name, the
    finished process)."""
    name = unique("jobrun")
    in_topic = pubsub.topic(f"{name}-in")
    in_sub = pubsub.subscribe(in_topic, f"{name}-in")
    out_topic = pubsub.topic(f"{name}-out")
    out_sub = pubsub.subscribe(out_topic, f"{name}-out")
    dead_topic = pubsub.topic(f"{name}-dead")
    dead_sub = pubsub.subscribe(dead_topic, f"{name}-dead")
    config = write_config(tmp_path, name, in_sub, out_topic, {"dead_letter_topic": dead_topic})
    elements = ["track-1", "track-2", "track-3"]
    pubsub.publish(in_topic, [*(serialize(new_message(e)) for e in elements), GARBAGE])

    command = [
        str(Path(sys.executable).parent / "klio"),
        "job", "run", "--job-dir", str(JOB_DIR), "--config-file", str(config), *flags,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
    )
    try:
        outputs = pubsub.collect(out_sub, len(elements), timeout=120)
        letters = pubsub.collect(dead_sub, 1, timeout=60, key=lambda m: m.attributes[ATTR_REASON])
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=90)
    finished = subprocess.CompletedProcess(command, process.returncode, stdout)
    assert sorted(outputs) == elements, stdout
    for element, message in outputs.items():
        audit = parse(message.data).metadata.job_audit_log
        assert [entry.klio_job.job_name for entry in audit] == [name], element
    return outputs, letters, name, finished


def test_local_runner_streams_on_the_worker_until_ctrl_c(pubsub: PubSub, tmp_path: Path) -> None:
    _, letters, name, finished = _run_job(pubsub, tmp_path)

    letter = letters["decode_error"]
    assert letter.data == GARBAGE  # the original bytes, to replay
    assert letter.attributes[ATTR_JOB] == name
    assert finished.returncode == 0, finished.stdout  # Ctrl-C drains the worker
    assert "streaming from Pub/Sub on the local worker" in finished.stdout
    summary = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in finished.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert summary["received"] == "4", finished.stdout
    assert summary["processed (sent to run)"] == "3", finished.stdout
    assert summary["written to event outputs"] == "3", finished.stdout
    assert summary["dead-lettered: decode_error"] == "1", finished.stdout


def test_a_beam_runner_reads_and_writes_with_beams_pubsub_io(
    pubsub: PubSub, tmp_path: Path
) -> None:
    _, letters, name, finished = _run_job(
        pubsub, tmp_path, "--runner", "BundleBasedDirectRunner"
    )

    letter = letters["decode_error"]
    record = json.loads(letter.data)  # no original bytes past Beam's source: the record
    assert record["reason"] == "decode_error" and record["where"] == "message"
    assert letter.attributes[ATTR_JOB] == name
    assert finished.returncode == 130, finished.stdout
    assert "stopped (Ctrl-C)" in finished.stdout


def test_a_created_streaming_job_runs_as_created(pubsub: PubSub, tmp_path: Path) -> None:
    name = unique("created")
    klio = str(Path(sys.executable).parent / "klio")
    job_dir = tmp_path / name
    created = subprocess.run(
        [klio, "job", "create", "--job-name", name, "--output", str(job_dir), "--gcp-project",
         PROJECT, "--job-type", "streaming", "--use-defaults", "--python-version", "3.11"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert created.returncode == 0, created.stderr
    assert "ignored (Klio options this scaffold does not use): --python-version 3.11" in (
        created.stderr
    )
    # Klio's layout: <job>-input, its subscription <job>-input-<job>, <job>-output
    in_topic = pubsub.topic(f"{name}-input")
    pubsub.subscribe(in_topic, f"{name}-input-{name}")
    out_sub = pubsub.subscribe(pubsub.topic(f"{name}-output"), f"{name}-check")
    pubsub.publish(in_topic, [serialize(new_message("t-1"))])

    process = subprocess.Popen(
        [klio, "job", "run", "--job-dir", str(job_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ,
    )
    try:
        got = pubsub.collect(out_sub, 1, timeout=120)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=90)
    assert parse(got["t-1"].data).data.element == b"t-1", stdout  # passed on, as Klio's
    assert process.returncode == 0, stdout
    assert f"Received 't-1' from Pub/Sub topic 'projects/{PROJECT}/topics/{name}-input'" in stdout


def test_an_input_naming_only_a_topic_reads_a_subscription_made_for_the_run(
    pubsub: PubSub, tmp_path: Path
) -> None:
    # Klio's docs: with only a topic, "Beam creates a temporary subscription on startup"; it
    # sees what is published once it exists, and is gone when the run ends.
    import threading

    name = unique("topiconly")
    in_topic = pubsub.topic(f"{name}-in")
    out_topic = pubsub.topic(f"{name}-out")
    out_sub = pubsub.subscribe(out_topic, f"{name}-out")
    config = write_config(tmp_path, name, "unused", out_topic)
    raw = config.read_text().replace("subscription: unused", f"topic: {in_topic}")
    config.write_text(raw)
    command = [
        str(Path(sys.executable).parent / "klio"),
        "job", "run", "--job-dir", str(JOB_DIR), "--config-file", str(config),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
    )
    assert process.stdout is not None
    seen: list[str] = []
    reading = threading.Event()

    def read_lines() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if "names no subscription: reading" in line:
                reading.set()

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        assert reading.wait(60), "".join(seen)
        made = list(pubsub.publisher.list_topic_subscriptions(request={"topic": in_topic}))
        assert len(made) == 1 and made[0].startswith(
            f"projects/{PROJECT}/subscriptions/klio-{name}-0-"
        ), made
        pubsub.publish(in_topic, [serialize(new_message(e)) for e in ("t-1", "t-2")])
        outputs = pubsub.collect(out_sub, 2, timeout=120)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
    assert sorted(outputs) == ["t-1", "t-2"]
    assert process.returncode == 0, "".join(seen)
    left = list(pubsub.publisher.list_topic_subscriptions(request={"topic": in_topic}))
    assert left == [], left  # the run's own subscription is deleted with it


def test_a_runs_subscription_is_made_in_the_jobs_project_else_the_topics() -> None:
    from klio_runtime.worker.temporary_subscriptions import temporary_subscription_name

    topic = "projects/upstream-team/topics/tracks"
    assert temporary_subscription_name("my-job", topic, 0, "mine").startswith(
        "projects/mine/subscriptions/klio-my-job-0-"
    )
    assert temporary_subscription_name("my-job", topic, 1).startswith(
        "projects/upstream-team/subscriptions/klio-my-job-1-"
    )
