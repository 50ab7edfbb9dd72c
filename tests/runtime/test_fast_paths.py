"""The speed paths keep behaviour: carried messages, batched metrics, fan-out after handle_klio."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from klio_runtime import message as kmessage
from klio_runtime.decorators import handle_klio
from klio_runtime.message import KlioMessage
from klio_runtime.metrics import KlioMetrics, MetricsHub
from klio_runtime.routing import AuditStamper, JobRef, append_audit_entry
from prometheus_client import generate_latest

from tests.runtime.helpers import bound, make_config, msg_bytes


def test_carried_message_is_handed_out_once_and_matches_its_bytes() -> None:
    msg = kmessage.new_message("e1", b"p")
    data = kmessage.carry(msg)
    assert type(data) is bytes and data == kmessage.serialize(msg)
    assert kmessage.take_carried(bytes(bytearray(data))) is None  # equal, another object: not it
    assert kmessage.take_carried(data) is msg
    assert kmessage.take_carried(data) is None  # a second consumer parses instead


def test_a_carried_message_can_be_checked_without_taking_it() -> None:
    msg = kmessage.new_message("e2")
    data = kmessage.carry(msg)
    assert kmessage.is_carried(data) and kmessage.is_carried(data)
    assert not kmessage.is_carried(bytes(bytearray(data)))
    assert kmessage.take_carried(data) is msg
    assert not kmessage.is_carried(data)


def test_fan_out_after_handle_klio_each_branch_sees_the_original() -> None:
    # Two consumers of one handle_klio output: the first may change the carried message, the
    # second must still see what the bytes say.
    bound(make_config())

    @handle_klio
    def set_payload(ctx: Any, item: Any) -> bytes:
        return b"shared"

    @handle_klio
    def branch_a(ctx: Any, item: Any) -> bytes:
        return item.payload + b"+a"

    @handle_klio
    def branch_b(ctx: Any, item: Any) -> bytes:
        return item.payload + b"+b"

    def payload(data: bytes) -> bytes:
        return kmessage.parse(data).data.payload

    with beam.Pipeline(runner=FnApiRunner()) as p:
        shared = p | beam.Create([msg_bytes("e1"), msg_bytes("e2")]) | beam.Map(set_payload)
        a = shared | "A" >> beam.Map(branch_a) | "pa" >> beam.Map(payload)
        b = shared | "B" >> beam.Map(branch_b) | "pb" >> beam.Map(payload)
        assert_that(a, equal_to([b"shared+a"] * 2), label="a")
        assert_that(b, equal_to([b"shared+b"] * 2), label="b")


def test_batched_processing_histogram_equals_one_observe_per_value() -> None:
    times = [0.0, 0.0001, 0.005, 0.25, 0.3, 0.3, 7.5, 100.0]
    batched = KlioMetrics("j", hub=MetricsHub())
    for seconds in times:
        batched.processing_time(seconds)
    batched.flush()
    direct_hub = MetricsHub()
    direct = direct_hub.processing.labels(job="j")
    for seconds in times:
        direct.observe(seconds)

    def samples(hub: MetricsHub) -> list[str]:
        text = generate_latest(hub.registry).decode()
        return [
            line
            for line in text.splitlines()
            if line.startswith("klio_messages_processing_seconds") and "_created" not in line
        ]

    assert samples(batched.hub) == samples(direct_hub)
    assert any('le="0.25"} 4.0' in line for line in samples(batched.hub))


def test_counts_reach_prometheus_at_flush_not_before() -> None:
    metrics = KlioMetrics("j", hub=MetricsHub())
    metrics.received(3)
    assert metrics.hub.value("klio_messages_received_total", job="j") == 0
    metrics.flush()
    assert metrics.hub.value("klio_messages_received_total", job="j") == 3


def test_audit_stamper_appends_what_append_audit_entry_appends_to_the_millisecond() -> None:
    job = JobRef("stamping-job", "proj").to_proto()
    base = kmessage.new_message("e1", b"payload", force=True)
    base.metadata.job_audit_log.add().klio_job.job_name = "earlier"
    stamper = AuditStamper(job)
    # a new millisecond, the same one again (its entry reused), then an earlier one
    for now_ns in (1_700_000_000_123_456_789, 1_700_000_000_123_999_999, 5_000_001):
        by_fields, by_stamper = KlioMessage(), KlioMessage()
        by_fields.CopyFrom(base)
        by_stamper.CopyFrom(base)
        millisecond_ns = now_ns - now_ns % 1_000_000
        append_audit_entry(by_fields, job, millisecond_ns)
        stamper(by_stamper, now_ns)
        assert by_stamper == by_fields
        assert len(by_stamper.metadata.job_audit_log) == 2
        assert by_stamper.metadata.job_audit_log[1].timestamp.ToNanoseconds() == millisecond_ns


def test_short_paths_of_parse_and_new_message_agree_with_the_long_ones() -> None:
    plain = kmessage.new_message("e1")
    spelled = KlioMessage(version=kmessage.V2)
    spelled.data.element = b"e1"
    spelled.metadata.intended_recipients.anyone.SetInParent()
    assert plain == spelled and kmessage.new_message(b"e1") == spelled
    data = kmessage.serialize(spelled)
    assert kmessage.parse(data) == kmessage.upgrade(kmessage.parse_exact(data))
    # a newer producer's field after the message: the short path hands it to the long one,
    # which keeps it, as protobuf does; bytes opening with it are refused on both
    with_unknown = data + b"\x78\x01"  # field 15, varint 1
    assert kmessage.serialize(kmessage.parse(with_unknown)) == with_unknown
    with pytest.raises(kmessage.MessageDecodeError, match="unknown field number at 15"):
        kmessage.parse(b"\x78\x01" + data)


def _long_parse(data: bytes) -> KlioMessage:
    msg = kmessage.upgrade(kmessage.parse_exact(data))
    if not msg.data.element:
        raise kmessage.MessageDecodeError("no data.element")
    return msg


def test_parse_takes_what_the_long_path_takes_and_keeps_the_same_bytes() -> None:
    base = kmessage.new_message("e1", b"p")
    append_audit_entry(base, JobRef("j", "p").to_proto(), 1_700_000_000_123_456_789)
    canonical = kmessage.serialize(base)
    v1 = KlioMessage(version=kmessage.V1)
    v1.data.entity_id = "old"
    data_first = kmessage.serialize(KlioMessage(data=base.data)) + kmessage.serialize(
        KlioMessage(metadata=base.metadata, version=kmessage.V2)
    )  # valid, not canonical: data before metadata
    cases = [
        canonical,
        canonical + b"\x78\x01",  # a newer producer's top-level field, last
        b"\x78\x01" + canonical,  # ... first: not a KlioMessage
        canonical + b"\x12\x05\x7a\x03new",  # a newer producer's field inside data
        data_first,
        kmessage.serialize(v1),
        kmessage.serialize(KlioMessage(version=kmessage.V2)),  # no element
        b"track-1",
        b"",
        canonical[:-3],  # truncated
    ]
    for data in cases:
        try:
            expected = kmessage.serialize(_long_parse(data))
        except kmessage.MessageDecodeError:
            with pytest.raises(kmessage.MessageDecodeError):
                kmessage.parse(data)
            continue
        assert kmessage.serialize(kmessage.parse(data)) == expected, data
