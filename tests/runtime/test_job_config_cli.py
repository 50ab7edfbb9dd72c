"""`klio job config show|get|set|unset` on a job directory (Klio's commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from klio_runtime.cli import main
from klio_runtime.config import load_config

CONFIG = """\
# the job's own comment
version: 2
job_name: tracks
pipeline_options:
  project: my-project
  streaming: false
job_config:
  my_threshold: 0.5
  events:
    inputs:
      - type: file
        location: ids.txt
      - type: file
        location: more.txt
  data:
    outputs:
      - type: gcs
        location: gs://bucket/out
"""


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "klio-job.yaml").write_text(CONFIG)
    return tmp_path


def klio(job: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["job", "config", *args, "--job-dir", str(job)])


def test_show_prints_the_effective_config_in_klio_order(job: Path) -> None:
    done = klio(job, "show")

    assert done.exit_code == 0, done.output
    shown = yaml.safe_load(done.stdout)
    assert list(shown) == ["version", "job_name", "pipeline_options", "job_config"]
    assert shown["job_config"]["my_threshold"] == 0.5  # the job's own keys too
    assert shown["job_config"]["events"]["inputs"][1]["location"] == "more.txt"
    assert shown["job_config"]["data"]["outputs"][0]["skip_klio_existence_check"] is False


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("pipeline_options.streaming", False),
        ("job_config.my_threshold", 0.5),
        ("job_config.events.inputs.file1.location", "more.txt"),  # Klio's IO names
        ("job_config.events.inputs[1].location", "more.txt"),
        ("job_config.events.inputs.1.location", "more.txt"),  # Klio's own path spelling
        ("job_config.data.outputs.gcs0.location", "gs://bucket/out"),
    ],
)
def test_get_prints_one_value_as_json(job: Path, path: str, value: object) -> None:
    done = klio(job, "get", path)

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == value


def test_get_of_a_known_setting_the_file_leaves_unset_is_null(job: Path) -> None:
    for path in ("pipeline_options.region", "job_config.thread_pool_size"):
        done = klio(job, "get", path)
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout) is None


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("pipeline_options.no_such_option", "pipeline_options.no_such_option: not set"),
        ("job_config.events.inputs.pubsub0", "no such item (named here: file0, file1)"),
        ("job_config.events.inputs[5]", "no such item (the list has 2)"),
        ("job_config..x", "cannot parse"),
    ],
)
def test_get_of_a_missing_value_exits_2_naming_it(job: Path, path: str, says: str) -> None:
    done = klio(job, "get", path)

    assert done.exit_code == 2
    assert says in done.stderr


def test_set_writes_typed_values_and_keeps_the_config_valid(job: Path) -> None:
    done = klio(
        job,
        "set",
        "pipeline_options.num_workers=3",
        "job_config.events.inputs.file1.location=other.txt",
        "pipeline_options.experiments=[beam_fn_api]",
        "job_config.model_version=2",  # a custom key: typed too, as Klio's `config set` types it
    )

    assert done.exit_code == 0, done.output
    config = load_config(job / "klio-job.yaml")
    assert config.pipeline_options.num_workers == 3
    assert config.job_config.events.inputs[1].location == "other.txt"
    assert yaml.safe_load((job / "klio-job.yaml").read_text())["job_config"]["model_version"] == 2
    assert yaml.safe_load((job / "klio-job.yaml").read_text())["pipeline_options"][
        "experiments"
    ] == ["beam_fn_api"]
    # the file stays the user's own: no defaults written into it
    assert "skip_klio_read" not in (job / "klio-job.yaml").read_text()


def test_an_edit_that_breaks_the_config_is_refused_and_the_file_kept(job: Path) -> None:
    done = klio(job, "set", "job_config.events.inputs[0].type=carrier-pigeon")

    assert done.exit_code == 2
    assert "job_config.events.inputs[0]" in done.stderr
    assert (job / "klio-job.yaml").read_text() == CONFIG


def test_unset_removes_a_value_or_says_there_was_none(job: Path) -> None:
    removed = klio(job, "unset", "pipeline_options.project")
    again = klio(job, "unset", "pipeline_options.project")
    item = klio(job, "unset", "job_config.events.inputs.file1")

    assert removed.exit_code == 0, removed.output
    assert again.exit_code == 0
    assert "pipeline_options.project: not set" in again.stderr
    assert item.exit_code == 0, item.output
    data = yaml.safe_load((job / "klio-job.yaml").read_text())
    assert "project" not in data["pipeline_options"]
    assert [i["location"] for i in data["job_config"]["events"]["inputs"]] == ["ids.txt"]


def test_unset_of_a_required_key_is_refused(job: Path) -> None:
    done = klio(job, "unset", "job_name")

    assert done.exit_code == 2
    assert "job_name" in done.stderr
    assert (job / "klio-job.yaml").read_text() == CONFIG


def test_set_keeps_unplain_values_as_text_and_appends_one_past_the_end(job: Path) -> None:
    done = klio(
        job,
        "set",
        "job_config.released=2021-01-01",
        "job_config.answer=no",
        "job_config.mode=0755",
        "job_config.events.inputs.2.type=file",
        "job_config.events.inputs.2.location=third.txt",
    )

    assert done.exit_code == 0, done.output
    for path, value in [
        ("job_config.released", "2021-01-01"),
        ("job_config.answer", "no"),
        ("job_config.mode", "0755"),
        ("job_config.events.inputs.file2.location", "third.txt"),
    ]:
        got = klio(job, "get", path)
        assert got.exit_code == 0, got.output
        assert json.loads(got.stdout) == value


KLIO_CUSTOM_IO = """\
version: 2
job_name: read-custom
pipeline_options:
  project: my-project
job_config:
  events:
    inputs:
      - type: custom
        table: my-project:dataset.table
"""


def test_a_config_with_io_this_runtime_does_not_run_can_still_be_read_and_edited(
    tmp_path: Path,
) -> None:
    (tmp_path / "klio-job.yaml").write_text(KLIO_CUSTOM_IO)

    shown = klio(tmp_path, "show")
    got = klio(tmp_path, "get", "pipeline_options.project")
    edited = klio(tmp_path, "set", "pipeline_options.project=other-project")
    broken = klio(tmp_path, "set", "version=7")

    assert shown.exit_code == 0, shown.output
    assert "is not valid here" in shown.stderr
    assert yaml.safe_load(shown.stdout)["job_config"]["events"]["inputs"][0]["type"] == "custom"
    assert got.exit_code == 0 and json.loads(got.stdout) == "my-project"
    assert edited.exit_code == 0, edited.output
    data = yaml.safe_load((tmp_path / "klio-job.yaml").read_text())
    assert data["pipeline_options"]["project"] == "other-project"
    assert broken.exit_code == 2
    assert "version" in broken.stderr
    assert yaml.safe_load((tmp_path / "klio-job.yaml").read_text())["version"] == 2
