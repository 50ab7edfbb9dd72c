"""Property-based round trips over generated KlioMessages, and the element-id guarantee."""

from __future__ import annotations

import ntpath
import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st
from klio_runtime.message import (
    InvalidElementId,
    KlioJob,
    KlioMessage,
    from_json,
    parse,
    parse_exact,
    serialize,
    to_json,
    validate_element_id,
)

texts = st.text(max_size=12)
jobs = st.builds(
    lambda name, project, inputs: _job(name, project, inputs),
    texts,
    texts,
    st.lists(st.tuples(texts, texts, texts), max_size=2),
)


def _job(name: str, project: str, inputs: list[tuple[str, str, str]]) -> KlioJob:
    job = KlioJob(job_name=name, gcp_project=project)
    for topic, subscription, location in inputs:
        job.inputs.add(topic=topic, subscription=subscription, data_location=location)
    return job


@st.composite
def messages(draw: st.DrawFn) -> KlioMessage:
    msg = KlioMessage(version=draw(st.sampled_from([0, 1, 2])))  # type: ignore[arg-type]
    msg.data.element = draw(st.binary(max_size=24))
    msg.data.entity_id = draw(texts)
    if not msg.data.element and not msg.data.entity_id:
        msg.data.element = b"e"
    msg.data.payload = draw(st.binary(max_size=64))
    meta = msg.metadata
    meta.ping, meta.force = draw(st.booleans()), draw(st.booleans())
    meta.downstream.extend(draw(st.lists(jobs, max_size=3)))
    meta.visited.extend(draw(st.lists(jobs, max_size=2)))
    for seconds, nanos, job in draw(
        st.lists(
            st.tuples(st.integers(0, 253402300799), st.integers(0, 999_999_999), jobs),
            max_size=3,
        )
    ):
        item = meta.job_audit_log.add(klio_job=job)
        item.timestamp.seconds, item.timestamp.nanos = seconds, nanos
    kind = draw(st.sampled_from(["none", "anyone", "limited"]))
    if kind == "anyone":
        meta.intended_recipients.anyone.SetInParent()
    elif kind == "limited":
        limited = meta.intended_recipients.limited
        limited.SetInParent()
        limited.recipients.extend(draw(st.lists(jobs, max_size=3)))
        if draw(st.booleans()):
            limited.trigger_children_of.CopyFrom(draw(jobs))
    return msg


@settings(max_examples=200, deadline=None)
@given(messages())
def test_bytes_round_trip_exactly(msg: KlioMessage) -> None:
    assert parse_exact(serialize(msg)) == msg


@settings(max_examples=200, deadline=None)
@given(messages())
def test_json_round_trip_exactly(msg: KlioMessage) -> None:
    assert from_json(to_json(msg)) == msg


@settings(max_examples=200, deadline=None)
@given(messages())
def test_upgrade_is_idempotent_and_keeps_payload(msg: KlioMessage) -> None:
    data = serialize(msg)
    try:
        once = parse(data)
    except ValueError:
        # the one refusal after upgrade: V2 naming its element only in entity_id
        assert msg.version == 2 and not msg.data.element
        return
    assert parse(serialize(once)) == once
    assert once.data.payload == msg.data.payload
    assert once.data.element


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab./\\:\x00\n~ é"), max_size=16) | st.text(max_size=16))
def test_accepted_ids_stay_under_their_prefix(element: str) -> None:
    try:
        text = validate_element_id(element)
    except InvalidElementId as exc:
        assert repr(element)[:20] in str(exc)
        return
    for flavour, base in ((posixpath, "/data/prefix"), (ntpath, "D:\\data\\prefix")):
        joined = flavour.normpath(flavour.join(base, text))
        assert joined.startswith(base + flavour.sep), (flavour.__name__, joined)


@settings(max_examples=300, deadline=None)
@given(st.characters(min_codepoint=0x20, max_codepoint=0x7E), st.binary(max_size=40))
def test_bytes_starting_with_printable_ascii_are_never_a_klio_message(
    first: str, rest: bytes
) -> None:
    data = first.encode() + rest
    try:
        parse(data)
    except ValueError as exc:
        assert "not a KlioMessage" in str(exc)
    else:
        raise AssertionError(f"{data!r} parsed as a KlioMessage")
