"""The micro-batch executor on the warm FnApiRunner, without Pub/Sub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from klio_runtime.config import KlioConfig, parse_config
from klio_runtime.decorators import handle_klio
from klio_runtime.message import new_message, parse, serialize
from klio_runtime.worker.executor import BatchExecutor

from tests.worker.helpers import lines, unique


class Traced(beam.DoFn):
    """Writes a line per setup / teardown to ``log`` (DoFns are pickled: a file is honest)."""

    def __init__(self, log: str) -> None:
        self.log = log

    def _note(self, what: str) -> None:
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(what + "\n")

    def setup(self) -> None:
        self._note("setup")

    def start_bundle(self) -> None:
        self._note("start_bundle")

    def teardown(self) -> None:
        self._note("teardown")

    @handle_klio
    def process(self, item: Any) -> Any:
        yield item


def _config(**job_config: Any) -> KlioConfig:
    return parse_config({
        "job_name": unique("ex"), "pipeline_options": {"project": "klio-local"},
        "job_config": {"events": {"inputs": [
            {"type": "pubsub", "subscription": "projects/klio-local/subscriptions/in-sub"}]},
            **job_config}})


def test_setup_once_bundles_per_batch_teardown_on_close(tmp_path: Path) -> None:
    log = str(tmp_path / "trace.log")

    def run(pcoll: Any, config: KlioConfig) -> Any:
        # A GroupByKey inside run groups within one batch.
        return (pcoll | beam.ParDo(Traced(log))
                | beam.Map(lambda data: (parse(data).data.element[:1], data))
                | beam.GroupByKey() | beam.FlatMap(lambda kv: kv[1]))

    executor = BatchExecutor(_config(), run, ["pubsub0"])
    for batch in range(4):
        elements = [f"{batch}-{i}" for i in range(25)]
        result = executor.run({"pubsub0": [serialize(new_message(e)) for e in elements]})
        assert sorted(parse(d).data.element.decode() for d in result.output) == sorted(elements)
    trace = lines(Path(log))
    assert trace.count("setup") == 1
    assert trace.count("start_bundle") == 4
    assert "teardown" not in trace
    executor.close()
    assert lines(Path(log)).count("teardown") == 1
    with pytest.raises(RuntimeError, match="after close"):
        executor.run({"pubsub0": []})


def test_each_outcome_has_its_list() -> None:
    config = _config()
    executor = BatchExecutor(config, lambda pcoll, _: pcoll, ["pubsub0"])
    try:
        other = new_message("not-mine", recipients=[])
        result = executor.run({"pubsub0": [serialize(new_message("ok")), b"\x00garbage",
                                           serialize(other)]})
    finally:
        executor.close()
    assert [parse(d).data.element for d in result.output] == [b"ok"]
    assert [(d.element, d.reason) for d in result.dropped] == [("not-mine", "not_recipient")]
    assert [d.reason for d in result.dead_letter] == ["decode_error"]
    assert result.input_missing == []


def test_input_missing_is_reported(tmp_path: Path) -> None:
    config = _config(data={"inputs": [{"type": "file", "location": str(tmp_path / "none")}]})
    executor = BatchExecutor(config, lambda pcoll, _: pcoll, ["pubsub0"])
    try:
        result = executor.run({"pubsub0": [serialize(new_message("absent"))]})
    finally:
        executor.close()
    assert [parse(d).data.element for d in result.input_missing] == [b"absent"]
    assert result.output == []


def test_unknown_input_name_is_refused() -> None:
    executor = BatchExecutor(_config(), lambda pcoll, _: pcoll, ["pubsub0"])
    try:
        with pytest.raises(ValueError, match=r"unknown inputs \['pubsub7'\]"):
            executor.run({"pubsub7": []})
    finally:
        executor.close()


def test_what_klio_trigger_upstream_publishes_comes_back_with_the_batch(tmp_path: Path) -> None:
    # Klio's documented manual bottom-up: the job checks its input itself and triggers the parent
    # for what is missing; the worker publishes those requests before it acknowledges the batch.
    from klio_runtime.transforms.helpers import KlioGcsCheckInputExists, KlioTriggerUpstream

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "here.ogg").write_bytes(b"x")
    config = _config(data={"inputs": [{
        "type": "file", "location": str(tmp_path / "in"), "file_suffix": ".ogg",
        "skip_klio_existence_check": True}]})
    upstream = "projects/klio-local/topics/parent-input"

    def run(pcoll: Any, config: KlioConfig) -> Any:
        checked = pcoll | KlioGcsCheckInputExists()
        _ = checked.not_found | KlioTriggerUpstream("parent", upstream)
        return checked.found

    executor = BatchExecutor(config, run, ["pubsub0"])
    try:
        batch = [serialize(new_message(e)) for e in ("here", "absent")]
        result = executor.run({"pubsub0": batch})
        again = executor.run({"pubsub0": batch[1:]})
    finally:
        executor.close()
    assert [parse(d).data.element for d in result.output] == [b"here"]
    ((topic, data),) = result.side_publishes
    request = parse(data)
    assert topic == upstream and request.data.element == b"absent"
    limited = request.metadata.intended_recipients.limited
    assert {j.job_name for j in limited.recipients} == {"parent", config.job_name}
    assert limited.trigger_children_of.job_name == config.job_name
    assert [t for t, _ in again.side_publishes] == [upstream]  # each batch its own
