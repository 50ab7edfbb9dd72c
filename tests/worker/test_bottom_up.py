"""Parents in the job config, bottom-up requests and the pending-request memory (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from klio_runtime.config import ConfigError, KlioConfig, parse_config
from klio_runtime.message import new_message
from klio_runtime.routing import JobRef
from klio_runtime.worker.bottom_up import (
    Parent,
    PendingRequests,
    describe,
    parents_of,
    requests_for,
)

CHILD = JobRef("child", "proj")


def _config(parents: Any, n_inputs: int = 2) -> KlioConfig:
    return parse_config({"job_name": "child", "job_config": {
        "parents": parents,
        "data": {"inputs": [{"type": "file", "location": f"/d/{i}"} for i in range(n_inputs)]}}})


def test_parents_default_to_their_position_as_data_input() -> None:
    parents = parents_of(_config([
        {"job_name": "p0", "gcp_project": "proj", "topic": "projects/proj/topics/p0-in"},
        {"job_name": "p1", "topic": "p1-in", "data_input": 0},
    ]))
    assert parents == [Parent(JobRef("p0", "proj"), "projects/proj/topics/p0-in", 0),
                       Parent(JobRef("p1", ""), "p1-in", 0)]
    assert parents_of(_config([{**e} for e in describe(parents)])) == parents
    assert parents_of(parse_config({"job_name": "solo"})) == []


def test_bad_parents_are_named_by_field() -> None:
    with pytest.raises(ConfigError) as err:
        parents_of(_config([{"topic": "t-in", "colour": "red"}, "p2",
                            {"job_name": "p", "topic": "x-in", "data_input": 5}]))
    assert err.value.errors == [
        "job_config.parents[0].colour: unknown key",
        "job_config.parents[0].job_name: required (a non-empty string)",
        "job_config.parents[1]: must be a mapping, got str",
        "job_config.parents[2].data_input: must be an index into job_config.data.inputs "
        "(0..1), got 5",
    ]
    with pytest.raises(ConfigError, match=r"job_config\.parents: must be a list"):
        parents_of(_config({"job_name": "p"}))


def test_requests_go_only_to_parents_whose_input_is_missing() -> None:
    p0 = Parent(JobRef("p0", "proj"), "projects/proj/topics/p0-in", 0)
    p1 = Parent(JobRef("p1", "proj"), "projects/proj/topics/p1-in", 1)
    top_down = new_message("e1")
    asked = requests_for(top_down, CHILD, [p0, p1], missing_inputs={1})
    assert [parent for parent, _ in asked] == [p1]
    limited = asked[0][1].metadata.intended_recipients.limited
    assert [j.job_name for j in limited.recipients] == ["child", "p1"]
    assert limited.trigger_children_of.job_name == "child"  # the DAG continues after child
    bottom_up = new_message("e1", recipients=[CHILD])
    (_, request), = requests_for(bottom_up, CHILD, [p0, p1], missing_inputs={0})
    assert not request.metadata.intended_recipients.limited.HasField("trigger_children_of")


def test_pending_requests_suppress_repeats_until_the_ttl() -> None:
    now = [0.0]
    pending = PendingRequests(ttl=60, clock=lambda: now[0])
    msg, parent = new_message("e1"), JobRef("p0")
    assert pending.claim(msg, parent)
    assert not pending.claim(msg, parent)
    assert pending.claim(new_message("e2"), parent)
    assert pending.claim(msg, JobRef("p1"))
    now[0] = 61
    assert pending.claim(msg, parent)
    pending.forget(msg, parent)
    assert pending.claim(msg, parent)


def test_a_request_with_another_audience_is_not_held_back_by_a_pending_one() -> None:
    # A parent's answer reaches only the jobs its request names: a second child's request for
    # the same element, or a top-down one (which continues below the job) after a bottom-up
    # one, must go up too. The same request again is held back.
    pending = PendingRequests(ttl=300, clock=lambda: 0.0)
    middle, parent = JobRef("b", "proj"), Parent(JobRef("a", "proj"), "a-in", 0)
    for_c = new_message("e1", recipients=[JobRef("c", "proj"), middle])
    for_d = new_message("e1", recipients=[JobRef("d", "proj"), middle])
    (_, ask_c), = requests_for(for_c, middle, [parent], missing_inputs={0})
    (_, ask_d), = requests_for(for_d, middle, [parent], missing_inputs={0})
    assert pending.claim(ask_c, parent.job)
    assert pending.claim(ask_d, parent.job)
    (_, again), = requests_for(for_c, middle, [parent], missing_inputs={0})
    assert not pending.claim(again, parent.job)
    # c's own bottom-up request, then a top-down message for the same element at c
    c, b = JobRef("c", "proj"), Parent(middle, "b-in", 0)
    (_, bottom_up), = requests_for(new_message("e2", recipients=[c]), c, [b], {0})
    (_, top_down), = requests_for(new_message("e2"), c, [b], {0})
    assert pending.claim(bottom_up, b.job) and pending.claim(top_down, b.job)
    (_, forced), = requests_for(new_message("e2", force=True), c, [b], {0})
    assert pending.claim(forced, b.job)  # a forced request makes the parent run regardless
    pending.forget(ask_d, parent.job)
    assert pending.claim(ask_d, parent.job)


def test_a_settled_element_may_ask_again_before_the_ttl() -> None:
    pending = PendingRequests(ttl=300, clock=lambda: 0.0)
    msg, other = new_message("e1"), new_message("e2")
    assert pending.claim(msg, JobRef("p0")) and pending.claim(msg, JobRef("p1"))
    assert pending.claim(other, JobRef("p0"))
    assert len(pending) == 3
    pending.settle(["e1"])  # the job ran for e1: its parents answered
    assert len(pending) == 1
    assert pending.claim(msg, JobRef("p0")) and pending.claim(msg, JobRef("p1"))
    assert not pending.claim(other, JobRef("p0"))  # e2 is still pending


def test_pending_requests_stay_bounded() -> None:
    now = [0.0]
    pending = PendingRequests(ttl=60, max_entries=3, clock=lambda: now[0])
    for i in range(10):
        assert pending.claim(new_message(f"e{i}"), JobRef("p"))
    assert len(pending) == 3
    with pytest.raises(ValueError, match="ttl must be > 0"):
        PendingRequests(ttl=0)
