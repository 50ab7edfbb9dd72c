"""The per-message routing decisions, each alone, every v1/v2 case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from klio_runtime.message import KlioJob, KlioMessage, Version, new_message, parse, serialize
from klio_runtime.routing import (
    Decision,
    JobRef,
    bottom_up_request,
    decide,
    is_recipient,
    resume_top_down,
    with_audit_entry,
)

JOB = JobRef("transcode", "proj")
PARENT = JobRef("download", "proj")
OTHER = JobRef("other", "proj")


def v1_message(*downstream: JobRef) -> KlioMessage:
    msg = KlioMessage(version=Version.V1)
    msg.data.entity_id = "track-1"
    msg.metadata.downstream.extend(job.to_proto() for job in downstream)
    return parse(serialize(msg))  # as a job receives it: upgraded


def v2_unset_recipients() -> KlioMessage:
    msg = KlioMessage(version=Version.V2)
    msg.data.element = b"track-1"
    return msg


def recipients_of(msg: KlioMessage) -> list[JobRef]:
    return [JobRef.from_proto(j) for j in msg.metadata.intended_recipients.limited.recipients]


# --- JobRef ---


def test_jobref_round_trips_through_proto_ignoring_deprecated_inputs() -> None:
    proto = JOB.to_proto()
    assert (proto.job_name, proto.gcp_project) == ("transcode", "proj")
    proto.inputs.add(topic="t")
    assert JobRef.from_proto(proto) == JOB


def test_jobref_needs_a_name() -> None:
    with pytest.raises(ValueError, match="job_name"):
        JobRef("")


# --- is_recipient ---


def test_v2_anyone_reaches_every_job() -> None:
    assert is_recipient(new_message("e"), JOB)


def test_v2_limited_reaches_only_listed_jobs() -> None:
    msg = new_message("e", recipients=[JOB])
    assert is_recipient(msg, JOB)
    assert not is_recipient(msg, OTHER)


def test_v2_limited_compares_project_too() -> None:
    msg = new_message("e", recipients=[JobRef("transcode", "other-proj")])
    assert not is_recipient(msg, JOB)
    # Klio joined "project-name" strings, so these two would have collided there.
    tricky = new_message("e", recipients=[JobRef("b-c", "a")])
    assert not is_recipient(tricky, JobRef("c", "a-b"))


def test_v2_without_intended_recipients_is_dropped_like_klio() -> None:
    assert not is_recipient(v2_unset_recipients(), JOB)


def test_v2_empty_limited_list_reaches_nobody() -> None:
    assert not is_recipient(new_message("e", recipients=[]), JOB)


def test_v1_empty_downstream_is_top_down() -> None:
    assert is_recipient(v1_message(), JOB)


def test_v1_downstream_lists_the_job() -> None:
    assert is_recipient(v1_message(OTHER, JOB), JOB)
    assert not is_recipient(v1_message(OTHER), JOB)


def test_untagged_message_with_both_ids_follows_v1_rules() -> None:
    msg = KlioMessage()
    msg.data.entity_id, msg.data.element = "a", b"a"
    msg.metadata.downstream.append(OTHER.to_proto())
    assert msg.version == Version.UNKNOWN
    assert not is_recipient(msg, JOB)


# --- decide ---


def test_decide_processes_when_everything_is_in_place() -> None:
    assert decide(new_message("e"), JOB, outputs_exist=False, inputs_exist=True) == (
        Decision.PROCESS
    )


def test_decide_recipients_come_first() -> None:
    msg = new_message("e", ping=True, recipients=[OTHER])
    assert decide(msg, JOB, outputs_exist=True, inputs_exist=False) == (Decision.DROP_NOT_RECIPIENT)


def test_decide_ping_passes_before_existence_checks() -> None:
    assert decide(new_message("e", ping=True), JOB, outputs_exist=False, inputs_exist=False) == (
        Decision.PASS_PING
    )
    assert decide(new_message("e"), JOB, outputs_exist=None, inputs_exist=None, ping=True) == (
        Decision.PASS_PING
    )


def test_decide_existing_output_passes_unless_forced() -> None:
    msg = new_message("e")
    assert decide(msg, JOB, outputs_exist=True, inputs_exist=True) == (Decision.PASS_OUTPUT_EXISTS)
    forced = new_message("e", force=True)
    assert decide(forced, JOB, outputs_exist=True, inputs_exist=True) == Decision.PROCESS
    assert decide(msg, JOB, outputs_exist=True, inputs_exist=True, force=True) == (Decision.PROCESS)


def test_decide_missing_input_after_output_check() -> None:
    msg = new_message("e")
    assert decide(msg, JOB, outputs_exist=False, inputs_exist=False) == Decision.INPUT_MISSING
    assert decide(msg, JOB, outputs_exist=True, inputs_exist=False) == (Decision.PASS_OUTPUT_EXISTS)
    forced = new_message("e", force=True)
    assert decide(forced, JOB, outputs_exist=True, inputs_exist=False) == (Decision.INPUT_MISSING)


def test_decide_skipped_checks_mean_process() -> None:
    assert decide(new_message("e"), JOB, outputs_exist=None, inputs_exist=None) == (
        Decision.PROCESS
    )


def test_decide_v1_messages() -> None:
    assert decide(v1_message(), JOB, outputs_exist=None, inputs_exist=None) == Decision.PROCESS
    assert decide(v1_message(OTHER), JOB, outputs_exist=None, inputs_exist=None) == (
        Decision.DROP_NOT_RECIPIENT
    )


# --- with_audit_entry ---


def test_audit_entry_is_appended_to_a_copy() -> None:
    msg = new_message("e")
    first = with_audit_entry(msg, PARENT, datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC))
    both = with_audit_entry(
        first, JOB, datetime(2024, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    )
    assert len(msg.metadata.job_audit_log) == 0
    assert len(first.metadata.job_audit_log) == 1
    log = both.metadata.job_audit_log
    assert [JobRef.from_proto(item.klio_job) for item in log] == [PARENT, JOB]
    assert (log[0].timestamp.seconds, log[0].timestamp.nanos) == (1704164645, 600_000_000)
    assert log[1].timestamp.seconds == 1704164645  # 04:04:05+01:00 is 03:04:05Z


def test_audit_entry_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        with_audit_entry(new_message("e"), JOB, datetime(2024, 1, 1))


# --- bottom_up_request ---


def test_top_down_request_lists_job_and_parent_and_triggers_job_children() -> None:
    original = new_message("e", b"p", force=True)
    request = bottom_up_request(original, JOB, PARENT)
    assert recipients_of(request) == [JOB, PARENT]
    limited = request.metadata.intended_recipients.limited
    assert JobRef.from_proto(limited.trigger_children_of) == JOB
    # the payload is the child's input, not the parent's: cleared, as KlioTriggerUpstream does
    assert request.data.payload == b"" and request.metadata.force
    assert original.data.payload == b"p"
    assert request.version == Version.V2
    assert original.metadata.intended_recipients.WhichOneof("recipients") == "anyone"


def test_bottom_up_request_adds_parent_and_keeps_trigger_unset() -> None:
    original = new_message("e", recipients=[JOB])
    request = bottom_up_request(original, JOB, PARENT)
    assert recipients_of(request) == [JOB, PARENT]
    assert not request.metadata.intended_recipients.limited.HasField("trigger_children_of")
    assert recipients_of(original) == [JOB]


def test_bottom_up_request_keeps_an_existing_trigger_and_chains_up() -> None:
    leaf = JobRef("leaf", "proj")
    original = new_message("e", recipients=[leaf, JOB], trigger_children_of=leaf)
    request = bottom_up_request(original, JOB, PARENT)
    assert recipients_of(request) == [leaf, JOB, PARENT]
    trigger = request.metadata.intended_recipients.limited.trigger_children_of
    assert JobRef.from_proto(trigger) == leaf


def test_bottom_up_request_does_not_list_a_parent_twice() -> None:
    original = new_message("e", recipients=[JOB, PARENT])
    assert recipients_of(bottom_up_request(original, JOB, PARENT)) == [JOB, PARENT]


def test_v1_top_down_request_becomes_v2_with_trigger() -> None:
    request = bottom_up_request(v1_message(), JOB, PARENT)
    assert request.version == Version.V2
    assert request.data.element == b"track-1"
    assert recipients_of(request) == [JOB, PARENT]
    trigger = request.metadata.intended_recipients.limited.trigger_children_of
    assert JobRef.from_proto(trigger) == JOB
    assert len(request.metadata.downstream) == 0


def test_v1_bottom_up_request_moves_downstream_into_limited() -> None:
    request = bottom_up_request(v1_message(JOB), JOB, PARENT)
    assert request.version == Version.V2
    assert recipients_of(request) == [JOB, PARENT]
    assert not request.metadata.intended_recipients.limited.HasField("trigger_children_of")
    assert len(request.metadata.downstream) == 0


def test_request_round_trips_and_reaches_the_parent() -> None:
    request = parse(serialize(bottom_up_request(new_message("e"), JOB, PARENT)))
    assert is_recipient(request, PARENT)
    assert not is_recipient(request, OTHER)


# --- resume_top_down ---


def test_trigger_job_turns_recipients_back_to_anyone() -> None:
    msg = new_message("e", recipients=[JOB, PARENT], trigger_children_of=JOB)
    out = resume_top_down(msg, JOB)
    assert out.metadata.intended_recipients.WhichOneof("recipients") == "anyone"
    assert msg.metadata.intended_recipients.WhichOneof("recipients") == "limited"


def test_other_limited_messages_pass_unchanged() -> None:
    with_trigger = new_message("e", recipients=[JOB, PARENT], trigger_children_of=JOB)
    assert resume_top_down(with_trigger, PARENT) == with_trigger
    without_trigger = new_message("e", recipients=[JOB, PARENT])
    assert resume_top_down(without_trigger, JOB) == without_trigger
    trigger_other_project = new_message(
        "e", recipients=[JOB], trigger_children_of=JobRef("transcode", "elsewhere")
    )
    assert resume_top_down(trigger_other_project, JOB) == trigger_other_project


def test_anyone_and_v1_messages_pass_unchanged() -> None:
    anyone = new_message("e", b"p")
    assert resume_top_down(anyone, JOB) == anyone
    v1 = v1_message(JOB)
    out = resume_top_down(v1, JOB)
    assert out == v1
    assert out is not v1


def test_full_bottom_up_cycle_resumes_top_down_after_the_asking_job() -> None:
    # top-down message; JOB misses input → asks PARENT; PARENT runs, publishes;
    # JOB runs (it is listed) and publishes for anyone; its children run again.
    request = bottom_up_request(new_message("e"), JOB, PARENT)
    assert decide(request, OTHER, outputs_exist=None, inputs_exist=None) == (
        Decision.DROP_NOT_RECIPIENT
    )
    from_parent = resume_top_down(request, PARENT)
    assert decide(from_parent, JOB, outputs_exist=False, inputs_exist=True) == Decision.PROCESS
    from_job = resume_top_down(from_parent, JOB)
    assert is_recipient(from_job, OTHER)


def test_routing_accepts_plain_klio_jobs_built_by_hand() -> None:
    msg = new_message("e")
    msg.metadata.intended_recipients.limited.recipients.append(
        KlioJob(job_name="transcode", gcp_project="proj")
    )
    assert is_recipient(msg, JOB)
