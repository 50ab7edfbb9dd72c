"""KlioJobTransform on Beam's FnApiRunner: the per-message flow, decision by decision."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from klio_runtime.decorators import handle_klio
from klio_runtime.message import V1, V2, KlioMessage, element_id, new_message, parse, serialize
from klio_runtime.metrics import KlioMetrics, process_hub
from klio_runtime.pipeline import KlioJobTransform
from klio_runtime.routing import JobRef
from klio_runtime.transforms.route import Dropped, KlioRoute

from tests.runtime.helpers import make_config, msg_bytes


@handle_klio
def _mark(ctx: Any, item: Any) -> bytes:
    return b"ran:" + item.element


def _run_fn(pcoll: Any, config: Any) -> Any:
    return pcoll | "Mark" >> beam.Map(_mark)


def _elements_and_payloads(data: bytes) -> tuple[str, bytes]:
    msg = parse(data)
    return element_id(msg), msg.data.payload


def _data_config(tmp_path: Path, **output: Any) -> dict[str, Any]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return {
        "data": {
            "inputs": [{"type": "file", "location": str(tmp_path / "in"), "file_suffix": ".txt"}],
            "outputs": [
                {"type": "file", "location": str(tmp_path / "out"), "file_suffix": ".txt", **output}
            ],
        }
    }


@handle_klio
def _log_received(ctx: Any, item: Any) -> Any:
    ctx.logger.info("Received element %s", item.element)
    return item


def test_checks_log_in_klios_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Klio's batch-modular-default expects every output check first, then each message's input
    # check followed by what run logs for it
    config = make_config(_data_config(tmp_path))
    for name in ("a", "b", "c"):
        (tmp_path / "in" / f"{name}.txt").write_text(name)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (
            p
            | beam.Create([msg_bytes(n) for n in "abc"], reshuffle=False)
            | KlioJobTransform(config, lambda pcoll, _: pcoll | beam.Map(_log_received))
        )
    shown = [r.getMessage() for r in caplog.records if r.name == "klio"]
    out_dir, in_dir = tmp_path / "out", tmp_path / "in"
    assert shown == [f"Output not found at {out_dir}/{n}.txt" for n in "abc"] + [
        line
        for n in "abc"
        for line in (f"Input found at {in_dir}/{n}.txt", f"Received element b'{n}'")
    ]


def test_flow_process_skip_force_ping_missing_and_recipients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(_data_config(tmp_path))
    for name in ("todo", "done", "forced", "pinged"):
        (tmp_path / "in" / f"{name}.txt").write_text(name)
    for name in ("done", "forced"):
        (tmp_path / "out" / f"{name}.txt").write_text(name)
    other = JobRef("some-other-job")
    inputs = [
        msg_bytes("todo"),
        msg_bytes("done"),
        msg_bytes("forced", force=True),
        msg_bytes("pinged", ping=True),
        msg_bytes("missing"),
        serialize(new_message("not-mine", recipients=[other])),
        b"\x08\x07\x12garbage that is no message",
    ]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(inputs) | KlioJobTransform(config, _run_fn, batch_size=2)
        assert_that(
            out["output"] | beam.Map(_elements_and_payloads),
            equal_to(
                [
                    ("todo", b"ran:todo"),
                    ("forced", b"ran:forced"),
                    ("done", b""),
                    ("pinged", b""),
                ]
            ),
            label="output",
        )
        assert_that(
            out["dropped"],
            equal_to(
                [
                    Dropped("missing", "input_missing"),
                    Dropped("not-mine", "not_recipient"),
                ]
            ),
            label="dropped",
        )
        assert_that(
            out["input_missing"] | beam.Map(lambda b: element_id(parse(b))),
            equal_to(["missing"]),
            label="missing",
        )
        assert_that(
            out["dead_letter"] | beam.Map(lambda d: d.reason),
            equal_to(["decode_error"]),
            label="dead",
        )
    # Klio's lines for each built-in step, word for word
    shown = [r.getMessage() for r in caplog.records if r.name == "klio"]
    inp, out_dir = tmp_path / "in", tmp_path / "out"
    for line in (
        f"Output not found at {out_dir}/todo.txt",
        f"Input found at {inp}/todo.txt",
        f"Output found at {out_dir}/done.txt",
        f"Pass through 'done': Force mode OFF with output found at '{out_dir}/done.txt'.",
        f"Output found at {out_dir}/forced.txt",
        f"Process 'forced': Force mode ON with output found at '{out_dir}/forced.txt'.",
        f"Input found at {inp}/forced.txt",
        "Pass through 'pinged': Ping mode ON.",
        f"Input not found at {inp}/missing.txt",
        "Dropping KlioMessage - can not process 'b'missing'' any further.",
        "Dropping KlioMessage - can not process 'b'not-mine'' any further.",
        "Can not parse incoming message. To support non-Klio messages, add "
        "`job_config.allow_non_klio_messages = true` in the job's `klio-job.yaml` file.",
    ):
        assert line in shown, line
    assert f"Input found at {inp}/done.txt" not in shown  # passed through before that check
    # Klio's default counters of its built-in steps, under the helper that counts each
    counters = {
        (c.key.metric.namespace, c.key.metric.name): c.committed
        for c in p.result.metrics().query()["counters"]
        if c.key.metric.name.startswith("kmsg-") and c.key.metric.namespace.startswith("Klio")
    }
    assert counters == {
        ("KlioCheckRecipients", "kmsg-drop-not-recipient"): 1,  # not-mine
        ("KlioFilterPing", "kmsg-process-ping"): 4,  # todo, done, forced, missing
        ("KlioFilterPing", "kmsg-skip-ping"): 1,  # pinged
        ("KlioGcsCheckOutputExists", "kmsg-data-found-output"): 2,  # done, forced
        ("KlioGcsCheckOutputExists", "kmsg-data-not-found-output"): 2,  # todo, missing
        ("KlioFilterForce", "kmsg-process-force"): 1,  # forced
        ("KlioFilterForce", "kmsg-skip-force"): 1,  # done
        ("KlioGcsCheckInputExists", "kmsg-data-found-input"): 2,  # todo, forced
        ("KlioGcsCheckInputExists", "kmsg-data-not-found-input"): 1,  # missing
        ("KlioDrop", "kmsg-drop"): 2,  # missing, not-mine
    }


def test_audit_log_gets_this_job(tmp_path: Path) -> None:
    config = make_config()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([msg_bytes("a")]) | KlioJobTransform(config, _run_fn)
        assert_that(
            out["output"]
            | beam.Map(lambda b: [e.klio_job.job_name for e in parse(b).metadata.job_audit_log]),
            equal_to([[config.job_name]]),
        )


def test_several_event_inputs_reach_run_as_named_tuple() -> None:
    config = make_config(
        {
            "events": {
                "inputs": [
                    {"type": "file", "location": "a.txt"},
                    {"type": "file", "location": "b.txt"},
                ]
            }
        }
    )
    seen: list[tuple[str, ...]] = []

    def run(inputs: Any, cfg: Any) -> Any:
        seen.append(inputs._fields)
        return (inputs.file0, inputs.file1) | beam.Flatten() | beam.Map(_mark)

    with beam.Pipeline(runner=FnApiRunner()) as p:
        a = p | "A" >> beam.Create([msg_bytes("a")])
        b = p | "B" >> beam.Create([msg_bytes("b")])
        out = {"file0": a, "file1": b} | KlioJobTransform(config, run)
        assert_that(
            out["output"] | beam.Map(_elements_and_payloads),
            equal_to([("a", b"ran:a"), ("b", b"ran:b")]),
        )
    assert seen == [("file0", "file1")]


def test_skip_existence_check_runs_everything(tmp_path: Path) -> None:
    cfg = _data_config(tmp_path)
    cfg["data"]["outputs"][0]["skip_klio_existence_check"] = True
    cfg["data"]["inputs"][0]["skip_klio_existence_check"] = True
    config = make_config(cfg)
    (tmp_path / "out" / "x.txt").write_text("exists")
    # Klio's custom_proto_def FAQ: with the checks off, the element may be any bytes (a
    # serialized proto of the job's own); it never becomes a path here
    custom = KlioMessage(version=V2)
    custom.metadata.intended_recipients.anyone.SetInParent()
    custom.data.element = b"\n\x05hello"
    messages = [msg_bytes("x"), msg_bytes("y"), serialize(custom)]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(messages) | KlioJobTransform(config, _run_fn)
        assert_that(
            out["output"] | beam.Map(lambda b: parse(b).data.payload),
            equal_to([b"ran:x", b"ran:y", b"ran:\n\x05hello"]),
        )


def test_non_klio_bytes_are_wrapped_when_allowed() -> None:
    config = make_config({"allow_non_klio_messages": True})
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([b"\xff\x00raw"]) | KlioJobTransform(config, _run_fn)
        assert_that(
            out["output"] | beam.Map(lambda b: parse(b).data.element), equal_to([b"\xff\x00raw"])
        )


def test_a_refused_id_cannot_forge_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # refused for its newline before it names a data path, and shown escaped: not as a second
    # line of the log's own
    forged = "evil\n2026-01-01 00:00:00,000 INFO klio [admin] all elements processed OK"
    with caplog.at_level(logging.WARNING, logger="klio"), beam.Pipeline(
        runner=FnApiRunner()
    ) as p:
        config = make_config(_data_config(tmp_path))
        out = p | beam.Create([msg_bytes(forged)]) | KlioJobTransform(config, _run_fn)
        assert_that(out["dead_letter"] | beam.Map(lambda d: d.reason),
                    equal_to(["invalid_element_id"]))
    (line,) = [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()]
    assert "\n" not in line and "evil\\n2026" in line


def test_run_output_that_is_not_a_message_is_dead_lettered_when_klio_writes_it() -> None:
    def run(pcoll: Any, cfg: Any) -> Any:
        return pcoll | beam.Map(lambda b: "not bytes")

    written = {"outputs": [{"type": "file", "location": "/never/written"}]}
    for outputs, dead in (
        (written, ["bad_output"]),
        # as Klio, what run returns is the job's own when no event output is written by Klio
        ({}, []),
        ({"outputs": [{**written["outputs"][0], "skip_klio_write": True}]}, []),
    ):
        config = make_config({"events": outputs} if outputs else None)
        with beam.Pipeline(runner=FnApiRunner()) as p:
            out = p | beam.Create([msg_bytes("a")]) | KlioJobTransform(config, run)
            reasons = out["dead_letter"] | beam.Map(lambda d: d.reason)
            assert_that(reasons, equal_to(dead))
            assert_that(out["output"], equal_to([]), label="none")


def test_skip_klio_read_gives_run_the_pipeline_and_skip_write_writes_nothing(
    tmp_path: Path,
) -> None:
    from klio_runtime.pipeline import build_pipeline

    out_prefix = tmp_path / "events"
    config = make_config(
        {
            "events": {
                "inputs": [
                    {"type": "file", "location": str(tmp_path / "none.txt"), "skip_klio_read": True}
                ],
                "outputs": [{"type": "file", "location": str(out_prefix), "skip_klio_write": True}],
            }
        }
    )
    seen: list[Any] = []

    def run(pipeline: Any, cfg: Any) -> Any:
        seen.append(pipeline)
        return pipeline | beam.Create([msg_bytes("own-read")]) | beam.Map(_mark)

    from klio_runtime.runner import beam_options

    build_pipeline(config, run, beam_options(config)).run().wait_until_finish()
    assert isinstance(seen[0], beam.Pipeline)
    assert not list(tmp_path.glob("events*"))
    # no router read it, yet what run's step counted was handed on at the bundle's end
    prefix = KlioMetrics.from_settings(config.job_name, None).prefix
    assert process_hub().value(f"{prefix}_kmsg_success_total", transform="_mark") == 1


def test_a_newer_producers_fields_reach_the_children() -> None:
    # Klio's messages keep fields their schema does not know (protobuf keeps them): a job
    # between a newer parent and a newer child must not strip them
    config = make_config()
    newer = serialize(new_message("e1")) + b"\x12\x05\x7a\x03new"  # data.15 = "new"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([newer]) | KlioJobTransform(config, _run_fn)
        assert_that(out["output"] | beam.Map(lambda b: b"z\x03new" in b), equal_to([True]))


def test_bigquery_event_io_runs_only_when_the_job_does_it_itself() -> None:
    # Klio's read-bq-write-bq shape: loaded, but this runtime reads and writes no BigQuery
    from klio_runtime.config import ConfigError
    from klio_runtime.pipeline import build_pipeline
    from klio_runtime.runner import beam_options

    table = {"type": "bq", "project": "p", "dataset": "d", "table": "t"}
    config = make_config({"events": {"inputs": [table], "outputs": [table]}})
    with pytest.raises(ConfigError, match=r"^job_config.events.inputs\[0\]: Klio's bq event IO"):
        build_pipeline(config, _run_fn, beam_options(config))
    config.job_config.events.inputs[0].skip_klio_read = True  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"outputs\[0\]: .* set skip_klio_write: true"):
        build_pipeline(config, lambda p, c: p | beam.Create([msg_bytes("a")]), beam_options(config))
    config.job_config.events.outputs[0].skip_klio_write = True
    seen: list[Any] = []

    def run(pipeline: Any, cfg: Any) -> Any:  # reads its rows itself, as a Klio job may
        seen.append(pipeline)
        return pipeline | beam.Create([msg_bytes("row-1")]) | beam.Map(_mark)

    build_pipeline(config, run, beam_options(config)).run().wait_until_finish()
    assert isinstance(seen[0], beam.Pipeline)


def test_job_without_data_io_passes_pings_through_run_untouched() -> None:
    # As in Klio, a job with no data input has no ping filter: the ping goes to run, whose
    # handle_klio steps pass it on without calling the job's function (Klio's docs: a ping does
    # no transformation work; Klio's own decorator would call it).
    config = make_config()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        inputs = [msg_bytes("pinged", b"as sent", ping=True), msg_bytes("worked")]
        out = p | beam.Create(inputs) | KlioJobTransform(config, _run_fn)
        assert_that(
            out["output"] | beam.Map(_elements_and_payloads),
            equal_to([("pinged", b"as sent"), ("worked", b"ran:worked")]),
        )
    labels = {t.full_label for t in p.transforms_stack[0].parts}
    assert not any("Merge run and pass-thru" in label for label in labels)
    counters = {
        c.key.metric.name: c.committed
        for c in p.result.metrics().query()["counters"]
        if c.key.metric.namespace == config.job_name
    }
    assert counters["klio_messages_skipped[reason=ping]"] == 1
    assert counters["klio_messages_to_run"] == 1
    assert counters["klio_messages_output"] == 2


def test_bottom_up_answer_turns_top_down_when_received_by_the_asking_job() -> None:
    # Klio's KlioCheckRecipients: the job named trigger_children_of turns the recipients back to
    # anyone on receipt, so run already sees (and passes on) a top-down message.
    config = make_config()
    me, parent = JobRef(config.job_name), JobRef("parent")

    class Look(beam.DoFn):
        def process(self, data: bytes) -> Any:
            kind = parse(data).metadata.intended_recipients.WhichOneof("recipients")
            yield f"run saw {kind}"

    def run(pcoll: Any, cfg: Any) -> Any:
        return pcoll | beam.ParDo(Look())

    answer = serialize(new_message("e", recipients=[me, parent], trigger_children_of=me))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        routed = p | beam.Create([answer]) | KlioRoute(config)
        run_saw = run(routed.process, config)
        assert_that(run_saw, equal_to(["run saw anyone"]))


def test_event_lines_from_any_source_become_messages() -> None:
    from klio_runtime.io.events import DecodeEventLines, encode_line

    config = make_config()
    lines = ["track-1", b"track-2", encode_line(new_message("track-3", b"p")), "", b"\xff\xfe"]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        decoded = p | beam.Create(lines) | DecodeEventLines()
        out = decoded.events | KlioJobTransform(config, _run_fn)
        assert_that(
            out["output"] | beam.Map(_elements_and_payloads),
            equal_to(
                [
                    ("track-1", b"ran:track-1"),
                    ("track-2", b"ran:track-2"),
                    ("track-3", b"ran:track-3"),
                ]
            ),
        )
        assert_that(
            decoded.dead_letter | beam.Map(lambda d: (d.reason, d.where)),
            equal_to([("malformed_line", "b'\\xff\\xfe'")]),
            label="dead",
        )


def test_per_transform_metrics_of_messages_checked_at_bundle_end_reach_prometheus(
    tmp_path: Path,
) -> None:
    # Existence is checked for a batch at the bundle's end: the messages run after the router's
    # last element, and what run's steps counted must still be handed on within the bundle.
    config = make_config(_data_config(tmp_path))
    for element in ("a", "b", "c"):
        (tmp_path / "in" / f"{element}.txt").write_text("input")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([msg_bytes(e) for e in "abc"]) | KlioJobTransform(config, _run_fn)
        assert_that(out["output"] | beam.Map(element_id_of), equal_to(["a", "b", "c"]))
    prefix = KlioMetrics.from_settings(config.job_name, None).prefix
    for name in ("kmsg_received_total", "kmsg_success_total", "kmsg_timer_seconds_count"):
        assert process_hub().value(f"{prefix}_{name}", transform="_mark") == 3, name


def element_id_of(data: bytes) -> str:
    return element_id(parse(data))


def test_configured_event_io_counts_klios_kmsg_read_and_kmsg_write(tmp_path: Path) -> None:
    # Klio's metrics docs: the built-in reads and writes count under their IO transforms' names;
    # a message passed through (its output exists) is written, so counted, too.
    from klio_runtime.pipeline import build_pipeline
    from klio_runtime.runner import beam_options

    cfg = _data_config(tmp_path)
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    cfg["events"] = {
        "inputs": [{"type": "file", "location": str(tmp_path / "ids.txt")}],
        "outputs": [{"type": "file", "location": str(tmp_path / "events")}],
    }
    config = make_config(cfg)
    for element in "abc":
        (tmp_path / "in" / f"{element}.txt").write_text("input")
    (tmp_path / "out" / "b.txt").write_text("done")
    result = build_pipeline(config, _run_fn, beam_options(config)).run()
    result.wait_until_finish()
    counted: dict[tuple[str, str], int] = {}
    for counter in result.metrics().query()["counters"]:
        if counter.key.metric.name in ("kmsg-read", "kmsg-write"):
            key = (counter.key.metric.namespace, counter.key.metric.name)
            counted[key] = counted.get(key, 0) + counter.committed
    assert counted == {
        ("KlioReadFromText", "kmsg-read"): 3,
        ("KlioWriteToText", "kmsg-write"): 3,
    }


def test_messages_for_other_jobs_are_dropped_with_klios_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config()
    v1 = KlioMessage(version=V1)
    v1.data.entity_id = "v1-elsewhere"
    v1.metadata.downstream.append(JobRef("some-other-job").to_proto())
    no_recipients = KlioMessage(version=V2)
    no_recipients.data.element = b"v2-nobody"
    elsewhere = serialize(new_message("v2-elsewhere", recipients=[JobRef("some-other-job")]))
    with caplog.at_level("INFO", logger="klio"), beam.Pipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create([serialize(v1), serialize(no_recipients), elsewhere])
            | KlioJobTransform(config, _run_fn)
        )
        assert_that(out["output"], equal_to([]), label="output")
        assert_that(
            out["dropped"] | beam.Map(lambda d: (d.element, d.reason)),
            equal_to([(e, "not_recipient") for e in ("v1-elsewhere", "v2-nobody", "v2-elsewhere")]),
            label="dropped",
        )
    shown = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "klio"]
    v1_line = (
        "Dropping KlioMessage - job not an intended recipient for message with entity_id "
        "v1-elsewhere."
    )
    nobody_line = (
        "Dropping KlioMessage - No 'intended_recipients' set in metadata of KlioMessage with "
        "element 'b'v2-nobody''."
    )
    assert ("INFO", v1_line) in shown
    assert ("WARNING", nobody_line) in shown
    for element in ("v1-elsewhere", "v2-nobody", "v2-elsewhere"):
        dropping = f"Dropping KlioMessage - can not process 'b'{element}'' any further."
        assert ("INFO", dropping) in shown, shown
    counters = {
        (c.key.metric.namespace, c.key.metric.name): c.committed
        for c in p.result.metrics().query()["counters"]
        if c.key.metric.name.startswith("kmsg-drop")
    }
    # Klio's V1 recipient check counts none; KlioDrop counts every one
    assert counters == {
        ("KlioCheckRecipients", "kmsg-drop-not-recipient"): 2,
        ("KlioDrop", "kmsg-drop"): 3,
    }


def _with_window_start(element_and_count: Any, window: Any = beam.DoFn.WindowParam) -> Any:
    return element_and_count[0], window.start.micros // 1_000_000


def test_existence_checks_keep_each_messages_window_and_time(tmp_path: Path) -> None:
    """Checked in batches, messages still leave at their own time in their own window: the
    built-in checks before run, and Klio's helper on messages already windowed."""
    from apache_beam.transforms.window import FixedWindows, TimestampedValue
    from klio_runtime.transforms.helpers import KlioGcsCheckInputExists

    config = make_config(_data_config(tmp_path))
    for name in ("a", "b"):
        (tmp_path / "in" / f"{name}.txt").write_text(name)
    timed = [(msg_bytes("a"), 1_700_000_000), (msg_bytes("b"), 1_700_000_125)]

    def per_window(pcoll: Any, label: str) -> Any:
        return (
            pcoll
            | f"{label} key" >> beam.Map(lambda data: (element_id(parse(data)), 1))
            | f"{label} sum" >> beam.CombinePerKey(sum)
            | f"{label} window" >> beam.Map(_with_window_start)
        )

    def windowed_run(pcoll: Any, _: Any) -> Any:
        windowed = pcoll | beam.WindowInto(FixedWindows(60))
        return (windowed | KlioGcsCheckInputExists()).found

    with beam.Pipeline(runner=FnApiRunner()) as p:
        messages = (
            p
            | beam.Create(timed)
            | beam.MapTuple(lambda data, seconds: TimestampedValue(data, seconds))
        )
        out = messages | KlioJobTransform(config, windowed_run)
        expected = [("a", 1_699_999_980), ("b", 1_700_000_100)]  # two windows, not one at 0
        assert_that(per_window(out["output"], "run"), equal_to(expected))


