"""At-least-once and shutdown: SIGKILL mid-batch loses nothing, SIGTERM drains and exits 0."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from klio_runtime.message import new_message, serialize

from tests.worker.helpers import PubSub, WorkerProcess, lines, unique, wait_for, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def pubsub(pubsub_emulator: str) -> Iterator[PubSub]:
    client = PubSub()
    yield client
    client.cleanup()


def _job(pubsub: PubSub, tmp_path: Path, **job_config: object) -> tuple[Path, str, str, str]:
    name = unique("job")
    in_topic = pubsub.topic(f"{name}-in")
    in_sub = pubsub.subscribe(in_topic, f"{name}-in", ack_deadline=10)
    out_topic = pubsub.topic(f"{name}-out")
    out_sub = pubsub.subscribe(out_topic, f"{name}-out")
    config = write_config(tmp_path, name, in_sub, out_topic, dict(job_config))
    return config, in_topic, out_sub, name


def test_sigkill_mid_batch_loses_nothing(pubsub: PubSub, tmp_path: Path) -> None:
    config, in_topic, out_sub, name = _job(pubsub, tmp_path, sleep_seconds=0.1,
                                           thread_pool_size=1)
    elements = [unique("k") for _ in range(20)]
    first = WorkerProcess(config, "--max-messages", "10", "--ack-deadline", "10")
    first.wait_ready()
    pubsub.publish(in_topic, [serialize(new_message(e)) for e in elements])
    processed = tmp_path / f"{name}.processed.log"
    wait_for(lambda: len(lines(processed)) >= 3, 30, "the first batch to be in flight")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    ran_before = set(lines(processed))
    assert ran_before and len(ran_before) < len(elements)

    second = WorkerProcess(config, "--max-messages", "10", "--ack-deadline", "10")
    try:
        # The killed worker's batch comes back after its ack deadline (10 s) or at once if it
        # was never leased; every element reaches the output, duplicates allowed.
        got = pubsub.collect(out_sub, len(elements), timeout=60)
        assert sorted(got) == sorted(elements)
        assert set(lines(processed)) == set(elements)
    finally:
        second.stop()


def test_sigterm_finishes_the_batch_then_exits_zero(pubsub: PubSub, tmp_path: Path) -> None:
    config, in_topic, out_sub, name = _job(pubsub, tmp_path, sleep_seconds=0.2,
                                           thread_pool_size=1)
    elements = [unique("t") for _ in range(8)]
    worker = WorkerProcess(config, "--max-messages", "20", "--max-wait-ms", "500",
                           "--log-level", "debug")
    worker.wait_ready()
    pubsub.publish(in_topic, [serialize(new_message(e)) for e in elements])
    processed = tmp_path / f"{name}.processed.log"
    wait_for(lambda: lines(processed), 30, "a batch in flight")
    worker.signal(signal.SIGTERM)
    # The handler runs on the worker's main thread at its next chance: readiness must turn off
    # soon after the signal (503 while draining, or no answer once gone), not in the same instant.
    wait_for(lambda: worker.get("/readyz")[0] in (0, 503), 10, "not ready while draining")
    assert worker.wait(30) == 0, worker.log()
    done = set(lines(processed))
    got = pubsub.collect(out_sub, len(done), timeout=10)
    assert set(got) == done  # every element of the in-flight batch was published
    # ... and acknowledged before the exit (its last line counts them).
    assert f"drained, exiting (acked {len(done)} messages)" in worker.log(), worker.log()
    # --log-level debug reaches the klio logger too: Klio's DEBUG lines show
    assert "KlioMessage full audit log - Entity ID: " in worker.log()


def test_a_dead_letters_detail_fits_pub_subs_attribute_limit_in_bytes() -> None:
    from klio_runtime.io.events import DeadLetter
    from klio_runtime.io.pubsub_events import ATTR_DETAIL, dead_letter_message

    # an error naming an element in another script: 3 bytes a character
    detail = "KeyError: " + "曲" * 1000
    attributes = dead_letter_message(DeadLetter("pipeline_error", "run", detail), "j").attributes
    value = attributes[ATTR_DETAIL]
    # before: cut at 1,000 characters, 3,010 bytes, which Pub/Sub refuses (1,024 at most)
    assert len(value.encode("utf-8")) <= 1024
    assert detail.startswith(value) and len(value) > 300
