"""The streaming worker in this process (a thread) on the real Pub/Sub emulator: dead letters,
ack only after publish, probes and metrics."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api_core import exceptions as api_exceptions
from klio_runtime.config import ConfigError, parse_config
from klio_runtime.context import JobLimits
from klio_runtime.io.events import DeadLetter
from klio_runtime.io.pubsub import PubSubClient
from klio_runtime.io.pubsub_events import ATTR_REASON
from klio_runtime.message import KlioMessage, new_message, parse, serialize
from klio_runtime.metrics import process_hub
from klio_runtime.routing import JobRef
from klio_runtime.runner import load_job
from klio_runtime.worker.health import (
    STALL_MARGIN_SECONDS,
    HealthState,
    ProbeServers,
    stall_limit,
)
from klio_runtime.worker.loop import StreamingWorker, _BatchSizer
from klio_runtime.worker.serve import health_for
from klio_runtime.worker.settings import WorkerSettings

from tests.emulators.pubsub import free_port
from tests.worker.helpers import (
    JOB_DIR,
    PROJECT,
    PubSub,
    lines,
    subscription,
    topic,
    unique,
    wait_for,
    write_config,
)

FAST = WorkerSettings(max_messages=50, max_wait_ms=20)
ONE_BATCH = WorkerSettings(max_messages=50, max_wait_ms=20, target_batch_seconds=0)
"""All that was published before the worker starts in its first batch (the pace is not
sized)."""


@pytest.fixture
def pubsub(pubsub_emulator: str) -> Iterator[PubSub]:
    client = PubSub()
    yield client
    client.cleanup()


class RecordingClient(PubSubClient):
    """The real client, noting the order of publishes and acks (for the at-least-once check)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.handed_back: list[tuple[str, int]] = []  # (ack id, seconds until redelivery)

    def publish_outcomes(self, pending, timeout=60.0):  # type: ignore[no-untyped-def]
        outcomes = super().publish_outcomes(pending, timeout)
        self.events += ["published" for error in outcomes if error is None]
        return outcomes

    def ack(self, subscription, ack_ids):  # type: ignore[no-untyped-def]
        super().ack(subscription, ack_ids)
        self.events += ["acked"] * len(ack_ids)

    def modify_ack_deadline(self, subscription, ack_ids, seconds):  # type: ignore[no-untyped-def]
        super().modify_ack_deadline(subscription, ack_ids, seconds)
        self.handed_back += [(ack_id, seconds) for ack_id in ack_ids]


@contextmanager
def running(worker: StreamingWorker) -> Iterator[StreamingWorker]:
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop within 30 s"


def _worker(config: Path, **kwargs: object) -> StreamingWorker:
    loaded, run_fn, _ = load_job(JOB_DIR, config)
    return StreamingWorker(loaded, run_fn, kwargs.pop("settings", FAST), **kwargs)  # type: ignore[arg-type]


def _setup(pubsub: PubSub, tmp_path: Path, **job_config: object) -> dict[str, str]:
    name = unique("ip")
    t = {"in": pubsub.topic(f"{name}-in"), "out": pubsub.topic(f"{name}-out"),
         "dead": pubsub.topic(f"{name}-dead")}
    s = {"in": pubsub.subscribe(t["in"], f"{name}-in"),
         "out": pubsub.subscribe(t["out"], f"{name}-out"),
         "dead": pubsub.subscribe(t["dead"], f"{name}-dead")}
    config = write_config(tmp_path, name, s["in"], t["out"], dict(job_config))
    return {"name": name, "config": str(config), **{f"{k}_topic": v for k, v in t.items()},
            **{f"{k}_sub": v for k, v in s.items()}}


