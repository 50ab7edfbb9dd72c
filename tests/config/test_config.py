"""The klio-job.yaml loader: Klio-shaped fixtures, errors by path, overrides, round trips."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from klio_runtime.config import (
    BigQueryEventInput,
    BigQueryEventOutput,
    ConfigError,
    DataInput,
    FileEventInput,
    FileEventOutput,
    PubSubEventInput,
    PubSubEventOutput,
    apply_overrides,
    config_path_of,
    dump_config,
    load_config,
    parse_config,
    parse_overrides,
    parse_templates,
)
from klio_runtime.message import InvalidElementId
from klio_runtime.metrics import KlioMetrics, MetricsLogRelay, kmsg_timer_unit

FIXTURES = Path(__file__).parent / "fixtures"
VALID = [
    "streaming_pubsub_gcs.yaml",
    "batch_file_audio.yaml",
    "batch_multi_event_input.yaml",
    "custom_keys.yaml",
    "two_parents.yaml",
]


def minimal(**job_config: Any) -> dict[str, Any]:
    return {"version": 2, "job_name": "j", "job_config": job_config}


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.errors


def test_streaming_pubsub_gcs_fixture() -> None:
    config = load_config(FIXTURES / "streaming_pubsub_gcs.yaml")
    assert config.job_name == "track-features"
    assert config.version == 2
    options = config.pipeline_options
    assert (options.runner, options.streaming, options.project) == (
        "DataflowRunner",
        True,
        "demo-project",
    )
    assert options.experiments == ["beam_fn_api"]
    # untyped Beam options are kept and passed through
    assert options.as_dict()["worker_machine_type"] == "n1-standard-2"
    assert options.as_dict()["autoscaling_algorithm"] == "NONE"
    (event_in,) = config.job_config.events.inputs
    assert isinstance(event_in, PubSubEventInput)
    assert event_in.subscription.endswith("track-ingest-output-track-features")  # type: ignore[union-attr]
    assert event_in.skip_klio_read is False
    (event_out,) = config.job_config.events.outputs
    assert isinstance(event_out, PubSubEventOutput)
    (data_in,) = config.job_config.data.inputs
    assert (data_in.type, data_in.skip_klio_existence_check, data_in.file_suffix) == (
        "gcs",
        True,
        "",
    )
    assert data_in.ping is False
    assert config.job_config.data.outputs[0].force is False


def test_batch_file_fixture() -> None:
    config = load_config(FIXTURES / "batch_file_audio.yaml")
    assert config.pipeline_options.streaming is False
    (event_in,) = config.job_config.events.inputs
    assert isinstance(event_in, FileEventInput)
    assert event_in.file_pattern == event_in.location == "./track_ids.txt"
    assert config.job_config.events.outputs == []
    assert config.job_config.data.inputs[0].path_for("t1") == "./inputs/t1.ogg"
    assert config.job_config.data.outputs[0].path_for("t1") == "./outputs/t1.png"


def test_multi_event_input_fixture() -> None:
    config = load_config(FIXTURES / "batch_multi_event_input.yaml")
    locations = [i.location for i in config.job_config.events.inputs]  # type: ignore[union-attr]
    assert locations == ["./ids_part_1.txt", "./ids_part_2.txt"]
    (event_out,) = config.job_config.events.outputs
    assert isinstance(event_out, FileEventOutput)
    assert event_out.file_path_prefix == "./ids_output"


def test_custom_keys_are_kept() -> None:
    config = load_config(FIXTURES / "custom_keys.yaml")
    job_config = config.job_config
    assert job_config.model_file == "model.h5"  # type: ignore[attr-defined]
    assert job_config.thresholds == {"cat": 0.8, "dog": 0.7}  # type: ignore[attr-defined]
    assert job_config.nothing is None  # type: ignore[attr-defined]
    assert (job_config.allow_non_klio_messages, job_config.blocking) == (True, True)
    assert job_config.metrics == {"logger": {"level": "info"}}
    assert config.pipeline_options.flexrs_goal == "COST_OPTIMIZED"  # type: ignore[attr-defined]
    dumped = dump_config(config)
    assert dumped["job_config"]["nothing"] is None
    assert dumped["pipeline_options"]["label"] == "team=pets"


def test_several_data_inputs_and_runtime_knobs() -> None:
    config = load_config(FIXTURES / "two_parents.yaml")
    job_config = config.job_config
    assert (job_config.thread_pool_size, job_config.timeout_seconds, job_config.retries) == (
        4,
        30.5,
        2,
    )
    paths = [data.path_for("track-7") for data in job_config.data.inputs]
    assert paths == [
        "gs://klio-demo/spectrograms/track-7.png",
        "gs://klio-demo/loudness/track-7.json",
    ]


def test_defaults_follow_klio() -> None:
    config = parse_config({"job_name": "j"})
    assert config.version == 2
    assert config.pipeline_options.streaming is True
    assert config.pipeline_options.as_dict() == {"streaming": True}
    job_config = config.job_config
    assert (job_config.allow_non_klio_messages, job_config.blocking, job_config.retries) == (
        False,
        False,
        0,
    )
    assert (job_config.thread_pool_size, job_config.timeout_seconds) == (None, None)
    assert job_config.events.inputs == job_config.data.outputs == []


@pytest.mark.parametrize("name", VALID)
def test_round_trip(name: str, tmp_path: Path) -> None:
    config = load_config(FIXTURES / name)
    dumped = dump_config(config)
    assert parse_config(dumped) == config
    path = tmp_path / "klio-job.yaml"
    path.write_text(yaml.safe_dump(dumped, sort_keys=False))
    assert load_config(path) == config
    assert dump_config(load_config(path)) == dumped


def test_klio_spellings_are_accepted_and_dumped_as_location() -> None:
    config = parse_config(
        minimal(
            events={
                "inputs": [{"type": "FILE", "file_pattern": "in/*.txt"}],
                "outputs": [{"type": "file", "file_path_prefix": "out/ids"}],
            },
            data={"inputs": [{"type": "GCS", "data_location": "gs://b/in", "name": "main"}]},
        )
    )
    dumped = dump_config(config)["job_config"]
    assert dumped["events"]["inputs"] == [
        {"type": "file", "location": "in/*.txt", "skip_klio_read": False}
    ]
    assert dumped["events"]["outputs"][0]["location"] == "out/ids"
    assert dumped["data"]["inputs"][0]["location"] == "gs://b/in"
    assert dumped["data"]["inputs"][0]["name"] == "main"


def test_klios_bigquery_event_io_loads_as_klio_loads_it() -> None:
    config = load_config(FIXTURES / "bigquery_events.yaml")
    read, write = config.job_config.events.inputs[0], config.job_config.events.outputs[0]
    assert isinstance(read, BigQueryEventInput) and isinstance(write, BigQueryEventOutput)
    assert (read.project, read.dataset, read.table) == ("some-project", "some_dataset", "bq_input")
    assert read.columns == read.klio_message_columns == ["entity_id"]
    assert read.validate is True and read.use_standard_sql is False  # Klio's defaults
    assert write.write_disposition == "WRITE_EMPTY" and write.schema is None
    as_json = parse_config(
        {
            "job_name": "j",
            "job_config": {
                "events": {
                    "outputs": [
                        {
                            "type": "BQ",
                            "table": "t",
                            "schema": '{"fields": [{"name": "a", "type": "string",'
                            ' "mode": "nullable"}]}',
                        }
                    ]
                }
            },
        }
    )
    assert as_json.job_config.events.outputs[0].schema == {
        "fields": [{"name": "a", "type": "string", "mode": "nullable"}]
    }
    assert dump_config(config)["job_config"]["events"]["inputs"][0]["columns"] == ["entity_id"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"type": "bq", "columns": ["a"], "table": "t"},
            "columns needs project, dataset and table",
        ),
        ({"type": "bq", "query": "SELECT 1", "table": "t"}, "query and project, dataset, table"),
        ({"type": "custom"}, "type must be pubsub, file, avro or bq (Klio's custom event IO"),
    ],
)
def test_event_inputs_klio_refuses_are_refused(entry: dict[str, Any], expected: str) -> None:
    errors = errors_of({"job_name": "j", "job_config": {"events": {"inputs": [entry]}}})
    assert errors[0].startswith("job_config.events.inputs[0]: ") and expected in errors[0]


def test_gcs_location_must_be_a_gs_url_both_errors_reported() -> None:
    errors = errors_of(yaml.safe_load((FIXTURES / "gcs_local_path.yaml").read_text()))
    assert [e.split(": ", 1)[0] for e in errors] == [
        "job_config.data.inputs[0].location",
        "job_config.data.outputs[0].location",
    ]
    location = yaml.safe_load((FIXTURES / "gcs_local_path.yaml").read_text())["job_config"]["data"][
        "inputs"
    ][0]["location"]
    assert f"'{location}' must start with gs://" in errors[0]  # names the value given


def test_every_error_is_reported_with_its_path() -> None:
    data = {
        "version": 2,
        "job_name": "j",
        "surprise": 1,
        "pipeline_options": {"streaming": "sometimes", "num_workers": -1},
        "job_config": {
            "retries": -1,
            "timeout_seconds": 0,
            "events": {
                "inputs": [
                    {"type": "pubsub"},
                    {"type": "file", "location": "a", "typo": True},
                    "just-a-string",
                    {"topic": "t"},
                ],
                "extra": [],
            },
            "data": {
                "inputs": [
                    {"type": "gcs", "location": "gs://ok"},
                    {"type": "gcs"},
                    {"type": "s3", "location": "s3://x"},
                ],
                "outputs": [{"type": "file", "location": "out", "force": "maybe"}],
            },
        },
    }
    paths = [error.split(": ", 1)[0] for error in errors_of(data)]
    assert paths == [
        "pipeline_options.streaming",
        "pipeline_options.num_workers",
        "job_config.events.inputs[0]",
        "job_config.events.inputs[1].typo",
        "job_config.events.inputs[2]",
        "job_config.events.inputs[3]",
        "job_config.events.extra",
        "job_config.data.inputs[1].location",
        "job_config.data.inputs[2].type",
        "job_config.data.outputs[0].force",
        "job_config.timeout_seconds",
        "job_config.retries",
        "surprise",
    ]


def test_error_messages_are_readable() -> None:
    errors = errors_of({"job_config": {"events": {"inputs": [{"type": "pubsub"}]}}, "x": 1})
    assert errors == [
        "job_name: required",
        "job_config.events.inputs[0]: one of topic, subscription is required",
        "x: unknown key",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"job_name": "j", "version": 3}, "version: only version 2 of klio-job.yaml is supported"),
        ({"job_name": ""}, "job_name: String should have at least 1 character"),
        ({"job_name": "j", "job_config": []}, "job_config: must be a mapping, got list"),
        (["job_name"], "(top level): must be a mapping, got list"),
        (  # as Klio: a short disk type, or its path for the job's project and region
            {"job_name": "j", "pipeline_options": {"project": "p", "worker_disk_type": "ssd"}},
            "pipeline_options.worker_disk_type: 'ssd' is not a disk type: one of local-ssd, "
            "pd-ssd, pd-standard, or compute.googleapis.com/projects/p/regions/europe-west1/",
        ),
        (
            {
                "job_name": "j",
                "pipeline_options": {
                    "project": "p",
                    "region": "us-east1",
                    "worker_disk_type": "compute.googleapis.com/projects/other/regions/"
                    "us-east1/diskTypes/pd-ssd",
                },
            },
            "pipeline_options.worker_disk_type: 'compute.googleapis.com/projects/other/",
        ),
    ],
)
def test_single_errors(data: Any, expected: str) -> None:
    assert errors_of(data)[0].startswith(expected)


def test_worker_disk_types_klio_takes() -> None:
    for disk_type in (
        "pd-ssd",
        "local-ssd",
        "compute.googleapis.com/projects/p/regions/us-east1/diskTypes/pd-balanced",
    ):
        options = {"project": "p", "region": "us-east1", "worker_disk_type": disk_type}
        config = parse_config({"job_name": "j", "pipeline_options": options})
        assert config.pipeline_options.worker_disk_type == disk_type  # expanded at submission


def test_unknown_metrics_unit_or_level_runs_with_klios_default_and_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = {"logger": {"level": "loud", "timer_unit": "hours"}, "native": {"timer_unit": "h"}}
    config = parse_config({"job_name": "j", "job_config": {"metrics": metrics}})
    assert config.job_config.metrics == metrics  # kept as written, as Klio keeps it
    relay = MetricsLogRelay.from_settings(metrics)
    assert relay == MetricsLogRelay(logging.DEBUG, "ns")
    assert kmsg_timer_unit(metrics) == "s"
    warned = "\n".join(caplog.messages)
    assert "job_config.metrics.logger.level: 'loud' is none of" in warned
    assert "job_config.metrics.logger.timer_unit: 'hours' is none of" in warned
    assert "job_config.metrics.native.timer_unit: 'h' is none of" in warned
    # Klio reads the level from logging by name, so its aliases count
    assert MetricsLogRelay.from_settings({"logger": {"level": "WARN"}}) == MetricsLogRelay(
        logging.WARNING, "ns"
    )
    # the top-level timer_unit is kmsg-timer's (Klio's precedence), not the logger client's
    top_level = {"timer_unit": "ms"}
    assert MetricsLogRelay.from_settings(top_level) == MetricsLogRelay(logging.DEBUG, "ns")
    assert kmsg_timer_unit(top_level) == "ms"


def test_the_metrics_log_is_on_by_default_only_for_the_direct_runner() -> None:
    # Klio turns its logger metrics client on by default only when the job's runner is the
    # DirectRunner (a job's test then expects its lines, and a Dataflow job's none).
    on = MetricsLogRelay(logging.DEBUG, "ns")
    assert MetricsLogRelay.from_settings({}, "DirectRunner") == on
    assert MetricsLogRelay.from_settings({}, None) == on  # this runtime's default runner
    assert MetricsLogRelay.from_settings({}, "DataflowRunner") is None
    assert MetricsLogRelay.from_settings({"logger": {}}, "DataflowRunner") == on  # asked for
    assert MetricsLogRelay.from_settings({"logger": False}, "DirectRunner") is None
    dataflow = parse_config(
        {"job_name": "j", "pipeline_options": {"runner": "DataflowRunner"}}
    )
    assert KlioMetrics.of_job(dataflow).log_relay is None


def test_path_for_rejects_unsafe_element_ids() -> None:
    data_input = DataInput(type="file", location="/data/in/", file_suffix=".wav")
    assert data_input.path_for("a/b") == "/data/in/a/b.wav"
    for bad in ("../../etc/passwd", "/etc/passwd", "a\x00b", ""):
        with pytest.raises(InvalidElementId):
            data_input.path_for(bad)


def test_load_config_reports_yaml_syntax_with_line(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text("job_name: j\njob_config:\n  events: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (error,) = caught.value.errors
    assert error.startswith(f"{path}: line 4")


def test_a_template_placeholder_left_in_the_config_is_a_config_error_with_its_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text("job_name: j\njob_config:\n  dead_letter_topic: {{dead_letter_topic}}\n")
    with pytest.raises(ConfigError) as caught:  # was a TypeError (unhashable type: 'dict')
        load_config(path)
    (error,) = caught.value.errors
    assert error == f"{path}: line 3, column 23: found unhashable key"


def test_yaml_aliases_are_taken_unless_they_expand_past_any_real_config(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text(
        "job_name: j\njob_config:\n  base: &b {rate: 22050, tags: [a, b]}\n  copy: *b\n"
    )
    assert load_config(path).job_config.model_extra["copy"] == {"rate": 22050, "tags": ["a", "b"]}
    # nine levels of nine aliases each: 9**9 values once expanded, which showing the config
    # or converting it to a KlioJob would build
    levels = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)
    ]
    path.write_text("job_name: j\njob_config:\n" + "\n".join(levels) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        f"{path}: its YAML aliases expand to more than 100,000 values"
    ]


def test_load_config_keeps_the_last_of_duplicate_keys_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Klio's own example configs repeat keys; YAML and Klio keep the last one.
    path = tmp_path / "klio-job.yaml"
    path.write_text("job_name: a\npipeline_options: {}\njob_name: b\n")
    with caplog.at_level(logging.WARNING, logger="klio"):
        assert load_config(path).job_name == "b"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: line 3, column 1: duplicate key 'job_name': the last one is used "
        "(as YAML and Klio do)"
    ]


def test_a_relative_config_file_is_named_in_the_job_directory_unless_found_only_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, here = tmp_path / "job", tmp_path / "here"
    (job / "configs").mkdir(parents=True)
    here.mkdir()
    (job / "in-job.yaml").write_text("job_name: a\n")
    (here / "only-here.yaml").write_text("job_name: b\n")
    (here / "in-job.yaml").write_text("job_name: c\n")
    monkeypatch.chdir(here)
    assert config_path_of(job, "in-job.yaml") == job / "in-job.yaml"  # the job directory first
    assert config_path_of(job, "only-here.yaml") == Path("only-here.yaml")
    # found nowhere, or not a file: said of the place it was looked for first
    assert config_path_of(job, "absent.yaml") == job / "absent.yaml"
    with pytest.raises(ConfigError) as found:
        load_config(config_path_of(job, "configs"))
    assert found.value.errors == [f"{job / 'configs'}: is a directory, not a config file"]


def test_load_config_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    path = tmp_path / "klio-job.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping, got list"):
        load_config(path)


def test_overrides_by_dotted_path(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text((FIXTURES / "batch_multi_event_input.yaml").read_text())
    config = load_config(
        path,
        overrides={
            "pipeline_options.runner": "FnApiRunner",
            "job_config.events.inputs[1].location": "./other.txt",
            "job_config.brand_new.nested": 3,
            "job_config.data.outputs[0].force": True,
        },
    )
    assert config.pipeline_options.runner == "FnApiRunner"
    assert config.job_config.events.inputs[1].location == "./other.txt"  # type: ignore[union-attr]
    assert config.job_config.brand_new == {"nested": 3}  # type: ignore[attr-defined]
    assert config.job_config.data.outputs[0].force is True


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text((FIXTURES / "batch_file_audio.yaml").read_text())
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides={"job_config.retries": "many"})
    assert caught.value.errors[0].startswith("job_config.retries: ")


def test_bad_override_paths_are_all_named(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text((FIXTURES / "batch_file_audio.yaml").read_text())
    with pytest.raises(ConfigError) as caught:
        load_config(
            path,
            overrides={
                "job_config.events.inputs[5].location": "x",
                "job_name.sub": "x",
                "job_config..x": 1,
                "job_config.events[0]": 1,
            },
        )
    assert caught.value.errors == [
        "override job_config.events.inputs[5].location: "
        "job_config.events.inputs[5]: no such item (the list has 1)",
        "override job_name.sub: job_name.sub: not a mapping",
        "override job_config..x: cannot parse near '..x'",
        "override job_config.events[0]: job_config.events[0]: not a list",
    ]


def test_parse_overrides_reads_yaml_values() -> None:
    assert parse_overrides(["a.b=3", "c=true", "d=[x, y]", "e=gs://b/p", "f="]) == {
        "a.b": 3,
        "c": True,
        "d": ["x", "y"],
        "e": "gs://b/p",
        "f": "",
    }
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["no-equals-sign"])


def test_an_override_of_a_custom_job_config_key_is_the_text_given_as_in_klio() -> None:
    # Klio's overrides give every value as text; a job reading its own keys expects that
    # (a date's digits, a "true" it compares). Declared fields still get their types.
    overrides = parse_overrides(
        [
            "job_config.model_date=20200101",
            "job_config.debug=true",
            "job_config.nested.level=null",
            "job_config.retries=2",
            "job_config.allow_non_klio_messages=true",
        ]
    )
    assert overrides == {
        "job_config.model_date": "20200101",
        "job_config.debug": "true",
        "job_config.nested.level": "null",
        "job_config.retries": 2,
        "job_config.allow_non_klio_messages": True,
    }
    from klio_core.config import KlioConfig as KlioCoresConfig

    config = KlioCoresConfig(
        {"job_name": "j", "job_config": {"model_date": "x"}},
        raw_overrides=["job_config.model_date=20200101", "job_config.blocking=true"],
    )
    assert config.job_config.model_date == "20200101" and config.job_config.blocking is True


def test_assignment_is_validated() -> None:
    config = parse_config({"job_name": "j"})
    with pytest.raises(ValueError, match="retries"):
        config.job_config.retries = -3


def test_every_example_job_config_loads() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    for path in sorted(root.glob("**/klio-job.yaml")):
        load_config(path)  # raises ConfigError naming the file's problems


def test_klio_core_import_path_gives_our_classes() -> None:
    from klio_core import config as klio_core_config
    from klio_runtime import config as ours

    assert issubclass(klio_core_config.KlioConfig, ours.KlioConfig)  # + Klio's raw-dict constructor
    config = klio_core_config.KlioConfig({"job_name": "j", "job_config": {"retries": 2}})
    assert isinstance(config.job_config, klio_core_config.KlioJobConfig)
    assert isinstance(config.pipeline_options, klio_core_config.KlioPipelineConfig)
    assert issubclass(ours.JobConfig, klio_core_config.KlioJobConfig)
    assert klio_core_config.KlioJobConfig.model_fields is ours.JobConfig.model_fields


def test_klios_section_constructors_and_write_to_file(tmp_path: Path) -> None:
    # Klio's documented constructors take the raw mapping (and the job's name and version)
    from klio_core import config as klio_core_config
    from klio_runtime import config as ours

    section = klio_core_config.KlioJobConfig(
        {"retries": 3, "model_path": "gs://b/m"}, job_name="j", version=2
    )
    assert isinstance(section, ours.JobConfig)
    assert (section.retries, section.model_path) == (3, "gs://b/m")
    # the IO entries keyed by name, as Klio's preprocessing hands them to this constructor
    keyed = klio_core_config.KlioJobConfig(
        {
            "events": {"inputs": {"file0": {"type": "file", "location": "ids.txt"}}},
            "data": {"outputs": {"gcs0": {"type": "gcs", "location": "gs://b/out"}}},
        },
        job_name="j",
        version=2,
    )
    assert [(e.type, e.location) for e in keyed.events.inputs] == [("file", "ids.txt")]
    assert [(d.type, d.location) for d in keyed.data.outputs] == [("gcs", "gs://b/out")]
    options = klio_core_config.KlioPipelineConfig({"project": "p"}, job_name="j", version=2)
    assert (options.project, options.job_name) == ("p", "j")
    with pytest.raises(ConfigError, match="retries"):
        klio_core_config.KlioJobConfig({"retries": "many"}, job_name="j", version=2)
    config = klio_core_config.KlioConfig({"job_name": "j", "job_config": {"retries": 2}})
    config.write_to_file(tmp_path / "out.yaml")
    again = klio_core_config.KlioConfig(yaml.safe_load((tmp_path / "out.yaml").read_text()))
    assert again.job_config.retries == 2 and again.job_name == "j"
    stream = io.StringIO()
    config.write_to_file(stream)
    assert stream.getvalue() == (tmp_path / "out.yaml").read_text()


def test_overrides_name_io_entries_as_klio_does(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "job_name": "named-io",
                "job_config": {
                    "events": {
                        "inputs": [
                            {"type": "file", "location": "a.txt"},
                            {"type": "pubsub", "subscription": "projects/p/subscriptions/s"},
                            {"type": "file", "location": "b.txt", "name": "second"},
                            {"type": "file", "location": "c.txt"},
                        ]
                    }
                },
            }
        )
    )
    # `<type><n>`: n counts the entries of that type (Klio's IO sections); `name` when given
    config = load_config(
        path,
        overrides={
            "job_config.events.inputs.file0.location": "A.txt",
            "job_config.events.inputs.pubsub0.subscription": "projects/p/subscriptions/t",
            "job_config.events.inputs.second.location": "B.txt",
            "job_config.events.inputs.file1.location": "C.txt",
        },
    )
    inputs = config.job_config.events.inputs
    assert [getattr(i, "location", None) for i in inputs] == ["A.txt", None, "B.txt", "C.txt"]
    assert inputs[1].subscription == "projects/p/subscriptions/t"  # type: ignore[union-attr]
    # the next of a type adds one, as Klio's overrides add an IO by its name
    added = load_config(
        path,
        overrides={
            "job_config.events.inputs.file2.location": "D.txt",
            "job_config.events.inputs.file2.skip_klio_read": True,
            "job_config.events.inputs.pubsub1.topic": "projects/p/topics/more",
        },
    ).job_config.events.inputs
    assert [(i.type, getattr(i, "location", None)) for i in added[4:]] == [
        ("file", "D.txt"), ("pubsub", None)
    ]
    assert added[4].skip_klio_read and added[5].topic == "projects/p/topics/more"  # type: ignore[union-attr]
    # any other name is refused (a typo must not add an input)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides={"job_config.events.inputs.file9.location": "x"})
    assert caught.value.errors == [
        "override job_config.events.inputs.file9.location: job_config.events.inputs.file9: "
        "no such item (named here: file0, pubsub0, second, file1)"
    ]


def test_templates_fill_the_file_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "klio-job.yaml"
    path.write_text(
        "job_name: ${team}-report\n"
        "job_config:\n"
        "  events:\n"
        "    inputs: [{type: file, location: ./ids-$day.txt}]\n"
        "  price: $$5\n"
    )
    config = load_config(path, templates={"team": "audio", "day": "2026-11-25"})
    assert config.job_name == "audio-report"
    assert config.job_config.events.inputs[0].location == "./ids-2026-11-25.txt"  # type: ignore[union-attr]
    assert config.job_config.price == "$5"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"template variable \$day has no value \(give -T day="):
        load_config(path, templates={"team": "audio"})
    with pytest.raises(ConfigError, match=r"\$team has no value"):  # as Klio's CLI, even with none
        load_config(path, templates={})
    assert load_config(path).job_name == "${team}-report"  # a rendered config: read as it is
    # Klio lowercases -T keys: -T TEAM=audio fills ${team}
    assert load_config(path, templates={"TEAM": "audio", "Day": "d"}).job_name == "audio-report"
    assert parse_templates(["a=x=y", "b="]) == {"a": "x=y", "b": ""}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_templates(["nothing"])


def test_klios_config_api_custom_keys_io_names_and_transform_kwargs() -> None:
    # What Klio's docs tell jobs to use: job_config.as_dict() for custom keys, an IO entry's
    # name (its type), as_dict() and to_io_kwargs() (the IO transform's keyword arguments).
    config = parse_config(
        {
            "job_name": "api-job",
            "job_config": {
                "model_file": "model.h5",
                "events": {
                    "inputs": [
                        {"type": "file", "location": "ids.txt", "name": "ids"},
                        {"type": "pubsub", "topic": "projects/p/topics/t"},
                    ],
                    "outputs": [{"type": "file", "location": "out/ids"}],
                },
                "data": {
                    "inputs": [{"type": "gcs", "location": "gs://b/in", "file_suffix": ".ogg"}]
                },
            },
        }
    )
    job = config.job_config
    assert job.as_dict()["model_file"] == "model.h5"
    assert "retries" not in job.as_dict()  # this runtime's knob, unset: Klio's keys only
    assert (job.job_name, job.version) == ("api-job", 2)
    ids, topic = job.events.inputs
    assert (ids.name, topic.name, job.data.inputs[0].name) == ("file", "pubsub", "gcs")
    assert ids.as_dict() == {"type": "file", "location": "ids.txt", "skip_klio_read": False}
    assert ids.to_io_kwargs() == {"file_pattern": "ids.txt"}
    assert topic.to_io_kwargs() == {"topic": "projects/p/topics/t"}
    assert job.events.outputs[0].to_io_kwargs() == {"file_path_prefix": "out/ids"}
    assert job.data.inputs[0].to_io_kwargs() == {
        "location": "gs://b/in",
        "file_suffix": ".ogg",
        "ping": False,
    }
    assert job.as_dict()["events"]["inputs"][1] == topic.as_dict()
    # the entry's own name still names it for overrides, and a dump keeps it
    assert dump_config(config)["job_config"]["events"]["inputs"][0]["name"] == "ids"


def test_pipeline_options_read_as_klios_do_but_beam_gets_what_the_file_says() -> None:
    """Klio's KlioPipelineConfig declares every option (job code reads them as attributes); a
    Klio config's `label` is one of its `labels`, and `job_name` is the job's unless set."""
    config = parse_config(
        {
            "job_name": "j",
            "pipeline_options": {"label": "team=audio", "experiments": None},
            "job_config": {"events": {"inputs": [{"type": "avro", "location": "x.avro"}]}},
        }
    )
    options = config.pipeline_options
    assert options.job_name == "j" and options.labels == ["team=audio"]
    assert options.experiments == [] and "beam_fn_api" not in options.experiments
    assert options.no_auth is False and options.service_account_email is None
    assert options.disk_size_gb is None  # Klio's Dataflow default (32) is not imposed
    assert options.as_dict() == {"streaming": True, "label": "team=audio", "experiments": []}
    assert config.job_config.events.inputs[0].validate is True  # Klio's avro attribute
    named = parse_config({"job_name": "j", "pipeline_options": {"job_name": "dataflow-j"}})
    assert named.pipeline_options.as_dict()["job_name"] == "dataflow-j"
    with pytest.raises(ConfigError, match=r"pipeline_options\.autoscaling_algorithm"):
        parse_config({"job_name": "j", "pipeline_options": {"autoscaling_algorithm": "FAST"}})


def test_keys_klio_drops_from_older_configs_are_dropped() -> None:
    """Klio's loader drops `data_location` on a Pub/Sub event entry and `topic`/`subscription`
    on a data entry (left from configs where one entry held both); so do we."""
    config = parse_config(
        {
            "job_name": "j",
            "job_config": {
                "events": {
                    "inputs": [{"type": "pubsub", "topic": "t", "data_location": "gs://b/x"}],
                    "outputs": [{"type": "pubsub", "topic": "u", "data_location": "gs://b/y"}],
                },
                "data": {"inputs": [{"type": "gcs", "location": "gs://b/x", "topic": "t"}]},
            },
        }
    )
    assert "data_location" not in config.job_config.events.inputs[0].as_dict()
    assert config.job_config.data.inputs[0].location == "gs://b/x"
    with pytest.raises(ConfigError, match="unknown key"):  # anything else is still refused
        parse_config(
            {
                "job_name": "j",
                "job_config": {
                    "events": {"inputs": [{"type": "pubsub", "topic": "t", "topicc": "typo"}]}
                },
            }
        )


def test_a_number_where_text_is_wanted_is_that_text() -> None:
    # Klio keeps -O values as text: `-O pipeline_options.project=12345` names project "12345"
    topic = {"type": "pubsub", "topic": "t"}
    data = {"job_name": "j", "pipeline_options": {"project": 12345}}
    data["job_config"] = {"events": {"inputs": [topic]}}
    apply_overrides(data, parse_overrides(["job_config.events.inputs[0].topic=42"]))
    config = parse_config(data)
    assert config.pipeline_options.project == "12345"
    assert config.job_config.events.inputs[0].topic == "42"  # type: ignore[union-attr]


def test_a_version_1_config_runs_with_klios_deprecation_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Klio's CLI warns of version 1 and runs the job; its config reads the same keys.
    with caplog.at_level(logging.WARNING, logger="klio"):
        config = parse_config({"job_name": "j", "version": 1})
    assert config.version == 1
    assert "Config version 1 is deprecated and will be removed" in caplog.text


@pytest.mark.parametrize("seconds", [float("inf"), float("nan")])
def test_a_time_limit_that_is_no_number_is_refused_by_field(seconds: float) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"job_name": "x", "job_config": {"timeout_seconds": seconds}})
    assert caught.value.errors == ["job_config.timeout_seconds: Input should be a finite number"]


def test_one_entrys_fields_where_a_list_of_entries_was_meant_is_said_so() -> None:
    entry = {"type": "file", "location": "./ids.txt"}
    with pytest.raises(ConfigError) as caught:
        io = {"events": {"inputs": entry}, "data": {"outputs": entry}}
        parse_config({"job_name": "j", "job_config": io})
    said = (
        "must be a list of entries, each starting with `- ` (`- type: file`), not the fields of"
        " one (type, location)"
    )
    assert caught.value.errors == [
        f"job_config.events.inputs: {said}",
        f"job_config.data.outputs: {said}",
    ]
    # entries keyed by name (Klio's own form after its preprocessing) are still taken
    config = parse_config({"job_name": "j", "job_config": {"events": {"inputs": {"file0": entry}}}})
    assert config.job_config.events.inputs[0].location == "./ids.txt"
