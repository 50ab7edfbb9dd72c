"""Event lines, data existence, metrics registry, the runner's option mapping, and the Beam
Pub/Sub IO of a pipeline for Dataflow or Flink."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.testing.util import assert_that, equal_to
from klio_runtime.config import ConfigError, KlioConfig
from klio_runtime.context import klio_logger
from klio_runtime.io.events import (
    DeadLetter,
    ReadEventFile,
    WriteDeadLetters,
    WriteEventFile,
    decode_line,
    encode_line,
)
from klio_runtime.io.shards import (
    TextLines,
    _name_shards,
    _Shards,
    _temporary_directory,
    _WriteBundleFile,
)
from klio_runtime.io.storage import DataStore
from klio_runtime.message import element_id, new_message, parse, serialize
from klio_runtime.metrics import (
    METRICS_LOGGER,
    KlioMetrics,
    MetricsHub,
    process_hub,
    prometheus_name,
)
from klio_runtime.pipeline import build_pipeline
from klio_runtime.runner import (
    NOTHING_TO_UPDATE,
    beam_options,
    resolve_paths,
    run_job,
    wait_for_running,
)
from prometheus_client import CollectorRegistry

from tests.runtime.helpers import beam_pubsub_io, make_config


def test_event_line_is_an_id_or_a_base64_message() -> None:
    assert element_id(decode_line(b"track-0001\n")) == "track-0001"  # type: ignore[arg-type]
    pinged = decode_line(encode_line(new_message("abc", ping=True, force=True)).encode())
    assert pinged is not None and pinged.metadata.ping and pinged.metadata.force
    assert element_id(pinged) == "abc"
    assert decode_line(b"   \n") is None
    assert element_id(decode_line(b"AAAAAAAA")) == "AAAAAAAA"  # type: ignore[arg-type]
    with pytest.raises(UnicodeDecodeError):
        decode_line(b"\xff\xfe\n")


def _write_dead_letters(prefix: Path, letters: list[DeadLetter]) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = pipeline | beam.Create(letters) | WriteDeadLetters(str(prefix))


def test_dead_letters_are_json_lines_and_a_run_keeps_the_letters_of_the_one_before(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "dead-letter" / "events"
    _write_dead_letters(prefix, [])
    assert not prefix.parent.exists(), "no dead letters, no file and no directory"

    first = [DeadLetter("malformed_line", "ids.txt:7", "not UTF-8 text", "\ufffd")]
    second = [
        DeadLetter("invalid_element_id", "message", "'..' is not allowed", "../x"),
        DeadLetter("decode_error", "message", "not a KlioMessage", "b'x'"),
    ]
    _write_dead_letters(prefix, first)
    _write_dead_letters(prefix, second)
    files = sorted(prefix.parent.iterdir())
    assert all(f.name.startswith("events-") and f.suffix == ".jsonl" for f in files), files
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["element"] for r in records) == ["../x", "b'x'", "\ufffd"]
    assert {r["reason"] for r in records} == {
        "malformed_line",
        "invalid_element_id",
        "decode_error",
    }
    assert next(r for r in records if r["element"] == "../x")["where"] == "message"


def _write_event_file(prefix: Path, ids: list[str], **text_kwargs: Any) -> list[str]:
    messages = [serialize(new_message(element)) for element in ids]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create(messages) | WriteEventFile(str(prefix), **text_kwargs)
    return sorted(f.name for f in prefix.parent.iterdir())


def test_event_files_get_beams_shard_names_and_leave_nothing_hidden(tmp_path: Path) -> None:
    ids = [f"track-{i}" for i in range(5)]
    names = _write_event_file(tmp_path / "out" / "events", ids)
    assert names == ["events-00000-of-00001"], "no temporary file is left"
    assert sorted((tmp_path / "out" / names[0]).read_text().split()) == ids

    # nothing to write: one empty shard, as Beam's WriteToText
    assert _write_event_file(tmp_path / "none" / "events", []) == ["events-00000-of-00001"]
    assert (tmp_path / "none" / "events-00000-of-00001").read_text() == ""

    # WriteToText's own arguments: WriteToText writes
    assert _write_event_file(tmp_path / "txt" / "ids", ids[:2], file_name_suffix=".txt") == [
        "ids-00000-of-00001.txt"
    ]


def test_an_event_file_reads_back_every_element_it_was_written_with(tmp_path: Path) -> None:
    # an id that would not read back as itself from its line (a line break, not UTF-8, blank,
    # base64 of a message) is written as its base64 message, which the reader takes as well
    tricky = [
        b"plain-id",
        b"track123",  # base64-shaped, but reads back as itself: written as it is
        b"line1\nline2",
        b"cr\rid",
        b"\xff\xfebinary",
        b"   ",
        base64.b64encode(serialize(new_message("inner"))),
        "\ufeffbom-first".encode(),  # the reader drops a byte-order mark opening a file
    ]
    prefix = tmp_path / "out" / "events"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        # as Klio writes only data.element, a pinged, forced message's flags stay behind
        made = [serialize(new_message(e, ping=True, force=True)) for e in tricky]
        _ = p | beam.Create(made) | WriteEventFile(str(prefix))
    written = (prefix.parent / "events-00000-of-00001").read_bytes()
    assert written.count(b"\n") == len(tricky)
    assert b"plain-id\n" in written and b"track123\n" in written
    assert not any(line.startswith(b"\xef\xbb\xbf") for line in written.splitlines())
    with beam.Pipeline(runner=FnApiRunner()) as p:
        read = p | ReadEventFile(str(prefix) + "-*")
        elements = read["events"] | beam.Map(
            lambda data: (parse(data).data.element, parse(data).metadata.ping)
        )
        assert_that(elements, equal_to([(element, False) for element in tricky]))


def test_a_compressed_event_file_is_read_as_beams_text_reader_reads_it(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "ids.txt.gz", "wb") as handle:
        handle.write(b"\xef\xbb\xbfa\nb\n\nc\n")  # a byte-order mark is not part of the id
    with beam.Pipeline(runner=FnApiRunner()) as p:
        read = p | ReadEventFile(str(tmp_path / "ids.txt.gz"))
        elements = read["events"] | beam.Map(lambda data: parse(data).data.element)
        assert_that(elements, equal_to([b"a", b"b", b"c"]))


def test_windowed_messages_are_written_to_the_same_shards(tmp_path: Path) -> None:
    from apache_beam.transforms.window import FixedWindows, TimestampedValue

    ids = [f"track-{i}" for i in range(4)]
    prefix = tmp_path / "out" / "events"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (
            p
            | beam.Create([(serialize(new_message(e)), 100 * i) for i, e in enumerate(ids)])
            | beam.Map(lambda pair: TimestampedValue(*pair))
            | beam.WindowInto(FixedWindows(60))
            | WriteEventFile(str(prefix))
        )
    assert sorted(f.name for f in prefix.parent.iterdir()) == ["events-00000-of-00001"]
    assert sorted((prefix.parent / "events-00000-of-00001").read_text().split()) == ids


def test_each_run_writes_in_its_own_directory_and_removes_only_that(tmp_path: Path) -> None:
    # one built pipeline run twice at once (a Dataflow template): the run that ends first must
    # not take the other's files, nor remove them while that run still writes
    prefix = str(tmp_path / "events")
    first, second = _temporary_directory(None, prefix), _temporary_directory(None, prefix)
    assert first != second
    assert all(
        Path(d).parent == tmp_path and Path(d).name.startswith(".events-") for d in (first, second)
    )
    shards = _Shards(prefix, "", TextLines())
    writer = _WriteBundleFile(shards)
    paths = []
    for directory in (first, second):
        writer.start_bundle()
        writer.process("track-1", directory)
        paths += [out.value for out in writer.finish_bundle()]
    _name_shards(None, shards, first, paths[:1])
    assert Path(paths[1]).read_text() == "track-1\n" and not Path(first).exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        Path(second).name,
        "events-00000-of-00001",
    ]


def test_the_file_of_a_failed_bundle_is_closed_and_removed_with_its_empty_directory(
    tmp_path: Path,
) -> None:
    writer = _WriteBundleFile(_Shards(str(tmp_path / "events"), "", TextLines()))
    temporary = tmp_path / ".events-run.tmp"
    writer.start_bundle()
    writer.process("track-1", f"{temporary}/")
    handle = writer._handle
    assert handle is not None and not handle.closed
    (temporary / "a-bundle-that-ended").write_text("track-0\n")
    writer.start_bundle()  # the bundle above failed: finish_bundle never ran
    assert handle.closed
    # its file is gone; the directory stays for the other bundle's file
    assert [f.name for f in temporary.iterdir()] == ["a-bundle-that-ended"]
    (temporary / "a-bundle-that-ended").unlink()
    writer.process("track-2", f"{temporary}/")
    writer.teardown()  # the run failed (or was stopped) in this bundle: nothing is left behind
    assert writer._handle is None
    assert list(tmp_path.iterdir()) == []


def test_each_bundles_file_becomes_one_shard_and_a_retry_renames_nothing_twice(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run[1]"  # a glob character: the clean-up must not read it as one
    temporary = out / ".events-run.tmp"
    temporary.mkdir(parents=True)
    written = []
    for number in range(3):
        path = temporary / f"bundle-{number}"
        path.write_text(f"track-{number}\n")
        written.append(str(path))
    (temporary / "failed-attempt").write_text("track-0\n")  # a bundle attempt that failed
    shards = _Shards(str(out / "events"), "", TextLines())
    finals = _name_shards(None, shards, f"{temporary}/", written)
    assert [Path(f).name for f in finals] == [f"events-0000{i}-of-00003" for i in range(3)]
    assert sorted(f.name for f in out.iterdir()) == [Path(f).name for f in finals]
    assert sorted(Path(f).read_text() for f in finals) == [f"track-{i}\n" for i in range(3)]
    # the runner may run the step again (a lost work item): the shards stay as they are
    assert _name_shards(None, shards, f"{temporary}/", written) == finals
    assert sorted(Path(f).read_text() for f in finals) == [f"track-{i}\n" for i in range(3)]


def test_local_existence_is_one_stat_a_path_not_a_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "a" / "sub").mkdir()
    # a data directory may hold millions of files: a batch must not cost a listing of them all
    monkeypatch.setattr(os, "scandir", lambda *_: pytest.fail("listed a directory"))
    monkeypatch.setattr(os, "listdir", lambda *_: pytest.fail("listed a directory"))
    paths = [
        f"{tmp_path}/a/x.txt",
        f"{tmp_path}/a/y.txt",
        f"{tmp_path}/a/sub",
        f"{tmp_path}/nowhere/z.txt",
    ]
    assert DataStore().exists_many(paths) == {
        paths[0]: True,
        paths[1]: False,
        paths[2]: False,
        paths[3]: False,
    }


def test_gcs_existence_lists_a_small_prefix_and_asks_for_each_object_under_a_large_one(
    gcs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]
    from klio_runtime.io import storage as data_storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket("exists-many")
    for name in ("small/a.txt", "small/sub/b.txt", *(f"large/{i}.txt" for i in range(6))):
        bucket.blob(name).upload_from_string(b"x")
    store = DataStore()
    listings: list[int | None] = []
    real_list = store._gcs().list_blobs

    def counted_list(*args: Any, **kwargs: Any) -> Any:
        listings.append(kwargs.get("max_results"))
        return real_list(*args, **kwargs)

    monkeypatch.setattr(store._gcs(), "list_blobs", counted_list)
    monkeypatch.setattr(data_storage, "GCS_LISTING_LIMIT", 4)
    small = ["gs://exists-many/small/a.txt", "gs://exists-many/small/sub", "gs://exists-many/small/c"]
    assert store.exists_many(small) == dict(zip(small, [True, False, False], strict=True))
    # six objects under large/: more than the listing stops at (4, or twice the batch); 5.txt
    # comes after where it stopped, so only asking for it finds it
    large = ["gs://exists-many/large/5.txt", "gs://exists-many/large/9.txt"]
    assert store.exists_many(large) == {large[0]: True, large[1]: False}
    assert listings == [7, 5], "one listing each, stopped past the limit"
    # a prefix found large is not listed again
    assert store.exists_many(large) == {large[0]: True, large[1]: False}
    assert listings == [7, 5]
    # a bucket or a "directory" is not an object
    assert store.exists_many(["gs://exists-many", "gs://exists-many/large/"]) == {
        "gs://exists-many": False,
        "gs://exists-many/large/": False,
    }


def test_a_missing_bucket_holds_nothing(gcs_emulator: str) -> None:
    """As Beam's GcsIO.exists says: the message is not found, the pipeline goes on."""
    path = "gs://no-such-bucket/in/a.txt"
    assert DataStore().exists_many([path]) == {path: False}


