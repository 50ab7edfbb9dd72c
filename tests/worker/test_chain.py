"""Three ``klio worker`` processes chained on the real Pub/Sub emulator: a → b → c.

``a`` reads the root topic and writes ``data/a/<id>``; ``b`` needs ``data/a`` and writes
``data/b``; ``c`` needs ``data/b`` and writes ``data/c``. Each job's ``job_config.parents`` names
its parent and the topic that parent reads, so a missing input asks upstream (bottom-up).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from klio_runtime.cli import main
from klio_runtime.message import new_message, parse, serialize
from klio_runtime.routing import JobRef

from tests.worker.helpers import (
    PROJECT,
    PubSub,
    WorkerProcess,
    audit_jobs,
    lines,
    unique,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


@dataclass
class Chain:
    pubsub: PubSub
    root: str  # a's input topic
    topics: dict[str, str]  # job → its output topic
    out: str  # a subscription on c's output
    configs: dict[str, Path]
    workers: dict[str, WorkerProcess]
    tmp: Path
    names: dict[str, str]  # a/b/c → job name

    def data(self, job: str, element: str) -> Path:
        return self.tmp / "data" / job / element

    def processed(self, job: str) -> list[str]:
        return lines(self.tmp / f"{self.names[job]}.processed.log")

    def setups(self, job: str) -> list[str]:
        return lines(self.tmp / f"{self.names[job]}.setup.log")


@pytest.fixture(scope="module")
def chain(pubsub_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("chain")
    pubsub = PubSub()
    run = unique("run")
    names = {job: f"{job}-{run}" for job in "abc"}
    root = pubsub.topic(f"{run}-root")
    topics = {job: pubsub.topic(f"{run}-{job}-out") for job in "abc"}
    inputs = {"a": root, "b": topics["a"], "c": topics["b"]}
    subs = {job: pubsub.subscribe(inputs[job], f"{run}-{job}-in") for job in "abc"}
    out = pubsub.subscribe(topics["c"], f"{run}-test-out")
    parent = {"b": "a", "c": "b"}
    configs = {}
    for job in "abc":
        job_config = {"data": {"outputs": [{"type": "file",
                                            "location": str(tmp / "data" / job)}]}}
        if job in parent:
            up = parent[job]
            job_config["data"]["inputs"] = [{"type": "file", "location": str(tmp / "data" / up)}]
            job_config["parents"] = [{"job_name": names[up], "gcp_project": PROJECT,
                                      "topic": inputs[up]}]
        configs[job] = write_config(tmp, names[job], subs[job], topics[job], job_config)
    workers = {job: WorkerProcess(configs[job]) for job in "abc"}
    try:
        for worker in workers.values():
            worker.wait_ready()
        yield Chain(pubsub, root, topics, out, configs, workers, tmp, names)
    finally:
        for worker in workers.values():
            worker.stop()
        pubsub.cleanup()


def test_top_down_runs_every_job_and_keeps_attributes(chain: Chain) -> None:
    elements = [unique("td") for _ in range(5)]
    chain.pubsub.publish(chain.root, [serialize(new_message(e)) for e in elements],
                         origin="test")
    got = chain.pubsub.collect(chain.out, len(elements), timeout=60)
    assert sorted(got) == sorted(elements)
    for element, message in got.items():
        assert audit_jobs(parse(message.data)) == [chain.names[j] for j in "abc"]
        assert message.attributes["origin"] == "test"
        assert chain.data("c", element).read_text() == chain.names["c"]


def test_setup_runs_once_per_worker_across_batches(chain: Chain) -> None:
    for round_ in range(3):
        elements = [unique(f"s{round_}") for _ in range(3)]
        chain.pubsub.publish(chain.root, [serialize(new_message(e)) for e in elements])
        chain.pubsub.collect(chain.out, len(elements), timeout=60)
    for job in "abc":
        assert len(chain.setups(job)) == 1, (job, chain.setups(job))
        status, metrics = chain.workers[job].get("/metrics")
        assert status == 200
        batches = [line for line in metrics.splitlines()
                   if line.startswith("klio_worker_batches_total{")]
        assert batches and float(batches[0].split()[-1]) >= 3


def test_bottom_up_asks_each_missing_parent_once_then_runs(chain: Chain) -> None:
    element = unique("bu")
    # A burst of three identical bottom-up requests for c, as `klio message publish` sends.
    result = CliRunner().invoke(main, [
        "message", "publish", element, element, element, "--bottom-up",
        "--config-file", str(chain.configs["c"]), "--topic", chain.topics["b"]])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 3

    wait_for(lambda: chain.data("c", element).exists(), 60, f"c's output for {element}")
    assert chain.data("a", element).exists() and chain.data("b", element).exists()
    # Each job ran once: the pending request stopped the burst from asking twice.
    assert chain.processed("a").count(element) == 1
    assert chain.processed("b").count(element) == 1
    wait_for(lambda: chain.processed("c").count(element) == 1, 10, "c's run")
    # Bottom-up without trigger_children_of: c's output still names only the requested chain.
    got = chain.pubsub.collect(chain.out, 1, timeout=30,
                               key=lambda m: parse(m.data).data.element.decode())
    message = parse(got[element].data)
    limited = message.metadata.intended_recipients.limited
    assert {j.job_name for j in limited.recipients} == {chain.names[j] for j in "abc"}
    # The audit log keeps the whole trail: c asked b, b asked a, then a, b and c ran.
    assert audit_jobs(message) == [chain.names[j] for j in "cbabc"]
    # c's own metrics count exactly one request to b (the repeats were suppressed).
    _, metrics = chain.workers["c"].get("/metrics")
    labels = f'job="{chain.names["c"]}",parent="{chain.names["b"]}"'
    sent = f"klio_worker_bottom_up_requests_total{{{labels}}} 1.0"
    assert sent in metrics.splitlines(), metrics


def test_top_down_after_bottom_up_input_missing_continues_downward(chain: Chain) -> None:
    """A top-down message to b whose input is missing: b asks a, then the DAG continues to c."""
    element = unique("tdm")
    chain.pubsub.publish(chain.topics["a"], [serialize(new_message(element))])
    got = chain.pubsub.collect(chain.out, 1, timeout=60)
    assert element in got
    message = parse(got[element].data)
    assert message.metadata.intended_recipients.WhichOneof("recipients") == "anyone"
    assert chain.processed("a").count(element) == 1
    assert JobRef(chain.names["c"], PROJECT).job_name in audit_jobs(message)


def test_two_childrens_requests_for_one_element_are_both_answered(chain: Chain) -> None:
    """b's children c and d each ask b for an element whose input (a's output) is missing: b
    asks a for each, since a's answer reaches only the jobs a request names."""
    element = unique("two")
    b = JobRef(chain.names["b"], PROJECT)
    d = JobRef(f"d-{chain.names['c']}", PROJECT)  # a sibling of c: no worker needed
    watch = chain.pubsub.subscribe(chain.topics["b"], unique("b-out"))
    requests = [new_message(element, recipients=[JobRef(chain.names["c"], PROJECT), b]),
                new_message(element, recipients=[d, b])]
    chain.pubsub.publish(chain.topics["a"], [serialize(r) for r in requests])

    heard: set[str] = set()

    def both_answered() -> bool:
        for message in chain.pubsub.drain(watch):
            msg = parse(message.data)
            if msg.data.element.decode() == element:
                limited = msg.metadata.intended_recipients.limited
                heard.update(job.job_name for job in limited.recipients)
        return {chain.names["c"], d.job_name} <= heard

    wait_for(both_answered, 60, "b's answers to c and to d")
    assert chain.processed("a").count(element) == 1  # the second request found a's output
    assert chain.processed("b").count(element) == 1
