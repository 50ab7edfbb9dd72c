"""Behaviour that Klio's own library tests pin down, through Klio's import paths: helpers' shapes
and tolerance, the Beam metrics a pipeline of the user's own gets, the serializer's errors and the
thread limiter's arguments."""

from __future__ import annotations

import logging
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from google.protobuf.message import DecodeError
from klio.message import serializer
from klio.transforms import decorators, helpers
from klio_core.proto import klio_pb2
from klio_runtime.decorators import KlioMessagePayloadException

from tests.runtime.helpers import bound, make_config


def _job(name: str, project: str = "proj") -> klio_pb2.KlioJob:
    return klio_pb2.KlioJob(job_name=name, gcp_project=project)


def test_helpers_take_a_message_without_an_element_as_klio_does() -> None:
    bound(make_config({"data": {"outputs": [{"type": "file", "location": "/nowhere"}]}}))
    empty = klio_pb2.KlioMessage().SerializeToString()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        messages = p | beam.Create([empty])
        _ = messages | helpers.KlioDrop()
        _ = messages | "Debug" >> helpers.KlioDebugMessage()
        pinged = messages | helpers.KlioFilterPing()
        forced = messages | helpers.KlioFilterForce()
        # handed on as read: Klio's serializer calls a message with no element a V1 one
        as_read = klio_pb2.KlioMessage(version=klio_pb2.Version.V1).SerializeToString()
        assert_that(pinged.process, equal_to([as_read]), label="not a ping")
        assert_that(forced.pass_thru, equal_to([as_read]), label="not forced")


def test_check_recipients_tags_process_and_drop_and_turns_a_returned_request_top_down() -> None:
    config = bound(make_config(pipeline_options={"project": "proj", "streaming": False})).config
    me, other = _job(config.job_name), _job("other")
    back = klio_pb2.KlioMessage(version=klio_pb2.Version.V2)
    back.data.element = b"back"
    back.metadata.intended_recipients.limited.recipients.extend([me, other])
    back.metadata.intended_recipients.limited.trigger_children_of.CopyFrom(me)
    not_mine = klio_pb2.KlioMessage(version=klio_pb2.Version.V2)
    not_mine.data.element = b"not-mine"
    not_mine.metadata.intended_recipients.limited.recipients.append(other)

    def recipients(data: bytes) -> tuple[bytes, str | None]:
        msg = klio_pb2.KlioMessage.FromString(data)
        return msg.data.element, msg.metadata.intended_recipients.WhichOneof("recipients")

    with beam.Pipeline(runner=FnApiRunner()) as p:
        checked = (
            p
            | beam.Create([back.SerializeToString(), not_mine.SerializeToString()])
            | helpers.KlioCheckRecipients()
        )
        assert_that(
            checked.process | beam.Map(recipients), equal_to([(b"back", "anyone")]), label="p"
        )
        assert_that(checked.drop, equal_to([not_mine.SerializeToString()]), label="drop")
    counters = {
        (c.key.metric.namespace, c.key.metric.name): c.committed
        for c in p.result.metrics().query()["counters"]
    }
    assert counters == {("KlioCheckRecipients", "kmsg-drop-not-recipient"): 1}


class _AlwaysFails(beam.DoFn):
    @decorators.handle_klio
    @decorators.retry(tries=3)
    def process(self, item: Any) -> Any:
        raise RuntimeError("always")


def test_a_users_own_pipeline_gets_only_klios_counters_received_first() -> None:
    # The run summary's counters (drops by reason) are recorded inside a Klio job's run only.
    bound(make_config({"metrics": {"timer_unit": "ns"}}))
    message = klio_pb2.KlioMessage()
    message.data.element = b"e"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([message.SerializeToString()]) | beam.ParDo(_AlwaysFails())
    counters = [
        (c.key.metric.namespace, c.key.metric.name, c.committed)
        for c in p.result.metrics().query()["counters"]
    ]
    assert counters == [
        ("_AlwaysFails.process", "kmsg-received", 1),
        ("_AlwaysFails.process", "kmsg-retry-attempt", 2),
        ("_AlwaysFails.process", "kmsg-drop-retry-error", 1),
        ("_AlwaysFails.process", "kmsg-drop-error", 1),
    ]