def test_a_run_returning_no_pcollection_is_warned_of_when_events_would_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = {
        "inputs": [{"type": "file", "location": str(tmp_path / "ids.txt")}],
        "outputs": [{"type": "file", "location": str(tmp_path / "out")}],
    }
    config = make_config({"events": events})
    with caplog.at_level(logging.WARNING, logger="klio"), beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([msg_bytes("a")]) | KlioJobTransform(config, lambda pc, conf: None)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "run() returned NoneType, not a PCollection: what it processes is not written to the"
        " event outputs (job_config.events.outputs)"
    ]


def test_the_summary_counts_what_runs_own_helpers_drop_and_each_ping_once(tmp_path: Path) -> None:
    from klio_runtime.io.events import encode_line
    from klio_runtime.runner import run_job
    from klio_runtime.transforms.helpers import KlioDrop, KlioFilterPing

    ids = tmp_path / "ids.txt"
    ping = encode_line(new_message("p1", ping=True))
    ids.write_text(f"keep-1\ndrop-1\n{ping}\ndrop-2\n")
    config = make_config(
        {
            "events": {
                "inputs": [{"type": "file", "location": str(ids)}],
                "outputs": [{"type": "file", "location": str(tmp_path / "out")}],
            }
        }
    )

    @handle_klio
    def fails_on_drop_2(ctx: Any, data: Any) -> Any:
        if data.element == b"drop-2":
            raise ValueError("not this one")
        return data

    def run(pcoll: Any, cfg: Any) -> Any:
        pinged = pcoll | KlioFilterPing()  # the router counted the ping already
        # after a fusion break, and dropped at a bundle's end: steps no router shares a bundle with
        later = pinged.process | beam.Reshuffle() | beam.Map(fails_on_drop_2)
        kept = later | beam.Filter(lambda b: parse(b).data.element != b"drop-1")
        _ = later | beam.Filter(lambda b: parse(b).data.element == b"drop-1") | KlioDrop()
        return kept

    summary = run_job(config, run)

    assert summary.received == 4
    assert summary.skipped == {"ping": 1}
    assert summary.dropped == {"klio_drop": 1, "run_error": 1}
    assert summary.dropped_ids == {"klio_drop": ["drop-1"], "run_error": ["drop-2"]}