def test_garbage_goes_to_the_dead_letter_topic_counted_and_acked(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    client = RecordingClient()
    worker = _worker(Path(job["config"]), client=client, dead_letter_topic=job["dead_topic"])
    with running(worker):
        pubsub.publish(job["in_topic"], [b"\xff\x00not a klio message"], origin="test")
        pubsub.publish(job["in_topic"], [serialize(new_message("fine"))])
        dead = pubsub.collect(job["dead_sub"], 1, 30, key=lambda m: m.data.hex())
        pubsub.collect(job["out_sub"], 1, 30)
        wait_for(lambda: client.events.count("acked") == 2, 10, "both acknowledged")
    (letter,) = dead.values()
    assert letter.data == b"\xff\x00not a klio message"  # the original bytes, for replay
    assert letter.attributes["origin"] == "test"
    assert letter.attributes[ATTR_REASON] == "decode_error"
    assert "not a KlioMessage" in letter.attributes["klio_dead_letter_detail"]
    assert process_hub().value("klio_dead_letter_total", job=job["name"],
                               reason="decode_error") == 1
    # the garbage was counted as received too, though no bundle ran for it
    assert process_hub().value("klio_messages_received_total", job=job["name"]) == 2
    # Nothing was acknowledged before its output (or dead letter) was published.
    assert client.events.index("acked") > client.events.index("published")


def test_without_a_dead_letter_topic_garbage_goes_back_and_is_not_counted_as_dead_lettered(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)  # and no dead-letter topic configured
    quick_return = WorkerSettings(max_messages=50, max_wait_ms=20, redelivery_delay_seconds=1)
    worker = _worker(Path(job["config"]), settings=quick_return)
    hub, name = process_hub(), job["name"]
    with running(worker):
        pubsub.publish(job["in_topic"], [b"garbage\xff"])
        wait_for(lambda: hub.value("klio_worker_nacked_total", job=name,
                                   reason="no_dead_letter_topic") >= 2, 30, "two hand-backs")
    # before: counted as dead-lettered on each redelivery, though it was never sent anywhere
    assert hub.value("klio_dead_letter_total", job=name, reason="decode_error") == 0


def test_a_batch_whose_publishes_are_confirmed_is_acknowledged_before_the_next_one_runs(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path, sleep_seconds=0.3)
    processed = tmp_path / f"{job['name']}.processed.log"
    done_at_acks: list[int] = []

    class ConfirmedAtOnce(RecordingClient):
        def publish_nowait(self, messages):  # type: ignore[no-untyped-def]
            pending = super().publish_nowait(messages)
            futures.wait(pending, timeout=30)  # settled before the loop looks at them
            return pending

        def ack(self, subscription, ack_ids):  # type: ignore[no-untyped-def]
            done_at_acks.append(len(lines(processed)))
            super().ack(subscription, ack_ids)

    pairs = WorkerSettings(max_messages=2, max_wait_ms=20, target_batch_seconds=0)
    worker = _worker(Path(job["config"]), settings=pairs, client=ConfirmedAtOnce())
    elements = [unique("e") for _ in range(4)]
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
    with running(worker):
        assert sorted(pubsub.collect(job["out_sub"], 4, 30)) == sorted(elements)
        wait_for(lambda: len(done_at_acks) == 2, 10, "both batches acknowledged")
    # the first pair was acknowledged before the second pair ran (before: after it)
    assert done_at_acks == [2, 4]


def test_a_message_that_fails_its_whole_batch_is_found_in_groups_and_dead_lettered(
        pubsub: PubSub, tmp_path: Path) -> None:
    elements = [unique("e") for _ in range(32)]
    crash = elements[11]  # a step without handle_klio raises for it: the whole batch fails
    job = _setup(pubsub, tmp_path, crash_element=crash)
    worker = _worker(Path(job["config"]), settings=ONE_BATCH,
                     dead_letter_topic=job["dead_topic"])
    runs: list[int] = []
    handling: list[BaseException | None] = []
    run = worker.executor.run

    def counted(batch: Any) -> Any:
        runs.append(sum(len(values) for values in batch.values()))
        # a run made while an exception is handled chains its own failure to it: Beam's log
        # of each deeper failure then repeats every earlier traceback (212 KB a bad message)
        handling.append(sys.exc_info()[1])
        return run(batch)

    worker.executor.run = counted  # type: ignore[method-assign]
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
    with running(worker):
        got = pubsub.collect(job["out_sub"], 31, 30)
        (letter,) = pubsub.collect(job["dead_sub"], 1, 30, key=lambda m: m.data.hex()).values()
    assert sorted(got) == sorted(e for e in elements if e != crash)
    assert parse(letter.data).data.element.decode() == crash
    assert letter.attributes[ATTR_REASON] == "pipeline_error"
    # the batch, its 6 groups (of 6), then the failing group's 6 one by one: 13 runs (before:
    # 1 + 32), of which 3 fail; Beam sets the DoFns up again after each (before: 2)
    assert runs[0] == 32 and len(runs) == 13 and runs.count(1) == 6, runs
    assert handling == [None] * len(runs)
    setups = lines(tmp_path / f"{job['name']}.setup.log")
    assert len(setups) == 1 + 3, setups
    assert process_hub().value("klio_dead_letter_total", job=job["name"],
                               reason="pipeline_error") == 1


def test_an_output_too_large_for_pub_sub_dead_letters_its_message_and_the_rest_go_on(
        pubsub: PubSub, tmp_path: Path) -> None:
    big = unique("big")
    elements = [unique("e"), big, unique("e")]
    job = _setup(pubsub, tmp_path, big_element=big)
    client = RecordingClient()
    worker = _worker(Path(job["config"]), settings=ONE_BATCH, client=client,
                     dead_letter_topic=job["dead_topic"])
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements], origin="t")
    with running(worker):
        got = pubsub.collect(job["out_sub"], 2, 30)
        (letter,) = pubsub.collect(job["dead_sub"], 1, 30, key=lambda m: m.data.hex()).values()
        wait_for(lambda: client.events.count("acked") == 3, 10, "all three acknowledged")
    # before: the client's MessageTooLargeError handed the whole batch back, for ever, and
    # the outputs sent before it went out again on each redelivery
    assert sorted(got) == sorted(e for e in elements if e != big)
    assert not client.handed_back
    assert parse(letter.data).data.element.decode() == big  # the original, for replay
    assert letter.attributes[ATTR_REASON] == "output_too_large"
    assert letter.attributes["origin"] == "t"
    assert process_hub().value("klio_dead_letter_total", job=job["name"],
                               reason="output_too_large") == 1


def test_a_message_too_large_to_dead_letter_with_its_bytes_goes_as_its_record(
        pubsub: PubSub, tmp_path: Path) -> None:
    # Under Pub/Sub's limit as it came, over it with the dead letter's attributes: before, it
    # went back for redelivery for ever (no dead-letter policy on the job's own subscription),
    # counted once more each time.
    job = _setup(pubsub, tmp_path)
    client = RecordingClient()
    worker = _worker(Path(job["config"]), settings=ONE_BATCH, client=client,
                     dead_letter_topic=job["dead_topic"])
    ok = unique("e")
    near_limit = b"x" * 9_999_900  # not a KlioMessage
    pubsub.publish(job["in_topic"], [near_limit, serialize(new_message(ok))], origin="t")
    with running(worker):
        assert list(pubsub.collect(job["out_sub"], 1, 30)) == [ok]
        (letter,) = pubsub.collect(job["dead_sub"], 1, 30, key=lambda m: m.data.hex()).values()
        wait_for(lambda: client.events.count("acked") == 2, 10, "both acknowledged")
    # (a lease extension of the 10 MB message's may show; a hand-back would be of 10 s)
    redelivery = ONE_BATCH.redelivery_delay_seconds
    assert [seconds for _, seconds in client.handed_back if seconds == redelivery] == []
    record = json.loads(letter.data)
    assert record["reason"] == letter.attributes[ATTR_REASON] == "decode_error"
    assert process_hub().value("klio_dead_letter_total", job=job["name"],
                               reason="decode_error") == 1


def test_a_dead_letters_record_alone_fits_whatever_its_elements_length(
        pubsub: PubSub, tmp_path: Path) -> None:
    # the record goes alone when the original is too large; JSON writes "é" as 6 bytes, so an
    # id of 5 million of them made a 30 MB record, refused in turn
    job = _setup(pubsub, tmp_path)
    worker = _worker(Path(job["config"]), dead_letter_topic=job["dead_topic"])
    huge = "\x01" + "é" * 5_000_000
    letter = DeadLetter("invalid_element_id", "message", f"refused {huge!r}", huge)
    record = worker._dead_letter(None, letter, "ack-1")
    assert record.source == "ack-1" and len(record.data) < 10_000
    assert json.loads(record.data)["element"].startswith("\x01éé")


