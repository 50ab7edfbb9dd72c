"""`klio job verify --create-resources`: the job's topics, subscriptions and buckets, listed from
the config and made on the Pub/Sub and GCS emulators."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from klio_runtime.cli import main
from klio_runtime.config import parse_config
from klio_runtime.io.gcs import storage_client
from klio_runtime.io.resources import Resource, job_resources

P = "projects/klio-local"


def test_the_resources_a_config_names() -> None:
    config = parse_config(
        {
            "job_name": "j",
            "pipeline_options": {
                "project": "klio-local",
                # Dataflow's files: their buckets are checked as Klio's verify checks them
                "staging_location": "gs://dataflow-tmp/staging",
                "temp_location": "gs://dataflow-tmp/temp",
            },
            "job_config": {
                "dead_letter_topic": "j-dead",
                "events": {
                    "inputs": [
                        {"type": "pubsub", "topic": "j-in", "subscription": "j-in-j"},
                        {"type": "file", "location": "gs://events-bucket/ids.txt"},
                    ],
                    "outputs": [{"type": "pubsub", "topic": "j-out"}],
                },
                "data": {
                    "inputs": [{"type": "gcs", "location": "gs://data-bucket/in"}],
                    "outputs": [
                        {"type": "gcs", "location": "gs://data-bucket/out"},
                        {"type": "file", "location": "/local/out"},
                        # a `file` entry reads and writes gs:// as well: its bucket too
                        {"type": "file", "location": "gs://file-bucket/out"},
                    ],
                },
            },
        }
    )
    assert job_resources(config) == [
        Resource("topic", f"{P}/topics/j-in"),
        Resource("subscription", f"{P}/subscriptions/j-in-j", f"{P}/topics/j-in"),
        Resource("topic", f"{P}/topics/j-out"),
        Resource("topic", f"{P}/topics/j-dead"),
        Resource("bucket", "events-bucket"),
        Resource("bucket", "data-bucket"),
        Resource("bucket", "file-bucket"),
        Resource("bucket", "dataflow-tmp"),
    ]


@pytest.mark.slow
def test_create_resources_makes_what_is_missing_once(
    pubsub_clean: str, gcs_emulator: str, tmp_path: Path
) -> None:
    name = f"res-{uuid.uuid4().hex[:8]}"
    job = tmp_path / name
    runner = CliRunner()
    created = runner.invoke(main, ["job", "create", "--job-name", name, "--output", str(job),
                                   "--gcp-project", "klio-local", "--job-type", "streaming"])
    assert created.exit_code == 0, created.output
    bucket = f"{name}-data"
    extra = ["-O", f"job_config.data.outputs=[{{type: gcs, location: 'gs://{bucket}/out'}}]"]

    # As Klio's: verify looks for them, and names each that is missing (exit 1)
    looked = runner.invoke(main, ["job", "verify", "-j", str(job), *extra])
    assert looked.exit_code == 1, looked.output
    assert sorted(line for line in looked.stderr.splitlines() if "does not exist" in line) == [
        f"error: bucket {bucket} does not exist (--create-resources makes it)",
        f"error: subscription {P}/subscriptions/{name}-input-{name} does not exist "
        "(--create-resources makes it)",
        *(f"error: topic {P}/topics/{name}-{t} does not exist (--create-resources makes it)"
          for t in ("dead-letter", "input", "output")),
    ]
    first = runner.invoke(main, ["job", "verify", "-j", str(job), "--create-resources", *extra])
    assert first.exit_code == 0, first.output
    made = [line for line in first.stdout.splitlines() if line.startswith("created: ")]
    assert made == [
        f"created: topic {P}/topics/{name}-input",
        f"created: subscription {P}/subscriptions/{name}-input-{name}",
        f"created: topic {P}/topics/{name}-output",
        f"created: topic {P}/topics/{name}-dead-letter",
        f"created: bucket {bucket}",
    ]
    subscription = pubsub_v1.SubscriberClient().get_subscription(
        request={"subscription": f"{P}/subscriptions/{name}-input-{name}"}
    )
    assert subscription.topic == f"{P}/topics/{name}-input"
    assert storage_client().lookup_bucket(bucket) is not None

    again = runner.invoke(main, ["job", "verify", "-j", str(job), "--create-resources", *extra])
    assert again.exit_code == 0 and "created" not in again.stdout
    assert again.stdout.count("exists: ") == 5
    checked = runner.invoke(main, ["job", "verify", "-j", str(job), *extra])
    assert checked.exit_code == 0 and "is valid" in checked.stdout, checked.output
    assert checked.stderr == ""
    for topic in ("input", "output"):
        with pytest.raises(gexc.AlreadyExists):
            pubsub_v1.PublisherClient().create_topic(name=f"{P}/topics/{name}-{topic}")


@pytest.mark.slow
def test_create_with_create_resources_makes_a_streaming_jobs_topics(
    pubsub_clean: str, tmp_path: Path
) -> None:
    """Klio's streaming quickstart: `klio job create ... --create-resources --use-defaults`
    makes the job's topics and subscription; on the emulator no project needs naming."""
    name = f"qs-{uuid.uuid4().hex[:8]}"
    created = CliRunner().invoke(
        main,
        ["job", "create", "--job-name", name, "--job-type", "streaming", "--output",
         str(tmp_path), "--create-resources", "--use-defaults"],
    )
    assert created.exit_code == 0, created.output
    assert f"created: subscription {P}/subscriptions/{name}-input-{name}" in created.stdout
    subscription = pubsub_v1.SubscriberClient().get_subscription(
        request={"subscription": f"{P}/subscriptions/{name}-input-{name}"}
    )
    assert subscription.topic == f"{P}/topics/{name}-input"
