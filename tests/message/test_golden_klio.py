"""Wire compatibility with real Spotify Klio, both ways, against bytes Klio itself wrote.

golden_klio.json was written by klio-core 22.3.0 (see its "note" and make_golden_klio.py).
Each case is rebuilt here with our API; our bytes must equal Klio's byte for byte, and
Klio's bytes must parse here into exactly the fields Klio set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from klio_runtime.message import (
    KlioJob,
    KlioMessage,
    Version,
    new_message,
    parse,
    parse_exact,
    serialize,
    to_json,
)
from klio_runtime.routing import JobRef

GOLDEN = json.loads((Path(__file__).parent / "golden_klio.json").read_text())
KLIO_BYTES = {case["name"]: bytes.fromhex(case["hex"]) for case in GOLDEN["messages"]}
KLIO_JSON = {case["name"]: case["json"] for case in GOLDEN["messages"]}

A = JobRef("child-job", "proj-a")
LEAF = JobRef("leaf-job", "proj-a")


def v1_downstream() -> KlioMessage:
    msg = KlioMessage(version=Version.V1)
    msg.data.entity_id = "track-0001"
    msg.metadata.downstream.extend([A.to_proto(), JobRef("other", "proj-b").to_proto()])
    return msg


def v1_untagged() -> KlioMessage:
    msg = KlioMessage()
    msg.data.entity_id = "track-0002"
    return msg


def v1_job_inputs() -> KlioMessage:
    msg = KlioMessage(version=Version.V1)
    msg.data.entity_id = "track-0003"
    msg.data.payload = b"v1 payload"
    child = A.to_proto()
    child.inputs.add(
        topic="projects/p/topics/t",
        subscription="projects/p/subscriptions/s",
        data_location="gs://bucket/in",
    )
    msg.metadata.downstream.append(child)
    msg.metadata.visited.append(JobRef("root-job", "proj-a").to_proto())
    return msg


def v2_anyone_payload() -> KlioMessage:
    return new_message("track-0004", bytes(range(256)))


def v2_limited_trigger() -> KlioMessage:
    parent = JobRef("parent-job", "proj-a")
    return new_message("track-0005", recipients=[LEAF, parent], trigger_children_of=LEAF)


def v2_limited_bottom_up() -> KlioMessage:
    return new_message("track-0006", recipients=[JobRef("leaf-job")])


def v2_audit_log() -> KlioMessage:
    msg = new_message("track-0007")
    for seconds, nanos, job in [
        (1600000000, 0, JobRef("root-job", "proj-a")),
        (1600000001, 123456789, A),
    ]:
        item = msg.metadata.job_audit_log.add(klio_job=job.to_proto())
        item.timestamp.seconds, item.timestamp.nanos = seconds, nanos
    return msg


def v2_ping_force() -> KlioMessage:
    return new_message("track-0008", ping=True, force=True)


def v2_non_ascii() -> KlioMessage:
    return new_message("bände/曲-🎵", "ünïcødé payload".encode())


def v2_untagged_element() -> KlioMessage:
    msg = KlioMessage()
    msg.data.element = b"track-0009"
    return msg


OURS: dict[str, Callable[[], KlioMessage]] = {
    build.__name__: build
    for build in [
        v1_downstream,
        v1_untagged,
        v1_job_inputs,
        v2_anyone_payload,
        v2_limited_trigger,
        v2_limited_bottom_up,
        v2_audit_log,
        v2_ping_force,
        v2_non_ascii,
        v2_untagged_element,
    ]
}


def test_fixture_says_where_it_came_from_and_covers_every_case() -> None:
    assert "klio-core 22.3.0" in GOLDEN["note"]
    assert set(KLIO_BYTES) == set(OURS)


@pytest.mark.parametrize("name", sorted(OURS))
def test_our_bytes_equal_klios(name: str) -> None:
    assert serialize(OURS[name]()).hex() == KLIO_BYTES[name].hex()


@pytest.mark.parametrize("name", sorted(OURS))
def test_klios_bytes_parse_into_the_same_fields(name: str) -> None:
    theirs = parse_exact(KLIO_BYTES[name])
    assert theirs == OURS[name]()
    assert json.loads(to_json(theirs)) == KLIO_JSON[name]


def test_klio_fields_read_individually() -> None:
    trigger = parse(KLIO_BYTES["v2_limited_trigger"]).metadata.intended_recipients.limited
    assert [JobRef.from_proto(j) for j in trigger.recipients] == [
        LEAF,
        JobRef("parent-job", "proj-a"),
    ]
    assert JobRef.from_proto(trigger.trigger_children_of) == LEAF

    audit = parse(KLIO_BYTES["v2_audit_log"]).metadata.job_audit_log
    assert audit[1].timestamp.ToJsonString() == "2020-09-13T12:26:41.123456789Z"
    assert audit[1].klio_job == KlioJob(job_name="child-job", gcp_project="proj-a")

    flags = parse(KLIO_BYTES["v2_ping_force"]).metadata
    assert flags.ping and flags.force

    assert parse(KLIO_BYTES["v2_non_ascii"]).data.element.decode() == "bände/曲-🎵"
    assert parse(KLIO_BYTES["v2_anyone_payload"]).data.payload == bytes(range(256))

    job_input = parse(KLIO_BYTES["v1_job_inputs"]).metadata.downstream[0].inputs[0]
    assert job_input.data_location == "gs://bucket/in"


def test_klio_v1_bytes_are_upgraded_on_read() -> None:
    tagged = parse(KLIO_BYTES["v1_downstream"])
    assert (tagged.version, tagged.data.element) == (Version.V1, b"track-0001")
    untagged = parse(KLIO_BYTES["v1_untagged"])
    assert (untagged.version, untagged.data.element) == (Version.V1, b"track-0002")
    assert parse(KLIO_BYTES["v2_untagged_element"]).version == Version.V2