def test_one_inputs_backlog_does_not_hold_back_another_inputs_messages(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    other_topic = pubsub.topic(f"{job['name']}-other")
    other_sub = pubsub.subscribe(other_topic, f"{job['name']}-other")
    config = yaml.safe_load(Path(job["config"]).read_text())
    config["job_config"]["events"]["inputs"].append({"type": "pubsub", "subscription": other_sub})
    Path(job["config"]).write_text(yaml.safe_dump(config))
    backfill = [f"a-{i:03d}" for i in range(200)]  # one parent's backfill
    fresh = ["b-0", "b-1", "b-2"]  # the other parent's few new ones
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in backfill])
    pubsub.publish(other_topic, [serialize(new_message(e)) for e in fresh])
    tens = WorkerSettings(max_messages=10, max_wait_ms=20, target_batch_seconds=0)
    processed = tmp_path / f"{job['name']}.processed.log"
    with running(_worker(Path(job["config"]), settings=tens)):
        wait_for(lambda: set(fresh) <= set(lines(processed)), 60, "the other input's messages")
    order = lines(processed)
    # before: after the whole backfill (each batch was pulled from the first input first)
    assert max(order.index(e) for e in fresh) < 40, order.index("b-0")


def test_the_runs_of_a_failed_batch_are_counted_once_each_message(
        pubsub: PubSub, tmp_path: Path) -> None:
    # The job's Prometheus counts are handed on every 64 messages within a run: what a failed
    # run counted before it failed is dropped, so its messages count once, in the runs that
    # succeed, and the one that fails alone counts as read and dead-lettered.
    elements = [unique("e") for _ in range(100)]
    job = _setup(pubsub, tmp_path, crash_element=elements[-1])
    settings = WorkerSettings(max_messages=100, max_wait_ms=500, target_batch_seconds=0)
    worker = _worker(Path(job["config"]), settings=settings,
                     dead_letter_topic=job["dead_topic"])
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
    with running(worker):
        got = pubsub.collect(job["out_sub"], 99, 60)
        pubsub.collect(job["dead_sub"], 1, 30, key=lambda m: m.data.hex())
    assert len(got) == 99
    hub = process_hub()
    assert hub.value("klio_messages_received_total", job=job["name"]) == 100
    assert hub.value("klio_messages_output_total", job=job["name"]) == 99
    assert hub.value("klio_dead_letter_total", job=job["name"], reason="pipeline_error") == 1
    assert hub.value("klio_messages_processing_seconds_count", job=job["name"]) == 99


def test_non_klio_bytes_even_empty_ones_run_beside_klio_messages_when_allowed(
        pubsub: PubSub, tmp_path: Path) -> None:
    # Klio's allow_non_klio_messages: any bytes are an element; an empty message made the
    # worker fail its batch after the run, and hand it back, again and again
    job = _setup(pubsub, tmp_path, allow_non_klio_messages=True)
    client = RecordingClient()
    worker = _worker(Path(job["config"]), client=client)
    with running(worker):
        pubsub.publish(job["in_topic"], [b""], origin="test")  # Pub/Sub: no data, an attribute
        pubsub.publish(job["in_topic"], [b"plain-id", serialize(new_message("fine"))])
        got = pubsub.collect(job["out_sub"], 3, 30,
                             key=lambda m: KlioMessage.FromString(m.data).data.element.decode())
        wait_for(lambda: client.events.count("acked") == 3, 10, "all three acknowledged")
    assert sorted(got) == ["", "fine", "plain-id"]
    assert client.handed_back == []


