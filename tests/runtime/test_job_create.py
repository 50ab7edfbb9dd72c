"""`klio job create` with Klio's options: where the job's events and data are, its pipeline
options; each written where Klio's templates write it, and the job still valid."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from klio_runtime.cli import main
from klio_runtime.config import load_config


def create(job_dir: Path, *args: str) -> tuple[dict, str]:
    result = CliRunner().invoke(main, ["job", "create", "--job-dir", str(job_dir), *args])
    assert result.exit_code == 0, result.output
    load_config(job_dir / "klio-job.yaml")  # valid as written
    return yaml.safe_load((job_dir / "klio-job.yaml").read_text()), result.stderr


def test_a_batch_job_has_klios_data_section_with_checks_off(tmp_path: Path) -> None:
    config, _ = create(tmp_path, "--job-name", "my-job", "--use-defaults")
    assert config["job_config"]["data"] == {
        "inputs": [
            {"type": "file", "location": "./my-job-input", "skip_klio_existence_check": True}
        ],
        "outputs": [
            {"type": "file", "location": "./my-job-output", "skip_klio_existence_check": True}
        ],
    }


def test_klios_create_options_place_events_and_data_and_set_pipeline_options(
    tmp_path: Path,
) -> None:
    config, warned = create(
        tmp_path, "--job-name", "my-stream", "--job-type", "streaming",
        "--gcp-project", "my-project", "--input-topic", "projects/up/topics/parent-output",
        "--output-data-location", "gs://mine/out", "--num-workers", "3",
        "--experiments", "a,b", "--worker-image", "gcr.io/my-project/w",
        "--batch-data-input", "ids", "--python-version", "3.8",
    )  # fmt: skip
    events, data = config["job_config"]["events"], config["job_config"]["data"]
    assert events["inputs"] == [
        {
            "type": "pubsub",
            "topic": "projects/up/topics/parent-output",
            # Klio's: the input topic's name and the job's, in the job's own project
            "subscription": "projects/my-project/subscriptions/parent-output-my-stream",
        }
    ]
    assert events["outputs"] == [
        {"type": "pubsub", "topic": "projects/my-project/topics/my-stream-output"}
    ]
    # undecodable messages go there, not back to Pub/Sub forever
    assert config["job_config"]["dead_letter_topic"] == (
        "projects/my-project/topics/my-stream-dead-letter"
    )
    assert data == {
        "outputs": [{"type": "gcs", "location": "gs://mine/out", "skip_klio_existence_check": True}]
    }
    options = config["pipeline_options"]
    assert options["num_workers"] == 3 and options["experiments"] == ["a", "b"]
    assert options["worker_harness_container_image"] == "gcr.io/my-project/w"
    assert warned.splitlines() == [
        "ignored (not options of a streaming job): --batch-data-input",
        "ignored (Klio options this scaffold does not use): --python-version 3.8",
    ]


def test_a_batch_job_reads_the_elements_file_it_is_given(tmp_path: Path) -> None:
    config, _ = create(
        tmp_path, "--job-name", "b", "--batch-event-input", "ids.txt",
        "--batch-data-output", "gs://out-bucket/b",
    )  # fmt: skip
    assert config["job_config"]["events"]["inputs"][0]["location"] == "ids.txt"
    assert config["job_config"]["data"]["outputs"][0] == {
        "type": "gcs",
        "location": "gs://out-bucket/b",
        "skip_klio_existence_check": True,
    }
    assert not (tmp_path / "b_input_elements.txt").exists()  # nothing seeded: the user's file


def test_a_created_job_has_a_readme_and_an_existing_one_is_kept(tmp_path: Path) -> None:
    create(tmp_path / "new", "--job-name", "my-job")
    readme = (tmp_path / "new" / "README.md").read_text()
    assert readme.startswith("# my-job\n")
    assert "`./my-job_input_elements.txt`" in readme and "klio job run" in readme
    assert "{{" not in readme
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# the team's project\n")
    create(project, "--job-name", "other-job", "--job-type", "streaming", "--gcp-project", "p")
    assert (project / "README.md").read_text() == "# the team's project\n"
