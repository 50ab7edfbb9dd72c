"""Parents, cycles and Pub/Sub names."""

from __future__ import annotations

from klio_operator.dag import (
    dead_letter_subscription,
    find_cycle,
    format_cycle,
    input_subscription,
    is_input_subscription,
    output_topic,
    parent_subscription,
    resolve_parents,
)


def test_cycle_is_named_in_data_flow_order_starting_at_the_job() -> None:
    parents = {"a": ["c"], "b": ["a"], "c": ["b"]}  # a feeds b, b feeds c, c feeds a
    assert format_cycle(find_cycle("a", parents) or []) == "a → b → c → a"
    assert format_cycle(find_cycle("b", parents) or []) == "b → c → a → b"


def test_cycle_upstream_of_a_job_is_found() -> None:
    parents = {"x": ["a"], "a": ["b"], "b": ["a"]}
    assert find_cycle("x", parents) == ["a", "b", "a"]


def test_self_parent_and_acyclic_graphs() -> None:
    assert find_cycle("a", {"a": ["a"]}) == ["a", "a"]
    assert find_cycle("c", {"c": ["a", "b"], "b": ["a"], "a": []}) is None


def test_resolution_reports_found_missing_and_cycle() -> None:
    known = {"a": [], "b": ["a"]}
    result = resolve_parents("c", ["a", "b", "zz"], known)
    assert (result.found, result.missing, result.cycle) == (("a", "b"), ("zz",), None)
    assert not result.resolved
    assert resolve_parents("c", ["a"], known).resolved
    cyclic = resolve_parents("a", ["b"], known)
    assert cyclic.cycle == ("a", "b", "a")


def test_names_are_valid_pubsub_ids_per_namespace() -> None:
    assert output_topic("p", "ns", "job") == "projects/p/topics/klio.ns.job.output"
    assert parent_subscription("p", "ns", "c", "a") == "projects/p/subscriptions/klio.ns.c.from.a"
    assert output_topic("p", "one", "job") != output_topic("p", "two", "job")


def test_a_jobs_input_subscriptions_are_told_by_name_under_either_naming() -> None:
    today = input_subscription("p", "team", "j", "projects/p/topics/uploads")
    before = "projects/p/subscriptions/klio.team.j.input-0"  # by place, as first named
    assert is_input_subscription("team", "j", today)
    assert is_input_subscription("team", "j", before)
    for other in (
        parent_subscription("p", "team", "j", "parent"),
        dead_letter_subscription("p", "team", "j"),
        input_subscription("p", "team", "jx", "projects/p/topics/uploads"),  # another job
        input_subscription("p", "other", "j", "projects/p/topics/uploads"),  # another namespace
    ):
        assert not is_input_subscription("team", "j", other), other
