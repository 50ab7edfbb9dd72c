"""The operator ↔ worker contract for bottom-up: `job_config.parents` as the worker parses it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from klio_operator import worker_contract
from klio_operator.handlers import JobSummary, parent_info
from klio_operator.models import DataOutput, KlioJobSpec
from klio_operator.planning import ClusterFacts, Owner, ParentInfo, Plan, plan_job
from klio_runtime.config import KlioConfig, parse_config
from klio_runtime.worker.bottom_up import Parent, parents_of

OWNER = Owner("child", "team", "uid-1")


def spec(**fields: Any) -> KlioJobSpec:
    return KlioJobSpec.model_validate({"image": "reg.example/job:1", **fields})


def rendered_config(plan: Plan) -> KlioConfig:
    config_map = next(c for c in plan.children if c["kind"] == "ConfigMap")
    return parse_config(yaml.safe_load(config_map["data"][worker_contract.CONFIG_FILE]))


def worker_parents(plan: Plan) -> list[tuple[str, str, str, int]]:
    parsed: list[Parent] = parents_of(rendered_config(plan))
    return [(p.job.job_name, p.job.gcp_project, p.topic, p.data_input) for p in parsed]


def test_each_parent_points_at_the_topic_it_reads_and_the_input_it_writes() -> None:
    parents = [
        # a root parent: it reads its event-input topic
        ParentInfo("a", "proj-a", (DataOutput(location="gs://b/a"),), "projects/x/topics/in"),
        # a parent without data outputs produces no input: it cannot be asked
        ParentInfo("n", "klio-local", (), "projects/x/topics/n-in"),
        # a non-root parent: it reads its first parent's output topic
        ParentInfo(
            "b",
            "klio-local",
            (DataOutput(location="/data/b"),),
            "projects/p/topics/klio.team.g.output",
        ),
    ]
    plan = plan_job(OWNER, spec(parents=["a", "n", "b"]), parents)
    assert worker_parents(plan) == [
        ("a", "proj-a", "projects/x/topics/in", 0),
        ("b", "klio-local", "projects/p/topics/klio.team.g.output", 1),
    ]
    inputs = [i.location for i in rendered_config(plan).job_config.data.inputs]
    assert inputs == ["gs://b/a", "/data/b"]


def test_explicit_data_inputs_are_matched_by_location_else_by_position() -> None:
    parents = [
        ParentInfo("a", "p", (DataOutput(location="gs://b/a"),), "projects/p/topics/a-in"),
        ParentInfo("b", "p", (DataOutput(location="gs://b/b"),), "projects/p/topics/b-in"),
    ]
    job = spec(
        parents=["a", "b"],
        dataInputs=[{"location": "gs://b/b"}, {"location": "gs://elsewhere/a-copy"}],
    )
    plan = plan_job(OWNER, job, parents)
    assert [(name, index) for name, _, _, index in worker_parents(plan)] == [("a", 1), ("b", 0)]


def test_a_parent_reading_no_known_topic_is_left_out_and_roots_have_no_key() -> None:
    parents = [ParentInfo("a", "p", (DataOutput(location="gs://b/a"),), None)]
    plan = plan_job(OWNER, spec(parents=["a"]), parents)
    assert worker_parents(plan) == []
    root = plan_job(OWNER, spec(eventInputs=[{"type": "pubsub", "topic": "projects/p/topics/t"}]))
    assert worker_contract.PARENTS_KEY not in (rendered_config(root).job_config.model_extra or {})


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (
            JobSummary("a", (), "pa", (), ("projects/pa/topics/in", "projects/pa/topics/in2")),
            "projects/pa/topics/in",
        ),
        (JobSummary("a", ("g", "h"), "pa", (), ()), "projects/pg/topics/klio.team.g.output"),
        (
            JobSummary("a", ("missing",), "pa", (), ()),
            "projects/klio-local/topics/klio.team.missing.output",
        ),
        (JobSummary("a", (), "pa", (), ()), None),
    ],
)
def test_parent_info_knows_what_the_parent_reads(summary: JobSummary, expected: str | None) -> None:
    jobs = {"g": JobSummary("g", (), "pg", (), ()), "a": summary}
    assert parent_info("team", summary, jobs, ClusterFacts()).input_topic == expected