def test_emulator_credentials_name_a_project_and_go_with_the_process(tmp_path: Path) -> None:
    """Fake credentials for the GCS emulator: google.auth finds a project (no "No project ID"
    warning), and the file is removed when the process ends (each run used to leave one)."""
    script = (
        "import logging, google.auth\n"
        "from klio_runtime.io.gcs import ensure_emulator_credentials\n"
        "logging.basicConfig()\n"
        "ensure_emulator_credentials()\n"
        "import os; print(os.environ['GOOGLE_APPLICATION_CREDENTIALS'])\n"
        "print(google.auth.default()[1])\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in {"GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"}}
    env |= {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1", "GCE_METADATA_HOST": "127.0.0.1:1",
            "TMPDIR": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    path, project = done.stdout.split()
    assert Path(path).parent == tmp_path
    assert project == "klio-local"
    assert "No project ID" not in done.stderr
    assert not list(tmp_path.glob("klio-emulator-credentials-*")), "left behind"


def test_read_write_bytes_create_directories(tmp_path: Path) -> None:
    store = DataStore()
    target = f"{tmp_path}/deep/er/file.bin"
    store.write_bytes(target, b"\x00data")
    assert store.read_bytes(target) == b"\x00data"


def test_metrics_reach_prometheus_under_standard_and_prefixed_names() -> None:
    hub = MetricsHub(CollectorRegistry())
    metrics = KlioMetrics("my-job", hub=hub)
    metrics.received(3)
    assert hub.value("klio_messages_received_total", job="my-job") == 0  # batched
    metrics.flush()
    metrics.dropped("run_error", "e1")
    metrics.counter("kmsg-done", transform="Upper").inc(2)
    metrics.gauge("queue").set(5)
    timer = metrics.timer("work", transform="Upper")
    with timer:
        time.sleep(0.01)

    @timer
    def twice() -> int:
        return 2

    assert twice() == 2
    assert hub.value("klio_messages_received_total", job="my-job") == 3
    assert hub.value("klio_messages_dropped_total", job="my-job", reason="run_error") == 1
    assert hub.value("my_job_kmsg_done_total", transform="Upper") == 2
    assert hub.value("my_job_queue") == 5
    assert hub.value("my_job_work_seconds_count", transform="Upper") == 2
    assert hub.value("my_job_work_seconds_sum", transform="Upper") >= 0.01
    assert prometheus_name("9-lives.x") == "_9_lives_x"


def test_a_metrics_value_argument_is_its_starting_value_shown_not_recorded() -> None:
    # Klio's metrics client: counter(name, value=2) made per element counts only its inc()s;
    # the object shows its name, transform and last value, as Klio's dispatchers do, and asked
    # for again it is the same object, as Klio's registry keeps it (value as last recorded)
    hub = MetricsHub(CollectorRegistry())
    metrics = KlioMetrics("my-job", hub=hub)
    first = metrics.counter("foo", value=2, transform="T")
    assert (first.name, first.transform, first.value) == ("foo", "T", 2)
    first.inc()
    assert first.value == 1
    counter = metrics.counter("foo", value=2, transform="T")
    assert counter is first and counter.value == 1
    counter.inc(value=1)  # Klio's keyword
    gauge = metrics.gauge("level", value=7)
    assert hub.value("my_job_level") == 0 and gauge.value == 7
    gauge.set(3)
    timer = metrics.timer("took", value=0, timer_unit="ms")
    timer.record(0.5)
    assert hub.value("my_job_foo_total", transform="T") == 2
    assert (hub.value("my_job_level"), gauge.value, timer.value) == (3, 3, 500)


def test_a_metric_name_used_with_other_labels_or_type_still_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Klio's metrics docs count "my-counter" with transform= and again with tags=. Klio keys a
    # metric by type, name and transform, so both count; Prometheus has one label set per name.
    hub = MetricsHub(CollectorRegistry())
    metrics = KlioMetrics("my-job", hub=hub)
    metrics.counter("my-counter", transform="MyTransform").inc()
    metrics.counter("my-counter", tags={"model-version": "v1"}).inc(2)
    metrics.counter("my-counter", tags={"model-version": "v2"}).inc(3)  # warned once
    metrics.gauge("my-counter").set(7)  # another type: counted in Beam, not exported
    metrics.gauge("my-counter-total", transform="T").set(1)  # its name is one of the counter's
    assert hub.value("my_job_my_counter_total", transform="MyTransform") == 1
    assert hub.value("my_job_my_counter_total", transform="") == 5
    assert hub.value("my_job_my_counter") == 0 and hub.value("my_job_my_counter_total") == 0
    assert caplog.messages == [
        "metric 'my_job_my_counter' was first used with labels ['transform'], now with "
        "['model_version']: recorded in Prometheus under the first (without ['model_version'])",
        "metric 'my_job_my_counter' is a Counter already: this Gauge is not exported to Prometheus",
        "metric 'my_job_my_counter_total' is not exported to Prometheus: Duplicated timeseries "
        "in CollectorRegistry: {'my_job_my_counter_total'}",
    ]


def test_metrics_prefix_from_job_config() -> None:
    hub = MetricsHub(CollectorRegistry())
    metrics = KlioMetrics.from_settings("job", {"prefix": "team.audio"})
    metrics.hub = hub
    metrics.counter("seen").inc()
    assert hub.value("team_audio_seen_total") == 1


def test_direct_runners_map_to_fn_api_runner_and_dataflow_options_stay() -> None:
    config = make_config(
        pipeline_options={
            "runner": "DirectRunner",
            "streaming": False,
            "project": "p",
            "worker_harness_container_image": "img:1",
            "setup_file": "setup.py",
            "experiments": ["beam_fn_api", "use_runner_v2"],
        }
    )
    opts = beam_options(config).get_all_options()
    assert opts["runner"] == "FnApiRunner"
    assert opts["project"] == "p" and opts["experiments"] == ["beam_fn_api", "use_runner_v2"]
    assert opts["setup_file"] == "setup.py"
    # Klio's worker_harness_container_image under Beam's current name (no legacy-flag warning)
    assert opts["sdk_container_image"] == "img:1" and opts["worker_harness_container_image"] is None
    gke = make_config(pipeline_options={"runner": "DirectGKERunner", "streaming": False})
    assert beam_options(gke).get_all_options()["runner"] == "FnApiRunner"
    fnapi = make_config(pipeline_options={"streaming": False, "experiments": ["beam_fn_api"]})
    assert (
        beam_options(fnapi, runner="DataflowRunner").get_all_options()["runner"]
        == "DataflowRunner"
    )
    flink = beam_options(fnapi, runner="FlinkRunner", extra={"flink_master": "host:8081"})
    assert flink.get_all_options()["flink_master"] == "host:8081"


def test_a_submitted_pipeline_gets_klios_packaging_image_and_dataflow_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Klio's exec (KlioPipeline): setup.py by absolute path (Beam's stager cannot chdir into
    # the directory of a bare "setup.py"), no custom image beside it, the image tagged with
    # --image-tag under beam_fn_api, Klio's worker defaults on Dataflow
    monkeypatch.chdir(tmp_path)
    packaged = make_config(
        pipeline_options={
            "streaming": False,
            "setup_file": "setup.py",
            "worker_harness_container_image": "gcr.io/p/worker",
            "worker_disk_type": "pd-ssd",
            "project": "p",
        }
    )
    opts = beam_options(packaged, runner="DataflowRunner").get_all_options()
    assert opts["setup_file"] == str(tmp_path / "setup.py")
    assert opts["sdk_container_image"] is None
    assert (opts["region"], opts["num_workers"], opts["autoscaling_algorithm"]) == (
        "europe-west1",
        2,
        "NONE",
    )
    assert (opts["disk_size_gb"], opts["machine_type"]) == (32, "n1-standard-2")
    assert opts["disk_type"] == (
        "compute.googleapis.com/projects/p/regions/europe-west1/diskTypes/pd-ssd"
    )
    imaged = make_config(
        pipeline_options={
            "streaming": False,
            "experiments": ["beam_fn_api"],
            "worker_harness_container_image": "localhost:5000/p/worker:old",
            "region": "us-east1",
        }
    )
    opts = beam_options(imaged, runner="DataflowRunner", image_tag="abc123").get_all_options()
    assert opts["sdk_container_image"] == "localhost:5000/p/worker:abc123"
    assert opts["region"] == "us-east1"
    # Flink gets no Dataflow defaults; a local run is left as written
    flink = beam_options(imaged, runner="FlinkRunner", image_tag="abc123").get_all_options()
    assert flink["sdk_container_image"] == "localhost:5000/p/worker:abc123"
    assert flink["num_workers"] is None
    assert beam_options(packaged).get_all_options()["setup_file"] == "setup.py"
    both = make_config(
        pipeline_options={
            "streaming": False,
            "experiments": ["beam_fn_api"],
            "requirements_file": "job-requirements.txt",
        }
    )
    with pytest.raises(ConfigError, match=r"pipeline_options\.requirements_file: not with the"):
        beam_options(both, runner="DataflowRunner")


def test_relative_locations_resolve_against_the_job_dir(tmp_path: Path) -> None:
    config = make_config(
        {
            "events": {
                "inputs": [
                    {"type": "file", "location": "./ids.txt"},
                    {"type": "avro", "file_pattern": "av/*.avro"},
                    {"type": "avro", "location": "av2", "file_pattern": "x.avro"},
                ],
                "outputs": [
                    {"type": "file", "location": "gs://b/out"},
                    {"type": "avro", "location": "./out/ev"},
                ],
            },
            "data": {"inputs": [{"type": "file", "location": "data"}]},
        },
        pipeline_options={"streaming": False, "setup_file": "setup.py"},
    )
    resolved = resolve_paths(config, tmp_path)
    avro_in, avro_in_joined = resolved.job_config.events.inputs[1:]
    assert avro_in.pattern == str(tmp_path / "av" / "*.avro")  # type: ignore[union-attr]
    assert avro_in_joined.pattern == f"{tmp_path}/av2/x.avro"  # type: ignore[union-attr]
    assert resolved.job_config.events.outputs[1].prefix == str(  # type: ignore[union-attr]
        tmp_path / "out" / "ev"
    )
    assert resolved.job_config.events.inputs[0].location == str(tmp_path / "ids.txt")
    assert resolved.job_config.events.outputs[0].location == "gs://b/out"
    assert resolved.job_config.data.inputs[0].location == str(tmp_path / "data")
    assert resolved.pipeline_options.setup_file == str(tmp_path / "setup.py")
    assert config.job_config.events.inputs[0].location == "./ids.txt"


def test_relative_locations_stay_as_written_when_run_in_the_job_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as Klio's quickstart shows them: "Received 'hello' from file './..._input_elements.txt'"
    monkeypatch.chdir(tmp_path)
    config = make_config({"events": {"inputs": [{"type": "file", "location": "./ids.txt"}]}})
    assert resolve_paths(config, tmp_path).job_config.events.inputs[0].location == "./ids.txt"


def test_metrics_registry_served_over_http() -> None:
    import socket
    import urllib.request

    hub = MetricsHub(CollectorRegistry())
    KlioMetrics("served-job", hub=hub).dropped("timeout")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server, _thread = hub.serve(port, addr="127.0.0.1")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        server.shutdown()
    assert b'klio_messages_dropped_total{job="served-job",reason="timeout"} 1.0' in body


def _pubsub_config(**inputs: str) -> KlioConfig:
    return make_config(
        {
            "events": {
                "inputs": [{"type": "pubsub", **inputs}],
                "outputs": [{"type": "pubsub", "topic": "out"}],
            },
            "dead_letter_topic": "dead",
        },
        pipeline_options={"project": "my-project", "streaming": False},
    )


def _pubsub_io(config: KlioConfig) -> dict[str, Any]:
    options = beam_options(config, "FlinkRunner")
    return beam_pubsub_io(build_pipeline(config, lambda pcoll, _: pcoll, options))


def test_pubsub_event_io_becomes_beams_own_source_and_sinks() -> None:
    config = _pubsub_config(topic="projects/other-project/topics/events", subscription="subs")
    found = _pubsub_io(config)
    # the subscription when given (as Klio reads), bare ids in the job's project
    assert found["read"] == [("subscription", "projects/my-project/subscriptions/subs")]
    assert sorted(found["write"]) == [
        "projects/my-project/topics/dead",
        "projects/my-project/topics/out",
    ]
    assert beam_options(config, "FlinkRunner").get_all_options()["streaming"] is True

    events = "projects/other-project/topics/events"
    assert _pubsub_io(_pubsub_config(topic=events))["read"] == [("topic", events)]


def test_pubsub_paths_of_the_wrong_kind_are_named_by_field() -> None:
    with pytest.raises(ConfigError) as err:
        _pubsub_io(_pubsub_config(subscription="projects/p/topics/not-a-subscription"))
    assert err.value.errors[0].startswith("job_config.events.inputs[0].subscription: ")
    bad_out = _pubsub_config(subscription="sub")
    bad_out.job_config.events.outputs[0].topic = "projects/p/subscriptions/s"  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as err:
        _pubsub_io(bad_out)
    assert err.value.errors[0].startswith("job_config.events.outputs[0].topic: ")


def test_pubsub_inputs_on_the_local_batch_runner_say_what_runs_them() -> None:
    with pytest.raises(ValueError, match="klio job run` or `klio worker`"):
        beam_options(_pubsub_config(subscription="sub"))


def test_waiting_for_a_submitted_pipeline_to_run_stops_at_running_or_an_end() -> None:
    wait_for_running(PipelineResult(PipelineState.RUNNING), timeout=1, poll_seconds=0.01)
    with pytest.raises(RuntimeError, match=r"ended \(FAILED\) before it was running"):
        wait_for_running(PipelineResult(PipelineState.FAILED), timeout=1, poll_seconds=0.01)
    with pytest.raises(RuntimeError, match="PENDING, not running, after 0 s"):
        wait_for_running(PipelineResult(PipelineState.PENDING), timeout=0.05, poll_seconds=0.01)


def test_the_job_name_names_the_beam_job_unless_the_options_do() -> None:
    assert beam_options(make_config()).get_all_options()["job_name"].startswith("t-")
    named = make_config(pipeline_options={"streaming": False, "job_name": "given"})
    assert beam_options(named).get_all_options()["job_name"] == "given"


def test_update_with_no_running_job_submits_a_new_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Klio's rule for Dataflow's ``update``: Beam's DataflowRunner refuses an update when no job
    of that name runs (its message, here from a stand-in for Dataflow's answer)."""
    import apache_beam as beam

    attempts: list[object] = []
    real_run = beam.Pipeline.run

    def run(pipeline: beam.Pipeline, *args: Any, **kwargs: Any) -> Any:
        update = pipeline.options.get_all_options().get("update")
        attempts.append(update)
        if update:
            raise ValueError(f"{NOTHING_TO_UPDATE} 'job'")
        return real_run(pipeline, *args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "run", run)
    (tmp_path / "ids.txt").write_text("a\nb\n")
    ids = str(tmp_path / "ids.txt")
    config = make_config({"events": {"inputs": [{"type": "file", "location": ids}]}})
    summary = run_job(config, lambda pcoll, _: pcoll, extra_options={"update": True})
    assert attempts == [True, False] and summary.state == "DONE" and summary.received == 2


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def metrics_log(level: int) -> Iterator[list[logging.LogRecord]]:
    """What ``klio.metrics`` logs meanwhile, its level set as a job that wants to see it sets it
    (setLevel clears the logger's cache)."""
    handler = _Records()
    logger = logging.getLogger(METRICS_LOGGER)
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(level)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def test_klio_tags_and_the_metrics_logger_client() -> None:
    with metrics_log(logging.DEBUG) as records:
        metrics = KlioMetrics.from_settings("tags-job", {})
        metrics.counter("my-counter", transform="MyTransform", tags={"model-version": "v1"}).inc()
        in_ms = {"logger": {"level": "info", "timer_unit": "ms"}}
        timed = KlioMetrics.from_settings("tags-job", in_ms)
        timed.timer("my-timer", transform="T").record(0.5)
        # Klio's start()/stop(), and a unit given to the timer itself: logged in that unit
        own_unit = timed.timer("us-timer", timer_unit="microseconds", transform="T")
        own_unit.stop()  # before start(): Klio's warning, nothing recorded
        own_unit.start()
        own_unit.stop()
        KlioMetrics.from_settings("tags-job", {"logger": False}).counter("quiet").inc()
    shown = [(r.levelname, r.getMessage()) for r in records]
    stopped = shown.pop()
    assert stopped[0] == "INFO" and stopped[1].startswith("[us-timer] value: ")
    assert stopped[1].endswith("tags: {'metric_type': 'timer', 'unit': 'us'}")
    assert shown == [
        (
            "DEBUG",
            "[my-counter] value: 1 transform: 'MyTransform' "
            "tags: {'model-version': 'v1', 'metric_type': 'counter'}",
        ),
        (
            "INFO",
            "[my-timer] value: 500.0 transform: 'T' tags: {'metric_type': 'timer', 'unit': 'ms'}",
        ),
        ("WARNING", "Timer timer_us-timer_T cannot be stopped before started."),  # Klio's key
    ]
    # Klio's tags are labels, one each (not one label holding the dict)
    value = process_hub().value(
        "tags_job_my_counter_total", model_version="v1", transform="MyTransform"
    )
    assert value == 1


def test_a_timer_unit_klio_does_not_know_is_the_configured_one() -> None:
    # Klio's clients: "Instead of erroring out, we'll just use the default"
    with metrics_log(logging.INFO) as records:
        timed = KlioMetrics.from_settings(
            "odd-job", {"logger": {"level": "info", "timer_unit": "ms"}}
        )
        timed.timer("odd-timer", timer_unit="fortnights", transform="T").record(0.25)
    assert [(r.levelname, r.getMessage()) for r in records] == [
        (
            "WARNING",
            "metrics.timer('odd-timer'): timer_unit: 'fortnights' is none of ['ms', 'ns', 's', "
            "'us']; the default unit is used instead, as in Klio",
        ),
        (
            "INFO",
            "[odd-timer] value: 250.0 transform: 'T' tags: {'metric_type': 'timer', 'unit': 'ms'}",
        ),
    ]


def test_klio_records_reach_the_root_loggers_other_handlers_once() -> None:
    # As under Klio, where the klio logger propagates: a handler a job puts on the root logger
    # (Cloud Logging's, a file) gets the job's records; a console one would print them twice.
    elsewhere = _Records()
    logging.root.addHandler(elsewhere)
    try:
        klio_logger().warning("to the root's handlers %s", "too")
    finally:
        logging.root.removeHandler(elsewhere)
    assert [r.getMessage() for r in elsewhere.records] == ["to the root's handlers too"]
    assert elsewhere.records[0].element_id == "-"  # outside an element


def test_reads_and_writes_are_logged_as_klios_io_counters_when_klio_metrics_logs(
    tmp_path: Path,
) -> None:
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    config = make_config(
        {
            "events": {
                "inputs": [{"type": "file", "location": str(tmp_path / "ids.txt")}],
                "outputs": [{"type": "file", "location": str(tmp_path / "out" / "ids")}],
            }
        }
    )
    with metrics_log(logging.DEBUG) as records:
        run_job(config, lambda pcoll, _config: pcoll)
    shown = [r.getMessage() for r in records]
    tags = "tags: {'metric_type': 'counter'}"
    assert shown.count(f"[kmsg-read] value: 1 transform: 'KlioReadFromText' {tags}") == 3
    assert shown.count(f"[kmsg-write] value: 1 transform: 'KlioWriteToText' {tags}") == 3