def test_trigger_upstream_request_is_klios_byte_for_byte() -> None:
    from klio_runtime.routing import JobRef, trigger_upstream_request

    msg = klio_pb2.KlioMessage(version=klio_pb2.Version.V2)
    msg.data.element = b"e"
    msg.data.payload = b"what this job made"
    msg.metadata.intended_recipients.anyone.SetInParent()
    expected = klio_pb2.KlioMessage()
    expected.CopyFrom(msg)
    expected.data.payload = b""  # Klio's from_klio_message(kmsg) clears a V2 payload
    limited = expected.metadata.intended_recipients.limited
    limited.recipients.extend([_job("parent", "up"), _job("me")])  # Klio's order
    limited.trigger_children_of.CopyFrom(_job("me"))
    got = trigger_upstream_request(msg, JobRef("me", "proj"), JobRef("parent", "up"))
    assert got.SerializeToString() == expected.SerializeToString()


def test_serializer_raises_protobufs_error_and_logs_as_klio() -> None:
    config = make_config()
    logger = logging.getLogger("klio.test-serializer")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    with pytest.raises(DecodeError):
        serializer.to_klio_message(b"\xff\xfe not protobuf", config, logger)
    assert [r.levelname for r in records] == ["ERROR"]
    assert "allow_non_klio_messages" in records[0].getMessage()
    # what protobuf parses is taken, as Klio's serializer takes it (no element is fine)
    assert serializer.to_klio_message(b"", config, logger).data.element == b""
    v2 = klio_pb2.KlioMessage(version=klio_pb2.Version.V2)
    with pytest.raises(KlioMessagePayloadException, match=r"^Returned payload could not be"):
        serializer.from_klio_message(v2, {"not": "bytes"})
    # a job catching Klio's general message exception catches it
    from klio.message.exceptions import KlioMessageException

    with pytest.raises(KlioMessageException):
        serializer.from_klio_message(v2, {"not": "bytes"})
    # only a V2 message takes a payload: V1 and untagged ones pass on with theirs, whatever it is
    for version in (klio_pb2.Version.V1, klio_pb2.Version.UNKNOWN):
        kept = klio_pb2.KlioMessage(version=version)
        kept.data.payload = b"theirs"
        out = klio_pb2.KlioMessage.FromString(serializer.from_klio_message(kept, {"not": "bytes"}))
        assert out.data.payload == b"theirs"


@pytest.mark.parametrize(
    "arguments",
    [
        {"thread_limiter": "not a limiter"},
        {"max_thread_count": {"a": "dict"}},
        {"max_thread_count": 0},
    ],
)
def test_handle_klio_refuses_bad_thread_arguments_when_decorating(
    arguments: dict[str, Any],
) -> None:
    with pytest.raises(RuntimeError):

        @decorators.handle_klio(**arguments)
        def step(ctx: Any, item: Any) -> Any:
            return item


class _Passes(beam.DoFn):
    @decorators.handle_klio
    def process(self, item: Any) -> Any:
        yield item


def test_a_failed_job_bundle_does_not_leave_the_next_pipeline_batching() -> None:
    from klio_runtime.pipeline import KlioJobTransform

    config = make_config()
    bound(config)
    message = klio_pb2.KlioMessage()
    message.data.element = b"e"
    message.metadata.intended_recipients.anyone.SetInParent()
    message.version = klio_pb2.Version.V2

    def explodes(data: bytes) -> bytes:
        raise ValueError("not caught by any Klio decorator: the bundle fails")

    with (
        pytest.raises(Exception, match="the bundle fails"),  # Beam wraps the ValueError
        beam.Pipeline(runner=FnApiRunner()) as p,
    ):
        _ = (
            p
            | beam.Create([message.SerializeToString()])
            | KlioJobTransform(config, lambda pcoll, _: pcoll | beam.Map(explodes))
        )
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([message.SerializeToString()] * 3) | beam.ParDo(_Passes())
    counters = {
        (c.key.metric.namespace, c.key.metric.name): c.committed
        for c in p.result.metrics().query()["counters"]
    }
    # each element's metrics reached Beam within its bundle (nothing waits for a job's flush)
    assert counters == {
        ("_Passes.process", "kmsg-received"): 3,
        ("_Passes.process", "kmsg-success"): 3,
    }