def test_a_failed_publish_hands_the_batch_back_and_nothing_is_lost(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    missing_out = topic(unique("later"))  # the output topic does not exist yet
    config = Path(job["config"])
    config.write_text(config.read_text().replace(job["out_topic"], missing_out))
    client = RecordingClient()
    worker = _worker(config, client=client)
    elements = [unique("e") for _ in range(3)]
    with running(worker):
        pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
        wait_for(lambda: process_hub().value("klio_worker_nacked_total", job=job["name"],
                                             reason="publish_error") >= 3, 30, "a hand-back")
    assert "acked" not in client.events  # handed back, and still so after the worker stopped
    # Topic and subscription exist before a worker runs again (a message published before the
    # subscription exists would never reach it, and the test could not see it arrive).
    pubsub.publisher.create_topic(name=missing_out)
    pubsub.topics.append(missing_out)
    out_sub = pubsub.subscribe(missing_out, unique("later-out"))
    with running(_worker(config, client=RecordingClient())):
        got = pubsub.collect(out_sub, 3, 60)
    assert sorted(got) == sorted(elements)


@pytest.mark.parametrize("needs_a_message", [False, True], ids=["any-bundle", "no-empty-bundle"])
def test_a_setup_that_fails_hands_the_batch_back_not_ready_and_dead_letters_nothing(
        pubsub: PubSub, tmp_path: Path, needs_a_message: bool) -> None:
    down = tmp_path / "model-store-down"
    down.write_text("")
    # no-empty-bundle: the empty run that tries the pipeline fails once set up, though messages
    # run (before: taken for the outage going on, and nothing was pulled again)
    job = _setup(pubsub, tmp_path, setup_fails_while=str(down),
                 bundle_needs_a_message=needs_a_message)
    health = HealthState(stall_seconds=2)
    alive: list[bool] = []
    quick_return = WorkerSettings(max_messages=50, max_wait_ms=20, redelivery_delay_seconds=1)
    worker = _worker(Path(job["config"]), health=health, settings=quick_return,
                     dead_letter_topic=job["dead_topic"])
    elements = [unique("e") for _ in range(5)]
    hub, name = process_hub(), job["name"]
    setups = tmp_path / f"{name}.setup.log"
    with running(worker):
        pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
        wait_for(lambda: hub.value("klio_worker_nacked_total", job=name, reason="run_error") >= 1,
                 30, "the batch handed back")
        assert not health.ready()[0] and "model store unavailable" in health.ready()[1]
        handed_back = hub.value("klio_worker_nacked_total", job=name, reason="run_error")
        tried = len(lines(setups))

        def tried_again() -> bool:
            alive.append(health.alive()[0])
            return len(lines(setups)) >= tried + 3

        # after pauses of 1, 2 and 4 s, longer than the stall limit (before: /healthz failed)
        wait_for(tried_again, 30, "the pipeline tried again")
        assert all(alive)
        # tried with no message: a hand-back costs each message a delivery attempt, which a
        # subscription's dead-letter policy counts
        assert hub.value("klio_worker_nacked_total", job=name, reason="run_error") == handed_back
        assert health.alive()[0]
        down.unlink()  # the store is back: ready again, and the same messages run
        assert sorted(pubsub.collect(job["out_sub"], 5, 30)) == sorted(elements)
        wait_for(lambda: health.ready()[0], 10, "ready again")
    # before: each message, run alone and failing alike, was dead-lettered, and never ran
    assert not pubsub.drain(job["dead_sub"])
    assert hub.value("klio_dead_letter_total", job=name, reason="pipeline_error") == 0


def test_the_pauses_between_trials_of_a_broken_pipeline_grow_across_the_batches_between(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    worker = _worker(Path(job["config"]))

    def past_setup(feed: Any) -> Any:  # a step that needs a message fails the empty trial
        raise ValueError("max() arg is an empty sequence")

    worker._execute = past_setup  # type: ignore[method-assign]
    worker.health.pipeline_failing = "setup failed"
    started = time.monotonic()
    worker._wait_for_pipeline()  # 1 s, then pulls: a later step's setup may fail again
    worker.health.pipeline_failing = "setup failed"
    worker._wait_for_pipeline()  # 2 s (before: 1 s again, a hand-back a second)
    assert worker.pipeline_backoff.failures == 2
    assert time.monotonic() - started >= 3.0
    worker.executor.close()


def test_not_ready_while_publishing_fails_then_ready_again(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    missing_out = topic(unique("gone"))  # the output topic is not there (deleted, say)
    config = Path(job["config"])
    config.write_text(config.read_text().replace(job["out_topic"], missing_out))
    health = HealthState()
    quick_return = WorkerSettings(max_messages=50, max_wait_ms=20, redelivery_delay_seconds=1)
    worker = _worker(config, health=health, settings=quick_return)
    element = unique("e")
    with running(worker):
        pubsub.publish(job["in_topic"], [serialize(new_message(element))])
        wait_for(lambda: not health.ready()[0], 30, "not ready while publishing fails")
        assert missing_out in health.ready()[1]
        assert health.alive()[0]  # a restart would not mend it
        pubsub.publisher.create_topic(name=missing_out)  # the operator's drift repair, say
        pubsub.topics.append(missing_out)
        out_sub = pubsub.subscribe(missing_out, unique("gone-out"))
        wait_for(lambda: health.ready()[0], 60, "ready once a batch's publishes go out")
        # (the first element's output may have gone out before the subscription was made)
        later = unique("e")
        pubsub.publish(job["in_topic"], [serialize(new_message(later))])
        seen: set[str] = set()

        def later_out() -> bool:
            seen.update(parse(m.data).data.element.decode() for m in pubsub.drain(out_sub))
            return later in seen

        wait_for(later_out, 30, "the next element's output")
        assert seen <= {element, later}


def test_a_failed_dead_letter_publish_hands_back_only_its_message_after_a_delay(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    client = RecordingClient()
    absent = topic(unique("no-such-dead"))  # a typo'd dead-letter topic
    worker = _worker(Path(job["config"]), client=client, dead_letter_topic=absent)
    good = unique("good")
    with running(worker):
        pubsub.publish(job["in_topic"], [b"not a klio message", serialize(new_message(good))])
        wait_for(lambda: client.handed_back and "acked" in client.events, 30,
                 "the garbage handed back, the good message acknowledged")
        got = pubsub.collect(job["out_sub"], 1, 30)
    assert list(got) == [good]
    # Only the message whose dead letter could not be sent goes back, and not at once: a
    # lasting failure must not republish the others' outputs in a loop.
    assert client.events.count("acked") == 1
    assert len(client.handed_back) == 1
    assert client.handed_back[0][1] == WorkerSettings().redelivery_delay_seconds > 0
    assert process_hub().value("klio_worker_nacked_total", job=job["name"],
                               reason="publish_error") == 1


def test_two_requests_for_one_element_in_a_batch_run_it_once_and_both_are_answered(
        pubsub: PubSub, tmp_path: Path) -> None:
    out_dir = tmp_path / "made"
    job = _setup(pubsub, tmp_path, data={"outputs": [{"type": "file", "location": str(out_dir)}]})
    worker = _worker(Path(job["config"]), settings=ONE_BATCH)
    element = unique("asked-twice")
    me = JobRef(job["name"], PROJECT)
    requests = [new_message(element, recipients=[JobRef(child, PROJECT), me])
                for child in ("child-a", "child-b")]
    pubsub.publish(job["in_topic"], [serialize(r) for r in requests])  # one batch
    with running(worker):

        def asker(message: Any) -> str:
            return parse(message.data).metadata.intended_recipients.limited.recipients[0].job_name

        answers = pubsub.collect(job["out_sub"], 2, 30, key=asker)
    assert sorted(answers) == ["child-a", "child-b"]  # each asker gets its own answer
    # one run made the output; the other request found it, as in Klio's one-at-a-time flow
    assert lines(tmp_path / f"{job['name']}.processed.log") == [element]
    assert process_hub().value("klio_messages_skipped_total", job=job["name"],
                               reason="output_exists") == 1


def test_probes_and_metrics(pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    late_sub = subscription(unique("late"))
    config = Path(job["config"])
    config.write_text(config.read_text().replace(job["in_sub"], late_sub))
    health = HealthState()
    servers = ProbeServers(health, process_hub().registry, "127.0.0.1", free_port(), free_port())

    def get(path: str, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or servers.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    worker = _worker(config, health=health)
    try:
        with running(worker):
            # Not ready while the subscription does not exist; alive all the same.
            wait_for(lambda: "does not exist" in get("/readyz")[1], 10, "the not-ready reason")
            assert get("/readyz")[0] == 503
            assert get("/healthz")[0] == 200
            pubsub.subscriber.create_subscription(name=late_sub, topic=job["in_topic"])
            pubsub.subscriptions.append(late_sub)
            wait_for(lambda: get("/readyz")[0] == 200, 10, "ready once subscribed")
            pubsub.publish(job["in_topic"], [serialize(new_message("m1"))])
            pubsub.collect(job["out_sub"], 1, 30)
            status, text = get("/metrics", servers.metrics_port)
            assert status == 200
            assert f'klio_worker_batches_total{{job="{job["name"]}"}} 1.0' in text
            assert f'klio_messages_output_total{{job="{job["name"]}"}} 1.0' in text
            assert get("/nope")[0] == 404
        assert get("/readyz") == (503, "draining (SIGTERM): not pulling\n")
    finally:
        servers.close()


def test_a_probe_connection_without_a_request_is_closed() -> None:
    # each open connection holds a thread of the health server: one that sends nothing is let
    # go, and probes go on being answered
    servers = ProbeServers(HealthState(), process_hub().registry, "127.0.0.1", free_port(),
                           free_port(), idle_seconds=0.5)
    try:
        idle = socket.create_connection(("127.0.0.1", servers.health_port), timeout=10)
        started = time.monotonic()
        assert idle.recv(1) == b""  # closed by the server, not by this timeout
        assert time.monotonic() - started < 5
        idle.close()
        # a request dripped a byte at a time is cut too, once the connection's time is up
        drip = socket.create_connection(("127.0.0.1", servers.health_port), timeout=10)
        started = time.monotonic()
        with pytest.raises(OSError):  # BrokenPipe or ConnectionReset, once it is cut
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"x" * 100:
                drip.send(bytes([byte]))
                time.sleep(0.1)
        assert time.monotonic() - started < 5
        drip.close()
        url = f"http://127.0.0.1:{servers.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            assert response.status == 200
    finally:
        servers.close()


def test_liveness_fails_when_the_loop_stalls() -> None:
    now = [0.0]
    health = HealthState(stall_seconds=30, clock=lambda: now[0])
    health.subscribed = True
    assert health.alive() == (True, "ok") and health.ready()[0]
    now[0] = 31.0
    alive, why = health.alive()
    assert not alive and "no progress for 31s" in why
    assert not health.ready()[0]
    health.tick()
    assert health.alive()[0]


def test_liveness_counts_each_element_begun_or_finished_as_progress() -> None:
    now, steps = [0.0], [0]
    health = HealthState(stall_seconds=30, clock=lambda: now[0], progress=lambda: steps[0])
    for minute in range(1, 11):  # ten minutes of one batch, an element every 20 s
        now[0] = minute * 60 - 40
        steps[0] += 1
        assert health.alive() == (True, "ok")
        now[0] = minute * 60 - 20
        steps[0] += 1
        assert health.alive() == (True, "ok")
    now[0] += 31  # then an element that never ends
    alive, why = health.alive()
    assert not alive and "no progress for 31s" in why


def test_the_stall_limit_allows_the_jobs_timeout_on_each_try() -> None:
    assert stall_limit(600, None) == 600
    assert stall_limit(600, JobLimits(None, 3)) == 600  # retries without a timeout: unbounded
    assert stall_limit(600, JobLimits(100, 1)) == 600  # within the default already
    assert stall_limit(600, JobLimits(900, 0)) == 900 + STALL_MARGIN_SECONDS
    assert stall_limit(600, JobLimits(900, 2)) == 3 * 900 + STALL_MARGIN_SECONDS
    config = parse_config({"job_name": "long", "job_config": {"timeout_seconds": 900,
                                                               "retries": 1}})
    assert health_for(config, 600).stall_seconds == 2 * 900 + STALL_MARGIN_SECONDS
    assert health_for(parse_config({"job_name": "short"}), 600).stall_seconds == 600


def _liveness_while(health: HealthState, done: Callable[[], bool], timeout: float
                    ) -> list[tuple[float, bool]]:
    """(seconds since the start, alive) every 0.1 s until ``done``."""
    start, seen = time.monotonic(), []
    while not done():
        assert time.monotonic() - start < timeout, "the batch did not end in time"
        seen.append((time.monotonic() - start, health.alive()[0]))
        time.sleep(0.1)
    return seen


def test_a_batch_of_elements_longer_than_the_stall_limit_in_all_stays_alive(
        pubsub: PubSub, tmp_path: Path) -> None:
    # Six elements of 0.4 s in one batch (2.4 s) against a stall limit of 1 s: before, the loop
    # only ticked between batches, so /healthz failed in the middle of every long batch, and
    # the kubelet's restart handed the whole batch back to run again, forever.
    job = _setup(pubsub, tmp_path, sleep_seconds=0.4)
    elements = [unique("long") for _ in range(6)]
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
    health = HealthState(stall_seconds=1.0)
    worker = _worker(Path(job["config"]), health=health, settings=ONE_BATCH)
    processed = tmp_path / f"{job['name']}.processed.log"
    with running(worker):
        wait_for(lambda: lines(processed), 30, "the first element")
        seen = _liveness_while(health, lambda: len(lines(processed)) == 6, 30)
        got = pubsub.collect(job["out_sub"], 6, 30)
    assert sorted(got) == sorted(elements)
    assert process_hub().value("klio_worker_batches_total", job=job["name"]) == 1
    assert seen[-1][0] > 1.5, "the samples must outlast the stall limit"
    assert all(alive for _, alive in seen), seen


def test_one_element_longer_than_the_stall_limit_is_taken_for_stuck(
        pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path, sleep_seconds=2.5)
    pubsub.publish(job["in_topic"], [serialize(new_message(unique("stuck")))])
    health = HealthState(stall_seconds=1.0)
    worker = _worker(Path(job["config"]), health=health)
    processed = tmp_path / f"{job['name']}.processed.log"
    with running(worker):
        wait_for(lambda: health.subscribed, 30, "subscribed")
        seen = _liveness_while(health, lambda: bool(lines(processed)), 30)
        pubsub.collect(job["out_sub"], 1, 30)
    assert not all(alive for _, alive in seen), seen
    assert health.alive()[0]  # alive again once the element ended


def test_setup_once_and_lines_of_the_test_job(pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    worker = _worker(Path(job["config"]))
    with running(worker):
        for round_ in range(3):
            elements = [unique(f"r{round_}") for _ in range(4)]
            pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
            pubsub.collect(job["out_sub"], 4, 30)
    assert len(lines(tmp_path / f"{job['name']}.setup.log")) == 1
    assert process_hub().value("klio_worker_batches_total", job=job["name"]) >= 3


def test_on_the_gcs_emulator_the_jobs_own_gcs_clients_find_credentials_at_once(
        pubsub: PubSub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A job's own client (Beam's GcsIO in Klio's catvdog) asks google.auth; with no credentials
    # it probes the metadata server for ~20 s, retrying, before the worker's first message.
    import google.auth

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://localhost:1")
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.setenv(name, "")  # recorded as it was, so what the worker sets is undone
        monkeypatch.delenv(name)
    _worker(Path(_setup(pubsub, tmp_path)["config"]))
    started = time.monotonic()
    credentials, _ = google.auth.default()
    assert credentials is not None and time.monotonic() - started < 2


@pytest.mark.parametrize(("change", "error"), [
    ({"outputs": [{"type": "file", "location": "out"}]},
     "job_config.events.outputs[0]: the streaming worker writes pubsub outputs only"),
    ({"inputs": [{"type": "pubsub", "topic": "projects/klio-local/topics/only-topic"}]},
     "job_config.events.inputs[0].subscription: required by the worker"),
    ({"inputs": [{"type": "pubsub", "subscription": "bare-sub"}]},
     "has no project"),
])
def test_bad_event_config_is_refused_by_field(tmp_path: Path, change: dict[str, object],
                                              error: str) -> None:
    config = write_config(tmp_path, unique("bad"), subscription("in-sub"), topic("out-topic"))
    import yaml

    data = yaml.safe_load(config.read_text())
    data["job_config"]["events"].update(change)
    data["pipeline_options"].pop("project")
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        _worker(config)


def test_missing_subscription_error_is_not_found(pubsub: PubSub) -> None:
    with pytest.raises(api_exceptions.NotFound):
        PubSubClient().ack_deadline_of(subscription(unique("none")))


def test_acknowledging_gives_up_soon_while_pubsub_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client's own retry of an ack is 60 s, in which the worker's loop stood still and an
    # outage went unreported (not ready only once a pull fails). Nothing listens on this port.
    from klio_runtime.io.pubsub import LEASE_CALL_RETRY_SECONDS

    assert LEASE_CALL_RETRY_SECONDS <= 15
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    client = PubSubClient(lease_call_retry_seconds=1.0)
    start = time.monotonic()
    with pytest.raises(api_exceptions.GoogleAPIError):
        client.ack("projects/klio-local/subscriptions/s", ["ack-1"])
    with pytest.raises(api_exceptions.GoogleAPIError):
        client.modify_ack_deadline("projects/klio-local/subscriptions/s", ["ack-1"], 0)
    assert time.monotonic() - start < 10
    client.close()


def test_batches_stay_within_the_byte_bound(pubsub: PubSub, tmp_path: Path) -> None:
    job = _setup(pubsub, tmp_path)
    tight = WorkerSettings(max_messages=50, max_wait_ms=50, max_batch_bytes=300,
                           target_batch_seconds=0)
    client = RecordingClient()
    worker = _worker(Path(job["config"]), settings=tight, client=client)
    elements = [unique("big") for _ in range(8)]
    pubsub.publish(job["in_topic"], [serialize(new_message(e, b"x" * 100)) for e in elements])
    with running(worker):
        got = pubsub.collect(job["out_sub"], len(elements), 60)
    assert sorted(got) == sorted(elements)
    # what a pull brought past the bound went back at once, not after the failure delay
    assert client.handed_back and {seconds for _, seconds in client.handed_back} == {0}
    hub, name = process_hub(), job["name"]
    batches = hub.value("klio_worker_batch_messages_count", job=name)
    assert batches >= 4  # ~115 bytes each: two fit in 300
    assert hub.value("klio_worker_batch_messages_bucket", job=name, le="2.0") == batches


def test_the_batch_size_follows_the_jobs_pace() -> None:
    slow = _BatchSizer(target_seconds=30, most=100)
    sizes = [slow.size]
    for _ in range(4):  # elements of 7 s: what fits in 30 s, reached by doubling
        slow.ran(slow.size, 7.0 * slow.size)
        sizes.append(slow.size)
    assert sizes == [1, 2, 4, 4, 4]
    fast = _BatchSizer(target_seconds=30, most=100)
    for _ in range(7):
        fast.ran(fast.size, 0.001 * fast.size)
    assert fast.size == 100
    fast.ran(3, 0.003)  # the subscription held only three: no reason to shrink
    assert fast.size == 100
    fast.ran(100, 300.0)  # the job slowed down to 3 s an element
    assert fast.size == 10
    slow.ran(4, 400.0)  # one element alone takes longer than the target: still one at a time
    assert slow.size == 1
    assert _BatchSizer(target_seconds=0, most=100).size == 100


def test_the_batch_size_follows_the_pace_of_the_messages_sent_to_run() -> None:
    sizer = _BatchSizer(target_seconds=20, most=100)
    sizer.ran(1, 3.0, to_run=1)  # a new track: 3 s
    assert sizer.size == 2  # twice as many as ran so far, at most
    for _ in range(5):  # then a backlog of tracks done already: skipped at once
        sizer.ran(sizer.size, 0.01 * sizer.size, to_run=0)
    # before: grown to 100 on the skips, so the next batch of new tracks ran for 5 minutes
    # (a drain outlasting the pod's grace period); still what fits 20 s of new tracks
    assert sizer.size == 6
    sizer.ran(6, 6.0, to_run=2)  # two of six new: 3 s each
    assert sizer.size == 6
    fresh = _BatchSizer(target_seconds=20, most=100)
    for _ in range(7):  # no message sent to run yet: the pace of the skips is all there is
        fresh.ran(fresh.size, 0.01 * fresh.size, to_run=0)
    assert fresh.size == 100


def test_a_job_of_long_elements_runs_small_batches_and_drains_in_time(
        pubsub: PubSub, tmp_path: Path) -> None:
    # 20 elements of 0.3 s: before, they ran as one batch of 6 s, outputs held back until the
    # end, and a drain waited for all of it (a pod's grace period ends first: killed, the batch
    # handed back to run again). Now a batch holds what runs in about 1 s.
    job = _setup(pubsub, tmp_path, sleep_seconds=0.3)
    elements = [unique("paced") for _ in range(20)]
    pubsub.publish(job["in_topic"], [serialize(new_message(e)) for e in elements])
    paced = WorkerSettings(max_messages=50, max_wait_ms=20, target_batch_seconds=1.0)
    worker = _worker(Path(job["config"]), settings=paced)
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    got = pubsub.collect(job["out_sub"], 4, 30)
    processed = tmp_path / f"{job['name']}.processed.log"
    assert len(lines(processed)) < len(elements), "outputs waited for the whole backlog"
    worker.stop()
    asked = time.monotonic()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - asked < 3.0, "the drain waited for more than a small batch"
    hub, name = process_hub(), job["name"]
    batches = hub.value("klio_worker_batch_messages_count", job=name)
    assert hub.value("klio_worker_batch_messages_bucket", job=name, le="5.0") == batches
    done = len(lines(processed))
    assert hub.value("klio_worker_acked_total", job=name) == done < len(elements)
    # what the drain left is still in the subscription, for the next worker
    with running(_worker(Path(job["config"]), settings=FAST)):
        got.update(pubsub.collect(job["out_sub"], len(elements) - len(got), 60))
    assert sorted(got) == sorted(elements)


def test_file_inputs_run_once_as_a_batch_job(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner
    from klio_runtime.cli import main

    (tmp_path / "ids.txt").write_text("one\ntwo\n")
    config = tmp_path / "batch.yaml"
    config.write_text(yaml.safe_dump({
        "version": 2, "job_name": unique("batch"),
        "pipeline_options": {"streaming": False},
        "job_config": {
            "events": {"inputs": [{"type": "file", "location": str(tmp_path / "ids.txt")}],
                       "outputs": [{"type": "file", "location": str(tmp_path / "out" / "ev")}]},
            "processed_log": str(tmp_path / "processed.log")}}))
    result = CliRunner().invoke(main, ["worker", "--config-file", str(config),
                                       "--job-dir", str(JOB_DIR)])
    assert result.exit_code == 0, result.output
    assert "batch done: received 2, output 2" in result.output
    assert sorted(lines(tmp_path / "processed.log")) == ["one", "two"]


def test_lease_keeper_extends_only_what_is_held(pubsub: PubSub) -> None:
    from klio_runtime.io.pubsub import LeaseKeeper

    name = unique("lease")
    in_topic = pubsub.topic(name)
    sub = pubsub.subscribe(in_topic, name)
    pubsub.publish(in_topic, [b"a", b"b"])
    client = PubSubClient()
    pulled = wait_for(lambda: client.pull(sub, 10, wait=False), 10, "two messages")
    keeper = LeaseKeeper(client, deadline=30, every=0.05)
    keeper.hold(pulled)
    keeper.start()
    try:
        wait_for(lambda: keeper.extensions >= 2, 5, "two extensions")
        keeper.release(pulled)
        after = keeper.extensions
        keeper.extend_now()  # nothing held: no call
        assert keeper.extensions == after
    finally:
        keeper.stop()
    client.ack(sub, [m.ack_id for m in pulled])


def test_klio_trigger_upstream_requests_are_published_before_the_ack(
        pubsub: PubSub, tmp_path: Path) -> None:
    from klio_runtime.transforms.helpers import KlioGcsCheckInputExists, KlioTriggerUpstream

    (tmp_path / "in").mkdir()
    job = _setup(pubsub, tmp_path, data={"inputs": [
        {"type": "file", "location": str(tmp_path / "in"), "skip_klio_existence_check": True}]})
    parent_in = pubsub.topic(f"{job['name']}-parent-in")
    parent_sub = pubsub.subscribe(parent_in, f"{job['name']}-parent-in")

    def run(pcoll, config):  # type: ignore[no-untyped-def]
        checked = pcoll | KlioGcsCheckInputExists()
        _ = checked.not_found | KlioTriggerUpstream("parent", parent_in)
        return checked.found

    loaded, _, _ = load_job(JOB_DIR, Path(job["config"]))
    client = RecordingClient()
    with running(StreamingWorker(loaded, run, FAST, client=client)):
        pubsub.publish(job["in_topic"], [serialize(new_message("absent"))])
        requests = pubsub.collect(parent_sub, 1, 30)
        wait_for(lambda: "acked" in client.events, 10, "the message acknowledged")
    limited = parse(requests["absent"].data).metadata.intended_recipients.limited
    assert {j.job_name for j in limited.recipients} == {"parent", job["name"]}
    assert client.events.index("acked") > client.events.index("published")
    assert process_hub().value("klio_worker_published_total", job=job["name"],
                               kind="trigger_upstream") == 1


def test_a_signal_during_the_loops_wait_drains_instead_of_hanging(
    pubsub: PubSub, tmp_path: Path
) -> None:
    # Python runs a signal handler on the main thread between two bytecodes: possibly inside
    # the loop's stop_event.wait(), holding the Event's lock. The handler must not wait for it.
    import signal

    from klio_runtime.worker.serve import drain_on_signal

    names = _setup(pubsub, tmp_path)
    worker = _worker(Path(names["config"]))
    on_signal = drain_on_signal(worker)
    handled = threading.Event()

    def signalled_inside_wait() -> None:
        with worker.stop_event._cond:  # type: ignore[attr-defined]  # as Event.wait holds it
            on_signal(signal.SIGTERM, None)
        handled.set()

    threading.Thread(target=signalled_inside_wait, daemon=True).start()
    assert handled.wait(10), "the signal handler waited on the lock its own thread holds"
    assert worker.stop_event.wait(10) and worker.health.draining


def test_the_worker_waits_out_a_pubsub_outage_not_ready_then_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pub/Sub unreachable (here: its emulator killed, then started again on the same port):
    # the worker stays alive, is not ready while pulls fail, and runs what comes once it answers
    from tests.emulators.pubsub import running_pubsub_emulator

    port = free_port()
    names: dict[str, str] = {}

    def resources() -> PubSub:
        client = PubSub()
        for kind in ("in", "out"):  # the same names each time: the emulator forgets them
            path = client.topic(f"{names['name']}-{kind}")
            client.subscribe(path, f"{names['name']}-{kind}")
        return client

    with running_pubsub_emulator(port=port) as host:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        names.update(name=unique("outage"))
        first = resources()
        in_sub, out_topic, out_sub = (
            f"projects/klio-local/subscriptions/{names['name']}-in",
            f"projects/klio-local/topics/{names['name']}-out",
            f"projects/klio-local/subscriptions/{names['name']}-out",
        )
        config = write_config(tmp_path, names["name"], in_sub, out_topic, {})
        worker = _worker(config)
        thread = threading.Thread(target=worker.run, name="outage-worker", daemon=True)
        thread.start()
        first.publish(f"projects/klio-local/topics/{names['name']}-in",
                      [serialize(new_message("before"))])
        first.collect(out_sub, 1, 30)
        wait_for(lambda: worker.health.ready()[0], 10, "the worker ready")
    try:
        reason = wait_for(lambda: worker.health.ready()[1] if not worker.health.ready()[0]
                          else "", 30, "the worker not ready while Pub/Sub is down")
        assert "pulling" in reason and in_sub in reason
        assert thread.is_alive()
        errors = process_hub().value("klio_worker_pull_errors_total", job=names["name"])
        assert errors >= 1
        with running_pubsub_emulator(port=port):
            again = resources()
            again.publish(f"projects/klio-local/topics/{names['name']}-in",
                          [serialize(new_message("after"))])
            assert set(again.collect(out_sub, 1, 60)) == {"after"}
            wait_for(lambda: worker.health.ready()[0], 10, "the worker ready again")
            worker.stop()
            thread.join(timeout=30)
            assert not thread.is_alive()
    finally:
        worker.stop()


def test_pubsub_unreachable_at_startup_is_said_at_once_and_a_stop_is_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the first check of the subscription waited out the client's own retries (60 s),
    # /readyz said only "starting", nothing was counted, and a SIGTERM waited for it.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    name = unique("down")
    config = write_config(tmp_path, name, subscription(f"{name}-in"), topic(f"{name}-out"), {})
    worker = _worker(config)
    thread = threading.Thread(target=worker.run, name="down-worker", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        reason = wait_for(lambda: "did not answer" in worker.health.ready()[1]
                          and worker.health.ready()[1], 10, "the reason on /readyz")
        assert "Unavailable" in reason
        wait_for(lambda: process_hub().value("klio_worker_pull_errors_total", job=name) >= 1,
                 10, "the failures counted")
        assert time.monotonic() - started < 15
    finally:
        asked = time.monotonic()
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - asked < 12


def _unreachable() -> api_exceptions.RetryError:
    """What the client raises once its own retries give up on an unreachable Pub/Sub."""
    return api_exceptions.RetryError("Timeout of 60.0s exceeded", None)


def test_the_lease_keeps_extending_after_pubsub_was_unreachable(pubsub: PubSub) -> None:
    from klio_runtime.io.pubsub import LeaseKeeper, Pulled

    class Unreachable(PubSubClient):
        def modify_ack_deadline(self, subscription, ack_ids, seconds):  # type: ignore[no-untyped-def]
            raise _unreachable()

    lease = LeaseKeeper(Unreachable(), deadline=10, every=0.05)
    lease.hold([Pulled(subscription(unique("held")), "ack-1", b"", {}, "1")])
    lease.start()
    try:
        wait_for(lambda: lease.failures >= 3, 10, "three failed extensions, each retried")
        assert lease._thread is not None and lease._thread.is_alive()
    finally:
        lease.stop()


def test_an_ack_that_cannot_reach_pubsub_does_not_stop_the_worker(
    pubsub: PubSub, tmp_path: Path
) -> None:
    class AckFailsOnce(RecordingClient):
        failed = False

        def ack(self, subscription, ack_ids):  # type: ignore[no-untyped-def]
            if not self.failed:
                self.failed = True
                raise _unreachable()
            super().ack(subscription, ack_ids)

    job = _setup(pubsub, tmp_path)
    client = AckFailsOnce()
    worker = _worker(Path(job["config"]), client=client)
    with running(worker):
        pubsub.publish(job["in_topic"], [serialize(new_message("first"))])
        pubsub.collect(job["out_sub"], 1, 30)
        wait_for(lambda: client.failed, 10, "the failed ack")
        pubsub.publish(job["in_topic"], [serialize(new_message("second"))])
        assert set(pubsub.collect(job["out_sub"], 1, 30)) >= {"second"}
        # "first" comes back after its ack deadline and is acknowledged then (at-least-once)
        wait_for(lambda: client.events.count("acked") >= 2, 30, "both acknowledged")


def test_a_message_over_grpcs_default_4_mib_runs_on_the_emulator(
    pubsub: PubSub, tmp_path: Path
) -> None:
    # the client library's emulator channel caps what a pull receives at 4 MiB; real Pub/Sub
    # takes messages of up to 10 MB, and one such message stalled every one behind it
    job = _setup(pubsub, tmp_path)
    big = serialize(new_message("big", b"\x00" * (5 * 1024 * 1024)))
    pubsub.publish(job["in_topic"], [big, serialize(new_message("small"))])
    with running(_worker(Path(job["config"]))):
        # (the job passes each message on as its data: the outputs are small)
        assert set(pubsub.collect(job["out_sub"], 2, 60)) == {"big", "small"}
