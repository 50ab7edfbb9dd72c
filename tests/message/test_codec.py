"""The KlioMessage codec: parse/serialize, Klio's v1 → v2 upgrade, JSON, bad input."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest
from klio_runtime.message import (
    V1,
    V2,
    KlioJob,
    KlioMessage,
    MessageDecodeError,
    Version,
    element_id,
    from_json,
    new_message,
    parse,
    parse_exact,
    serialize,
    to_json,
    upgrade,
)
from klio_runtime.routing import JobRef


def _bytes_of(*, version: int = 0, entity_id: str = "", element: bytes = b"") -> bytes:
    msg = KlioMessage(version=version)  # type: ignore[arg-type]
    msg.data.entity_id = entity_id
    msg.data.element = element
    return serialize(msg)


# --- Klio's v1 → v2 upgrade, case by case (lib/src/klio/message/serializer.py) ---


def test_v1_tagged_with_entity_id_gets_element() -> None:
    msg = parse(_bytes_of(version=Version.V1, entity_id="track-1"))
    assert msg.version == Version.V1
    assert msg.data.element == b"track-1"
    assert msg.data.entity_id == "track-1"


def test_v1_tagged_with_both_keeps_its_element() -> None:
    msg = parse(_bytes_of(version=Version.V1, entity_id="old", element=b"new"))
    assert (msg.version, msg.data.element) == (Version.V1, b"new")


def test_untagged_with_entity_id_becomes_v1_with_element() -> None:
    msg = parse(_bytes_of(entity_id="track-ü"))
    assert msg.version == Version.V1
    assert msg.data.element == "track-ü".encode()


def test_untagged_with_element_becomes_v2() -> None:
    msg = parse(_bytes_of(element=b"track-2"))
    assert msg.version == Version.V2


def test_untagged_with_both_stays_untagged() -> None:
    msg = parse(_bytes_of(entity_id="a", element=b"b"))
    assert msg.version == Version.UNKNOWN
    assert msg.data.element == b"b"


def test_untagged_with_neither_is_tagged_v1_by_upgrade() -> None:
    # parse refuses such bytes (no element), but the upgrade itself follows Klio.
    msg = upgrade(KlioMessage())
    assert msg.version == Version.V1


def test_v2_tagged_is_left_alone_and_needs_an_element() -> None:
    assert parse(_bytes_of(version=Version.V2, element=b"x")).data.element == b"x"
    with pytest.raises(MessageDecodeError, match=r"V2 message has no data\.element"):
        parse(_bytes_of(version=Version.V2, entity_id="only-v1-id"))


def test_parse_exact_does_not_upgrade() -> None:
    msg = parse_exact(_bytes_of(entity_id="track-1"))
    assert msg.version == Version.UNKNOWN
    assert msg.data.element == b""


# --- building and reading ---


def test_new_message_defaults_to_anyone_v2() -> None:
    msg = new_message("track/ü", b"\x00\xff")
    assert msg.version == Version.V2
    assert msg.data.element == "track/ü".encode()
    assert msg.data.payload == b"\x00\xff"
    assert msg.metadata.intended_recipients.WhichOneof("recipients") == "anyone"
    assert not msg.metadata.ping and not msg.metadata.force


def test_new_message_limited_with_trigger() -> None:
    leaf, parent = JobRef("leaf", "p"), JobRef("parent", "p")
    msg = new_message(
        b"e", ping=True, force=True, recipients=[leaf, parent], trigger_children_of=leaf
    )
    limited = msg.metadata.intended_recipients.limited
    assert [JobRef.from_proto(j) for j in limited.recipients] == [leaf, parent]
    assert JobRef.from_proto(limited.trigger_children_of) == leaf
    assert msg.metadata.ping and msg.metadata.force


def test_new_message_empty_limited_list_is_still_limited() -> None:
    msg = new_message("e", recipients=[])
    assert msg.metadata.intended_recipients.WhichOneof("recipients") == "limited"


def test_new_message_refuses_empty_element_and_dangling_trigger() -> None:
    with pytest.raises(ValueError, match="empty"):
        new_message("")
    with pytest.raises(ValueError, match="trigger_children_of needs recipients"):
        new_message("e", trigger_children_of=JobRef("j"))


def test_element_id_never_fails_on_bad_utf8() -> None:
    assert element_id(new_message("spotify:track:1")) == "spotify:track:1"
    assert element_id(new_message(b"a\xffb")) == "a\\xffb"


def test_round_trip_keeps_every_field() -> None:
    msg = new_message("e", b"p", ping=True, recipients=[JobRef("a", "p")])
    msg.metadata.downstream.append(KlioJob(job_name="d"))
    msg.metadata.visited.append(KlioJob(job_name="v"))
    item = msg.metadata.job_audit_log.add()
    item.timestamp.seconds, item.timestamp.nanos = 1_600_000_000, 5
    assert parse(serialize(msg)) == msg


# --- bad input ---


def test_truncated_bytes_are_refused_with_a_reason() -> None:
    whole = serialize(new_message("track-1", b"payload" * 10))
    for cut in (1, 5, len(whole) - 1):
        with pytest.raises(MessageDecodeError, match="not valid protobuf"):
            parse(whole[:cut])


def test_json_bytes_are_not_a_klio_message() -> None:
    data = to_json(new_message("track-1")).encode()
    with pytest.raises(MessageDecodeError, match="not a KlioMessage"):
        parse(data)


def test_a_newer_producers_unknown_fields_are_kept_as_protobuf_and_klio_keep_them() -> None:
    good = serialize(new_message("e"))
    for extra in (b"\x78\x01", b"\x12\x02\x38\x01"):  # field 15 varint; data.7 = 1
        parsed = parse(good + extra)
        assert parsed.data.element == b"e" and parsed.version == new_message("e").version
        assert extra[-2:] in serialize(parsed)  # written on (merged into data), as Klio does


def test_bytes_opening_with_an_unknown_field_are_refused_naming_where() -> None:
    good = serialize(new_message("e"))
    with pytest.raises(MessageDecodeError, match=r"unknown field number at 15"):
        parse(b"\x78\x01" + good)
    # data.7 first: the opening field is data, known, so it is kept there
    kept = parse(b"\x12\x02\x38\x01" + good)
    assert kept.data.element == b"e" and b"\x38\x01" in serialize(kept)


def test_wrong_wire_type_for_a_known_field_is_refused_when_it_opens_the_bytes() -> None:
    # field 3 (version) sent as length-delimited: protobuf keeps it as unknown.
    with pytest.raises(MessageDecodeError, match="unknown field"):
        parse(b"\x1a\x01x" + serialize(new_message("e")))


def test_a_version_klio_does_not_know_is_read_as_untagged_as_klio_does() -> None:
    # Klio's _handle_msg_compat applies its untagged rules to any version but V1 and V2
    assert parse(_bytes_of(version=7, element=b"e")).version == V2
    assert parse(_bytes_of(version=7, entity_id="e")).version == V1
    both = parse(_bytes_of(version=7, entity_id="e", element=b"e"))
    assert both.version == 7 and both.data.element == b"e"


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(MessageDecodeError, match="no element"):
        parse(b"")


def test_random_bytes_are_refused_or_wrapped_never_crash() -> None:
    rng = __import__("random").Random(1234)
    refused = 0
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(1, 64))
        try:
            msg = parse(data)
        except MessageDecodeError:
            refused += 1
            wrapped = parse(data, allow_non_klio=True)
            assert wrapped.data.element == data
        else:
            assert msg.data.element  # accepted ones name an element
    assert refused >= 1990


def test_non_klio_bytes_are_wrapped_when_allowed() -> None:
    msg = parse(b"track-0042", allow_non_klio=True)
    assert msg.version == Version.V2
    assert msg.data.element == b"track-0042"
    assert msg.metadata.intended_recipients.WhichOneof("recipients") == "anyone"
    klio = serialize(new_message("real", b"p"))
    assert parse(klio, allow_non_klio=True).data.payload == b"p"


def test_traversal_element_is_data_to_the_codec() -> None:
    msg = parse(serialize(new_message("../../etc/passwd")))
    assert element_id(msg) == "../../etc/passwd"


# --- JSON ---


def test_json_uses_proto_field_names_base64_and_enum_names() -> None:
    msg = new_message("e", b"\xff", recipients=[JobRef("a", "p")])
    item = msg.metadata.job_audit_log.add()
    item.timestamp.seconds = 1_600_000_000
    doc = json.loads(to_json(msg))
    assert doc["version"] == "V2"
    assert doc["data"] == {"element": "ZQ==", "payload": "/w=="}
    assert doc["metadata"]["intended_recipients"]["limited"]["recipients"] == [
        {"job_name": "a", "gcp_project": "p"}
    ]
    assert doc["metadata"]["job_audit_log"][0]["timestamp"] == "2020-09-13T12:26:40Z"
    assert from_json(to_json(msg)) == msg


def test_from_json_names_an_unknown_field() -> None:
    with pytest.raises(MessageDecodeError, match=r'no field named "elemnt"'):
        from_json('{"data": {"elemnt": "ZQ=="}}')


def test_from_json_names_a_wrong_type() -> None:
    with pytest.raises(MessageDecodeError, match=r"KlioMessage\.metadata\.ping"):
        from_json('{"metadata": {"ping": "yes"}}')
    with pytest.raises(MessageDecodeError, match="version"):
        from_json('{"version": "V9"}')


def test_from_json_refuses_text_that_is_not_json() -> None:
    with pytest.raises(MessageDecodeError, match="not JSON"):
        from_json("\x0a\x03abc")
    with pytest.raises(MessageDecodeError, match="not a KlioMessage") as info:
        from_json("[1, 2]")
    assert "\n" not in str(info.value)


# --- size ---


def _rss_high_water() -> int | None:
    """Peak resident bytes since the last reset, or None where Linux cannot reset it."""
    try:
        status = Path("/proc/self/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) * 1024 if match else None
    except OSError:
        return None


def _reset_rss_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def test_100mb_payload_parses_and_serializes_in_bounded_memory() -> None:
    size = 100 * 1024 * 1024
    msg = new_message("big", os.urandom(16) * (size // 16))
    data = serialize(msg)
    del msg

    rss_measurable = _reset_rss_high_water()
    rss_before = _rss_high_water()
    tracemalloc.start()
    try:
        parsed = parse(data)
        out = serialize(parsed)
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_peak = _rss_high_water()

    assert out == data
    assert len(parsed.data.element) == 3  # touch a field; payload is not copied out
    # Python heap: the output bytes only.
    assert python_peak < 3 * size
    if rss_measurable and rss_before is not None and rss_peak is not None:
        # C side included: protobuf's arena copy + the serialized output (+ its buffer).
        assert rss_peak - rss_before < 3.3 * size
