"""Klio's documented API through its own import paths: helper transforms' outputs, decorators in a
pipeline, ``klio_core.config.KlioConfig(raw_dict)``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from klio.transforms import decorators, helpers
from klio_core.config import ConfigError, KlioConfig
from klio_core.exceptions import KlioConfigTemplatingException
from klio_core.proto import klio_pb2
from klio_runtime import config as runtime_config
from klio_runtime.io.pubsub_events import side_publishes_through
from klio_runtime.metrics import process_hub, prometheus_name

from tests.runtime.helpers import bound, dropped, make_config, msg_bytes


def elements(pcoll: Any, label: str) -> Any:
    return pcoll | label >> beam.Map(lambda b: klio_pb2.KlioMessage.FromString(b).data.element)


def test_helpers_tag_found_not_found_force_ping_and_drop(tmp_path: Path) -> None:
    outputs, inputs = tmp_path / "out", tmp_path / "in"
    outputs.mkdir()
    inputs.mkdir()
    (outputs / "done.wav").write_bytes(b"x")
    (outputs / "done-forced.wav").write_bytes(b"x")
    (inputs / "new.ogg").write_bytes(b"x")
    config = make_config(
        {
            "data": {
                "inputs": [{"type": "file", "location": str(inputs), "file_suffix": ".ogg"}],
                "outputs": [{"type": "file", "location": str(outputs), "file_suffix": ".wav"}],
            }
        }
    )
    ctx = bound(config)
    messages = [
        msg_bytes("done"),
        msg_bytes("done-forced", force=True),
        msg_bytes("new"),
        msg_bytes("pinged", ping=True),
    ]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(messages) | helpers.KlioGcsCheckOutputExists()
        forced = out.found | helpers.KlioFilterForce()
        pinged = out.not_found | helpers.KlioFilterPing()
        inputs_checked = pinged.process | helpers.KlioGcsCheckInputExists()
        counted = inputs_checked.found | beam.ParDo(
            helpers.KlioMessageCounter(suffix="input-found", bind_transform="check")
        )
        _ = forced.pass_thru | helpers.KlioDrop()
        assert_that(elements(out.found, "f"), equal_to([b"done", b"done-forced"]), label="found")
        assert_that(elements(out.not_found, "nf"), equal_to([b"new", b"pinged"]), label="not_found")
        assert_that(elements(forced.process, "fp"), equal_to([b"done-forced"]), label="forced")
        assert_that(elements(forced.pass_thru, "fpt"), equal_to([b"done"]), label="not forced")
        assert_that(elements(pinged.pass_thru, "pp"), equal_to([b"pinged"]), label="ping")
        assert_that(elements(counted, "c"), equal_to([b"new"]), label="input found")
        assert_that(
            elements(inputs_checked.not_found, "inf"), equal_to([]), label="input not found"
        )
    assert dropped(ctx.config, "klio_drop") == 1
    counters = p.result.metrics().query()["counters"]
    # Klio's documented helper metrics, each under its transform (metrics.rst): in Beam, as Klio's
    # native client records them, the transform is the namespace
    assert {
        (c.key.metric.namespace, c.key.metric.name, c.committed)
        for c in counters
        if "kmsg" in c.key.metric.name
    } == {
        ("check", "kmsg-input-found", 1),
        ("KlioGcsCheckOutputExists", "kmsg-data-found-output", 2),
        ("KlioGcsCheckOutputExists", "kmsg-data-not-found-output", 2),
        ("KlioFilterForce", "kmsg-process-force", 1),
        ("KlioFilterForce", "kmsg-skip-force", 1),
        ("KlioFilterPing", "kmsg-process-ping", 1),
        ("KlioFilterPing", "kmsg-skip-ping", 1),
        ("KlioGcsCheckInputExists", "kmsg-data-found-input", 1),
        ("KlioDrop", "kmsg-drop", 1),
        # Klio's KlioDrop is a handle_klio step, with that decorator's metrics
        ("KlioDrop.process", "kmsg-received", 1),
        ("KlioDrop.process", "kmsg-success", 1),
    }


def _version_and_element(data: bytes) -> tuple[int, bytes]:
    msg = klio_pb2.KlioMessage.FromString(data)
    return msg.version, msg.data.element


def test_klio_drop_logs_its_metrics_as_a_handle_klio_step_does() -> None:
    # Klio's KlioDrop is a handle_klio step: with the metrics logger on, [kmsg-received] first
    bound(make_config({"metrics": {"logger": {"level": "info"}}}))
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage().split(" value:")[0])

    metrics_logger = logging.getLogger("klio.metrics")
    handler, level = Keep(), metrics_logger.level
    metrics_logger.addHandler(handler)
    metrics_logger.setLevel(logging.INFO)
    try:
        with beam.Pipeline(runner=FnApiRunner()) as p:
            _ = p | beam.Create([msg_bytes("a")]) | helpers.KlioDrop()
    finally:
        metrics_logger.removeHandler(handler)
        metrics_logger.setLevel(level)
    assert lines == ["[kmsg-received]", "[kmsg-drop]", "[kmsg-success]", "[kmsg-timer]"]


def test_the_ack_step_klios_gke_runner_appended_passes_elements_on() -> None:
    from apache_beam.testing.util import assert_that, equal_to

    messages = [msg_bytes("a"), msg_bytes("b")]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(messages) | beam.ParDo(helpers.KlioAckInputMessage())
        assert_that(out, equal_to(messages))


def test_helpers_hand_on_the_message_upgraded_as_klios_do(tmp_path: Path) -> None:
    """A message with no version, or a v1 one naming its element in entity_id, leaves Klio's
    helpers as the message they read it as (their serializer upgrades it), not as it came."""
    (tmp_path / "a.ogg").write_bytes(b"x")
    bound(
        make_config(
            {
                "data": {
                    "inputs": [{"type": "file", "location": str(tmp_path), "file_suffix": ".ogg"}]
                }
            }
        )
    )
    no_version = klio_pb2.KlioMessage()
    no_version.data.element = b"a"
    v1 = klio_pb2.KlioMessage()
    v1.version = klio_pb2.Version.V1
    v1.data.entity_id = "a"
    v2, v1_upgraded = (klio_pb2.Version.V2, b"a"), (klio_pb2.Version.V1, b"a")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        messages = p | beam.Create([no_version.SerializeToString(), v1.SerializeToString()])
        pinged = messages | helpers.KlioFilterPing()
        checked = pinged.process | helpers.KlioGcsCheckInputExists()
        forced = checked.found | helpers.KlioFilterForce()
        for label, pcoll in (
            ("ping", pinged.process),
            ("found", checked.found),
            ("force", forced.pass_thru),
        ):
            shown = pcoll | f"{label} read" >> beam.Map(_version_and_element)
            assert_that(shown, equal_to([v2, v1_upgraded]), label=label)


def test_decorators_stack_as_documented_in_a_pipeline() -> None:
    ctx = bound(make_config())
    attempts: dict[str, int] = {}

    @decorators.handle_klio
    @decorators.retry(tries=3, exception=ValueError)
    def flaky(c: Any, item: Any) -> Any:
        element = item.element.decode()
        attempts[element] = attempts.get(element, 0) + 1
        if attempts[element] < 2:
            raise ValueError("first try fails")
        return item.element + b"!"

    class Tag(beam.DoFn):
        @decorators.set_klio_context
        def setup(self) -> None:
            self.job_name = self._klio.config.job_name

        @decorators.serialize_klio_message
        def process(self, item: Any) -> Any:
            yield item.payload + b" by " + self.job_name.encode()

    @decorators.inject_klio_context
    def payload_of(c: Any, data: bytes) -> bytes:
        return klio_pb2.KlioMessage.FromString(data).data.payload

    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create([msg_bytes("a"), msg_bytes("b")])
            | beam.Map(flaky)
            | beam.ParDo(Tag())
            | beam.Map(payload_of)
        )
        name = ctx.config.job_name.encode()
        assert_that(out, equal_to([b"a! by " + name, b"b! by " + name]))


def test_klio_config_from_a_raw_dict_with_templates_and_overrides() -> None:
    raw = {
        "version": 2,
        "job_name": "my-job",
        "pipeline_options": {"project": "my-project", "runner": "DirectRunner"},
        "job_config": {
            "my_model": "gs://models/$MODEL",
            "events": {
                "inputs": [
                    {"type": "file", "location": "first.txt"},
                    {"type": "file", "location": "second.txt"},
                ]
            },
            "data": {"outputs": [{"type": "gcs", "location": "gs://bucket/out"}]},
        },
    }
    config = KlioConfig(
        raw,
        raw_templates=["MODEL=v2.h5"],
        raw_overrides=[
            "job_config.events.inputs.file1.location=other.txt",
            "job_config.data.outputs[0].force=true",
        ],
    )
    assert isinstance(config, runtime_config.KlioConfig)
    assert config.job_name == "my-job" and config.pipeline_options.project == "my-project"
    assert config.job_config.my_model == "gs://models/v2.h5"
    assert [i.location for i in config.job_config.events.inputs] == ["first.txt", "other.txt"]
    assert config.job_config.data.outputs[0].force is True
    assert config.as_dict()["job_config"]["events"]["inputs"][1]["location"] == "other.txt"
    assert raw["job_config"]["events"]["inputs"][1]["location"] == "second.txt"  # not mutated
    assert KlioConfig(job_name="by-fields").job_name == "by-fields"


def test_klio_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        KlioConfig({"job_name": "j", "job_config": {"thread_pool_size": 0}})
    assert caught.value.errors[0].startswith("job_config.thread_pool_size")
    with pytest.raises(
        KlioConfigTemplatingException, match=r"template variable \$MISSING has no"
    ) as missing:
        KlioConfig({"job_name": "j", "job_config": {"x": "$MISSING"}}, raw_templates=["A=b"])
    assert isinstance(missing.value, ConfigError) and missing.value.key == "MISSING"
    # templated with no templates given too, as Klio's preprocessor does (its config docs)
    with pytest.raises(KlioConfigTemplatingException, match=r"\$my_template_value has no value"):
        KlioConfig({"job_name": "j", "job_config": {"a_key": "${my_template_value}"}})
    assert KlioConfig({"job_name": "j", "job_config": {"cost": "$$5"}}).job_config.cost == "$5"


def test_unused_gcs_data_entry_may_name_a_local_path_checked_one_may_not() -> None:
    base = {"job_name": "j", "job_config": {"data": {"inputs": [{"type": "gcs"}]}}}
    entry = base["job_config"]["data"]["inputs"][0]  # type: ignore[index]
    entry.update(location="/not/a/real/file", skip_klio_existence_check=True)
    assert KlioConfig(base).job_config.data.inputs[0].location == "/not/a/real/file"
    entry["skip_klio_existence_check"] = False
    with pytest.raises(ConfigError) as caught:
        KlioConfig(base)
    assert caught.value.errors[0].startswith("job_config.data.inputs[0].location: ")


def test_unused_data_entry_may_have_no_location_checked_one_may_not() -> None:
    # Klio's data config docs: location is optional, needed by the existence checks
    unused = {"type": "gcs", "skip_klio_existence_check": True}
    data = {"inputs": [unused], "outputs": [unused]}
    config = KlioConfig({"job_name": "j", "job_config": {"data": data}})
    assert config.job_config.data.inputs[0].location is None
    assert config.job_config.data.outputs[0].location is None
    with pytest.raises(ValueError, match=r"data gcs entry has no location, so no path for 'a'"):
        config.job_config.data.inputs[0].path_for("a")
    with pytest.raises(ConfigError) as caught:
        KlioConfig({"job_name": "j", "job_config": {"data": {"outputs": [{"type": "gcs"}]}}})
    assert caught.value.errors == [
        "job_config.data.outputs[0].location: required unless skip_klio_existence_check is "
        "true (the existence check looks there)"
    ]


def test_trigger_upstream_takes_klios_arguments_and_publishes_bottom_up_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(pipeline_options={"streaming": True})
    bound(config)
    upstream = "projects/p/topics/parent-input"

    def recipients(data: bytes) -> tuple[list[str], str]:
        limited = klio_pb2.KlioMessage.FromString(data).metadata.intended_recipients.limited
        return sorted(j.job_name for j in limited.recipients), limited.trigger_children_of.job_name

    expected = (sorted(["parent-job", config.job_name]), config.job_name)

    class Published(beam.PTransform):  # stands in for the Pub/Sub sink: what reaches the topic
        def __init__(self, topic: str) -> None:
            super().__init__()
            self.topic = topic

        def expand(self, pcoll: Any) -> Any:
            got = pcoll | beam.Map(lambda data, t: (t, recipients(data)), self.topic)
            assert_that(got, equal_to([(upstream, expected)]), label="published")

    caplog.set_level(logging.DEBUG, logger="klio")
    with side_publishes_through(Published), beam.Pipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create([msg_bytes("needs-parent")])
            | helpers.KlioTriggerUpstream(
                upstream_job_name="parent-job", upstream_topic=upstream, log_level="DEBUG"
            )
            | beam.Map(recipients)
        )
        assert_that(out, equal_to([expected]))
    counters = p.result.metrics().query()["counters"]
    assert [
        (c.key.metric.namespace, c.key.metric.name, c.committed)
        for c in counters
        if "kmsg" in c.key.metric.name
    ] == [("KlioTriggerUpstream", "kmsg-trigger-upstream", 1)]
    assert ("DEBUG", "Triggering upstream parent-job for needs-parent") in [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]


def test_trigger_upstream_refuses_what_klio_refuses() -> None:
    with pytest.raises(ValueError, match="upstream_topic must be 'projects/<GCP_PROJECT>/topics"):
        helpers.KlioTriggerUpstream("parent", "parent-input")
    with pytest.raises(ValueError, match="unknown log_level 'LOUD'"):
        helpers.KlioTriggerUpstream("parent", "projects/p/topics/t", log_level="LOUD")
    bound(make_config())  # a batch job
    with (
        pytest.raises(ValueError, match=r"pipeline_options\.streaming is false"),
        beam.Pipeline(runner=FnApiRunner()) as p,
    ):
        _ = (
            p
            | beam.Create([msg_bytes("x")])
            | helpers.KlioTriggerUpstream("parent", "projects/p/topics/t")
        )


def test_debug_message_logs_each_message_and_passes_it_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config()
    bound(config)
    with caplog.at_level("DEBUG", logger="klio"), beam.Pipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create([msg_bytes("a"), msg_bytes("b")])
            | helpers.KlioDebugMessage(prefix="seen: ", log_level="WARNING")
        )
        assert_that(elements(out, "e"), equal_to([b"a", b"b"]))
    logged = [r for r in caplog.records if r.getMessage().startswith("seen: ")]
    assert len(logged) == 2 and {r.levelname for r in logged} == {"WARNING"}
    shown = [r.getMessage() for r in logged]  # each message as protobuf text, as Klio shows it
    assert sorted(m.split('element: "')[1][0] for m in shown) == ["a", "b"]
    assert all(m.startswith("seen: metadata {\n") for m in shown)
    with pytest.raises(ValueError, match="unknown log_level 'LOUD'"):
        helpers.KlioDebugMessage(log_level="LOUD")


def test_a_job_writing_its_own_events_uses_klios_write_transforms(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("x-1\nx-2\n")
    config = make_config(
        {
            "events": {
                "inputs": [{"type": "file", "location": str(ids)}],
                "outputs": [
                    {"type": "file", "location": str(tmp_path / "out"), "skip_klio_write": True}
                ],
            }
        }
    )

    def run(pcoll: Any, _: Any) -> Any:
        return pcoll | helpers.KlioWriteToEventOutput()

    from klio_runtime.runner import run_job

    run_job(config, run)
    written = sorted((tmp_path).glob("out-*-of-*"))
    assert [line for f in written for line in f.read_text().split()] == ["x-1", "x-2"]


def test_pass_through_written_by_the_job_joins_klios_own_writer_of_the_file(
    tmp_path: Path,
) -> None:
    # Klio's documented pattern: a composite writes pass-through messages with
    # KlioWriteToEventOutput while Klio writes run's output to the same file event output.
    ids = tmp_path / "ids.txt"
    ids.write_text("done\nnew\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "done.txt").write_text("x")
    config = make_config(
        {
            "events": {
                "inputs": [{"type": "file", "location": str(ids)}],
                "outputs": [{"type": "file", "location": str(tmp_path / "out")}],
            },
            "data": {
                "outputs": [
                    {
                        "type": "file",
                        "location": str(tmp_path / "data"),
                        "file_suffix": ".txt",
                        "skip_klio_existence_check": True,
                    }
                ]
            },
        }
    )

    def run(pcoll: Any, _: Any) -> Any:
        checked = pcoll | helpers.KlioGcsCheckOutputExists()
        forced = checked.found | helpers.KlioFilterForce()
        _ = forced.pass_thru | "Passthru" >> helpers.KlioWriteToEventOutput()
        return checked.not_found

    from klio_runtime.runner import run_job

    summary = run_job(config, run)
    written = sorted(tmp_path.glob("out-*-of-*"))
    assert sorted(line for f in written for line in f.read_text().split()) == ["done", "new"]
    assert summary.output == 2


def test_klio_io_transforms_read_and_write_events(tmp_path: Path) -> None:
    from klio.transforms import KlioReadFromText, KlioWriteToAvro, io

    (tmp_path / "ids.txt").write_bytes(b"t-1\nt-2\n\xff\xfe not text\n")
    config = make_config()
    bound(config)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        read = p | KlioReadFromText(location=str(tmp_path), file_pattern="ids.txt")
        _ = read | KlioWriteToAvro(location=str(tmp_path), file_path_prefix="events")
    # the line that is not text is counted, not lost
    hub = process_hub()
    assert hub.value("klio_dead_letter_total", job=config.job_name, reason="malformed_line") == 1
    with beam.Pipeline(runner=FnApiRunner()) as again_p:
        again = again_p | io.KlioReadFromAvro(file_pattern=str(tmp_path / "events*"))
        assert_that(elements(again, "e"), equal_to([b"t-1", b"t-2"]))
    # Klio's IO metrics (metrics.rst): kmsg-read / kmsg-write under the transform's class name
    counted = {
        (c.key.metric.namespace, c.key.metric.name, c.committed)
        for result in (p.result, again_p.result)
        for c in result.metrics().query()["counters"]
        if "kmsg" in c.key.metric.name
    }
    assert counted == {
        ("KlioReadFromText", "kmsg-read", 2),
        ("KlioWriteToAvro", "kmsg-write", 2),
        ("KlioReadFromAvro", "kmsg-read", 2),
    }
    with pytest.raises(NotImplementedError, match="BigQuery event IO is not supported"):
        io.KlioReadFromBigQuery(table="p:d.t")
    with pytest.raises(NotImplementedError, match="write them with Beam's WriteToBigQuery"):
        io.KlioWriteToBigQuery(table="p:d.t")


def test_klio_pubsub_io_passes_beams_own_arguments_on() -> None:
    # Klio's KlioReadFromPubSub / KlioWriteToPubSub hand their arguments to Beam's transforms
    from apache_beam.io.gcp.pubsub import ReadFromPubSub, WriteToPubSub
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.pipeline import PipelineVisitor
    from klio.transforms import io as klio_io

    bound(make_config())  # Klio's IO counters count in the job's context
    sub, topic = "projects/my-project/subscriptions/in", "projects/my-project/topics/out"
    p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(streaming=True))
    _ = (
        p
        | klio_io.KlioReadFromPubSub(
            subscription=sub, with_attributes=True, id_label="id", timestamp_attribute="ts"
        )
        | klio_io.KlioWriteToPubSub(topic, with_attributes=True)
    )
    found: dict[str, Any] = {}

    class Visit(PipelineVisitor):
        def visit_transform(self, node: Any) -> None:
            if isinstance(node.transform, ReadFromPubSub | WriteToPubSub):
                found[type(node.transform).__name__] = node.transform
            found.setdefault("labels", []).append(node.full_label)

        enter_composite_transform = visit_transform

    p.visit(Visit())
    read, write = found["ReadFromPubSub"], found["WriteToPubSub"]
    assert read.with_attributes and read._source.id_label == "id"
    assert read._source.timestamp_attribute == "ts"
    assert write.with_attributes
    # PubsubMessage objects are published as they are, not made bytes first
    assert not any(label.endswith("/Bytes") for label in found["labels"])


def test_klio_text_io_takes_beams_text_arguments(tmp_path: Path) -> None:
    # Klio's KlioReadFromText / KlioWriteToText are Beam's ReadFromText / WriteToText: their
    # arguments (positional too: WriteToText's second is the suffix) reach Beam.
    from klio.transforms import io

    (tmp_path / "ids.csv").write_text("id\nt-1\nt-2\n")
    bound(make_config())
    out = str(tmp_path / "out" / "ids")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        read = p | io.KlioReadFromText(str(tmp_path / "ids.csv"), skip_header_lines=1)
        write = io.KlioWriteToText(out, ".txt", num_shards=1, shard_name_template="", header="id")
        _ = read | write
    assert (tmp_path / "out" / "ids.txt").read_text().split() == ["id", "t-1", "t-2"]
    for refused in (io.KlioReadFromText, io.KlioWriteToText, io.KlioReadFromAvro):
        with pytest.raises(io.KlioMissingConfiguration, match=refused.__name__):
            refused()
    assert issubclass(io.KlioMissingConfiguration, io.BaseKlioIOException)


class _Passes(beam.DoFn):
    @decorators._handle_klio
    def process(self, item: Any) -> Any:
        yield item


class _AlwaysFails(beam.DoFn):
    @decorators._handle_klio
    @decorators._retry(tries=3)
    def process(self, item: Any) -> Any:
        raise RuntimeError("always")


@decorators._inject_klio_context
@decorators._serialize_klio_message
def _passes_through(ctx: Any, item: Any) -> Any:
    return item


def _beam_metrics(result: Any) -> dict[tuple[str, str], Any]:
    query = result.metrics().query()
    found = {(m.key.metric.namespace, m.key.metric.name): m.committed for m in query["counters"]}
    for m in query["distributions"]:
        found[m.key.metric.namespace, m.key.metric.name] = m.committed
    return found


def test_decorated_steps_in_a_pipeline_of_the_users_own_record_klios_beam_metrics() -> None:
    # No KlioJobTransform around them (a Klio job's own pipeline test): each element's metrics
    # still reach Beam within its bundle, under the transform as namespace, as Klio records them.
    bound(make_config({"metrics": {"timer_unit": "ns"}}))
    messages = [msg_bytes("a"), msg_bytes("b")]
    steps = {
        "_Passes.process": lambda pcoll: pcoll | beam.ParDo(_Passes()),
        "_passes_through": lambda pcoll: pcoll | beam.Map(_passes_through),
    }
    for where, step in steps.items():
        with beam.Pipeline(runner=FnApiRunner()) as p:
            _ = step(p | beam.Create(messages))
        metrics = _beam_metrics(p.result)
        assert {name for namespace, name in metrics if namespace == where} == {
            "kmsg-received",
            "kmsg-success",
            "kmsg-timer",
        }
        assert metrics[where, "kmsg-received"] == metrics[where, "kmsg-success"] == 2
        timer = metrics[where, "kmsg-timer"]
        assert timer.count == 2 and timer.sum > 0  # nanoseconds, as configured

    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create(messages[:1]) | beam.ParDo(_AlwaysFails())
    metrics = _beam_metrics(p.result)
    where = "_AlwaysFails.process"
    assert {
        name: value for (ns, name), value in metrics.items() if ns == where and "timer" not in name
    } == {
        "kmsg-received": 1,
        "kmsg-retry-attempt": 2,
        "kmsg-drop-retry-error": 1,
        "kmsg-drop-error": 1,
    }
    assert metrics[where, "kmsg-timer"].count == 1


def test_user_metrics_are_named_in_beam_as_klios_native_client_names_them() -> None:
    ctx = bound(make_config())

    class Counts(beam.DoFn):
        def process(self, element: bytes) -> Any:
            ctx.metrics.counter("seen", tags={"kind": "x"}).inc()
            ctx.metrics.counter("seen-here", transform="Counts").inc(2)
            with ctx.metrics.timer("took", transform="Counts"):
                pass
            yield element

    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([b"1", b"2"]) | beam.ParDo(Counts())
    metrics = _beam_metrics(p.result)
    assert metrics[ctx.config.job_name, "seen"] == 2  # tags are labels in Prometheus only
    assert metrics["Counts", "seen-here"] == 4
    assert metrics["Counts", "took"].count == 2


def test_klios_metrics_registry_hands_out_one_dispatcher_per_name_and_transform() -> None:
    # Klio's metrics docs: a DoFn makes its counters in __init__ or per element; either way
    # Klio's MetricsRegistry keys them "<type>_<name>_<transform>", and inc takes `value`
    from klio.metrics import client, dispatcher

    ctx = bound(make_config())
    assert isinstance(ctx.metrics, client.MetricsRegistry)

    @decorators.handle_klio
    def counts(ctx: Any, data: Any) -> Any:
        ctx.metrics.counter("seen", transform="counts").inc(value=5)
        return data

    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([msg_bytes("a"), msg_bytes("b")]) | beam.Map(counts)
        assert_that(elements(out, "ids"), equal_to([b"a", b"b"]))
    assert _beam_metrics(p.result)["counts", "seen"] == 10
    counter = ctx.metrics.counter("seen", transform="counts")
    assert isinstance(counter, dispatcher.CounterDispatcher)
    assert isinstance(counter, dispatcher.BaseMetricDispatcher)
    assert ctx.metrics.counter("seen", transform="counts") is counter
    assert ctx.metrics.counter("seen") is not counter  # another transform
    # other tags: another Prometheus series, so another counter (Klio's registry ignores them)
    assert ctx.metrics.counter("seen", transform="counts", tags={"x": "y"}) is not counter
    gauge, timer = ctx.metrics.gauge("seen", transform="counts"), ctx.metrics.timer("seen")
    assert isinstance(gauge, dispatcher.GaugeDispatcher) and gauge is not counter
    assert isinstance(timer, dispatcher.TimerDispatcher) and ctx.metrics.timer("seen") is timer


def test_metrics_a_dofn_makes_in_init_count_in_prometheus_after_beam_pickles_it() -> None:
    # Klio's metrics docs make them in __init__ (self._klio.metrics.counter(...)); Beam pickles
    # the DoFn, and what it counts on the worker must reach that process's /metrics.
    ctx = bound(make_config())
    hub = process_hub()
    name = f"{prometheus_name(ctx.metrics.prefix)}_made_in_init"

    class Counts(beam.DoFn):
        @decorators.set_klio_context
        def __init__(self) -> None:
            self.seen = self._klio.metrics.counter("made-in-init", tags={"kind": "x"})
            self.took = self._klio.metrics.timer("made-in-init-took")

        def process(self, element: bytes) -> Any:
            with self.took:
                self.seen.inc(2)
            yield element

    before = hub.value(f"{name}_total", kind="x")
    timed = hub.value(f"{name}_took_seconds_count")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([b"1", b"2", b"3"]) | beam.ParDo(Counts())
    assert hub.value(f"{name}_total", kind="x") - before == 6
    assert hub.value(f"{name}_took_seconds_count") - timed == 3


def test_a_pickled_metrics_registry_keeps_the_jobs_metrics_settings() -> None:
    import pickle

    from klio_runtime.metrics import KlioMetrics

    settings = {"logger": {"level": "info", "timer_unit": "ms"}, "timer_unit": "us"}
    metrics = KlioMetrics.from_settings("job", settings)
    again = pickle.loads(pickle.dumps(metrics))
    assert again.log_relay is not None
    assert (again.log_relay.level, again.log_relay.timer_unit) == (logging.INFO, "ms")
    assert again.decorator_timer_unit == "us"
    silent = KlioMetrics.from_settings("job", {"logger": False})
    assert pickle.loads(pickle.dumps(silent)).log_relay is None


def test_the_context_reads_as_klios_job_bytes_run_config_and_class() -> None:
    from klio.transforms import core

    config = make_config()
    core.RunConfig.set(config)  # as Klio's test command does before a job's tests
    assert core.RunConfig.get() is config
    ctx = core.KlioContext()
    assert isinstance(ctx, core.KlioContext) and ctx.config is config
    # Klio's ctx.job is the serialized KlioJob its helpers parse; Klio's docs read its fields
    job = klio_pb2.KlioJob()
    job.ParseFromString(ctx.job)
    assert job.job_name == config.job_name == ctx.job.job_name
    assert ctx.job.SerializeToString() == job.SerializeToString()


def test_klio_core_utils_globals_are_made_once_per_process() -> None:
    import threading
    import time

    from klio_core import utils

    utils.delete_global("model")
    assert utils.get_global("model") is None
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        time.sleep(0.05)  # the other threads ask meanwhile
        return "loaded"

    got: list[str] = []
    threads = [
        threading.Thread(target=lambda: got.append(utils.get_or_initialize_global("model", load)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert got == ["loaded"] * 8 and calls == [1]
    utils.set_global("model", "other")
    assert utils.get_or_initialize_global("model", load) == "other"
    utils.delete_global("model")
    assert utils.get_or_initialize_global("model", "a value") == "a value"  # not callable: as is
    utils.set_global("model", None)  # as in Klio, None is unset
    assert utils.get_or_initialize_global("model", lambda: 3) == 3
    utils.delete_global("model")


def test_klio_core_get_publisher_makes_its_topic_and_one_client(pubsub_emulator: str) -> None:
    import uuid

    from klio_core import utils

    topic = f"projects/klio-local/topics/side-{uuid.uuid4().hex[:8]}"
    publisher = utils.get_publisher(topic)
    assert utils.get_publisher(topic) is publisher  # once per process, as Klio's
    try:
        assert publisher.publish(topic, b"side output").result(timeout=30)  # the topic exists
    finally:
        publisher.delete_topic(request={"topic": topic})
        utils.delete_global(f"publisher_{topic}")


def test_klios_timeout_and_retry_errors_import_from_where_klio_defines_them() -> None:
    from klio.transforms._retry import KlioRetriesExhausted
    from klio.transforms._timeout import KlioTimeoutError

    assert KlioTimeoutError is decorators.KlioTimeoutError
    assert KlioRetriesExhausted is decorators.KlioRetriesExhausted


def test_klio_core_variables_name_runners_as_klio_compares_them() -> None:
    from klio_core import variables as var

    runner = var.KlioRunner
    assert runner.DIRECT_RUNNER == "DirectRunner" and runner.DIRECT_RUNNER == "direct"
    assert runner.DIRECT_GKE_RUNNER == "DirectGKERunner" and runner.DIRECT_GKE_RUNNER != "direct"
    assert runner.DATAFLOW_RUNNER == "dataflow" and runner.DATAFLOW_RUNNER != "DirectRunner"
    assert runner.DIRECT_RUNNER != runner.DATAFLOW_RUNNER and len(set(runner)) == 3
    assert "europe-west1" in var.DATAFLOW_REGIONS
