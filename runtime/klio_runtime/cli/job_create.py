"""``klio job create``: scaffold a job directory that runs as created."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from klio_runtime.cli.options import EXIT_INVALID
from klio_runtime.io import EMULATOR_PROJECT
from klio_runtime.scaffold import BASE_IMAGE, JobIO, ScaffoldError, create_job

_IO_OPTIONS = {
    "streaming": {
        "event_input": "input_topic",
        "event_output": "output_topic",
        "data_input": "input_data_location",
        "data_output": "output_data_location",
    },
    "batch": {
        "event_input": "batch_event_input",
        "event_output": "batch_event_output",
        "data_input": "batch_data_input",
        "data_output": "batch_data_output",
    },
}
"""Klio's options placing a job's events and data; each applies to one job type."""


@click.command(
    "create", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option(
    "--job-dir",
    "--output",
    "job_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the job (default: the current directory, as Klio's).",
)
@click.option("--job-name", required=True, help="The job's name (DNS-1123 label).")
@click.option(
    "--job-type",
    type=click.Choice(["batch", "streaming"]),
    default="batch",
    show_default=True,
    help="batch: reads <job-name>_input_elements.txt, runs offline; streaming: Pub/Sub topics"
    " named after the job.",
)
@click.option("--gcp-project", default=None, help="pipeline_options.project (streaming: required).")
@click.option("--region", default=None, help="pipeline_options.region (for Dataflow).")
@click.option("--use-defaults", is_flag=True, help="Accepted for Klio's command line: no prompts.")
@click.option(
    "--create-resources",
    is_flag=True,
    help="Also make the job's Pub/Sub topics and subscription and GCS buckets, as `klio job "
    "verify --create-resources` does (honours PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST).",
)
@click.option("--input-topic", default=None, help="Streaming: the input topic (Klio's).")
@click.option("--output-topic", default=None, help="Streaming: the output topic (Klio's).")
@click.option("--input-data-location", default=None, help="Streaming: the data input (Klio's).")
@click.option("--output-data-location", default=None, help="Streaming: the data output (Klio's).")
@click.option("--batch-event-input", default=None, help="Batch: the elements file (Klio's).")
@click.option("--batch-event-output", default=None, help="Batch: the output file prefix (Klio's).")
@click.option("--batch-data-input", default=None, help="Batch: the data input (Klio's).")
@click.option("--batch-data-output", default=None, help="Batch: the data output (Klio's).")
@click.option(
    "--worker-image", default=None, help="pipeline_options.worker_harness_container_image."
)
@click.option("--experiments", default=None, help="pipeline_options.experiments, comma-separated.")
@click.option("--num-workers", type=int, default=None, help="pipeline_options.num_workers.")
@click.option("--max-num-workers", type=int, default=None, help="pipeline_options.max_num_workers.")
@click.option(
    "--autoscaling-algorithm", default=None, help="pipeline_options.autoscaling_algorithm."
)
@click.option("--disk-size-gb", type=int, default=None, help="pipeline_options.disk_size_gb.")
@click.option("--worker-machine-type", default=None, help="pipeline_options.worker_machine_type.")
@click.option("--staging-location", default=None, help="pipeline_options.staging_location.")
@click.option("--temp-location", default=None, help="pipeline_options.temp_location.")
@click.option(
    "--base-image",
    default=BASE_IMAGE,
    show_default=True,
    help="The runtime image the job's Dockerfile starts FROM.",
)
@click.pass_context
def create(
    ctx: click.Context,
    job_dir: Path | None,
    job_name: str,
    job_type: str,
    gcp_project: str | None,
    region: str | None,
    use_defaults: bool,
    create_resources: bool,
    base_image: str,
    experiments: str | None,
    **klio_options: Any,
) -> None:
    """Create a job: klio-job.yaml, run.py, transforms.py, Dockerfile, job-requirements.txt,
    tests/, README.md (and, for a batch job, two sample elements in
    <job-name>_input_elements.txt). Klio's
    options place its events and data and set its pipeline options; its other options are
    accepted and ignored, with a note."""
    target = job_dir if job_dir is not None else Path(".")
    if job_type == "streaming" and not gcp_project and os.environ.get("PUBSUB_EMULATOR_HOST"):
        gcp_project = EMULATOR_PROJECT  # any project name does on the emulator
    given = {
        option: klio_options.pop(option)
        for names in _IO_OPTIONS.values()
        for option in names.values()
    }
    io = JobIO(**{field: given.pop(option) for field, option in _IO_OPTIONS[job_type].items()})
    unused = [f"--{option.replace('_', '-')}" for option, value in given.items() if value]
    pipeline = {
        "region": region,
        "worker_harness_container_image": klio_options.pop("worker_image"),
        "experiments": experiments.split(",") if experiments else None,
        **klio_options,
    }
    try:
        written = create_job(target, job_name, base_image, job_type, gcp_project, io, pipeline)
    except ScaffoldError as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    if unused:
        click.echo(f"ignored (not options of a {job_type} job): {' '.join(unused)}", err=True)
    if ctx.args:
        click.echo(
            f"ignored (Klio options this scaffold does not use): {' '.join(ctx.args)}", err=True
        )
    click.echo(
        f"created {job_name} in {target}: " + ", ".join(str(p.relative_to(target)) for p in written)
    )
    if create_resources:
        problems = _make_resources(target)
        if problems:
            for line in problems:
                click.echo(f"error: {line}", err=True)
            raise SystemExit(EXIT_INVALID)
    where = "" if target.resolve() == Path.cwd().resolve() else f" --job-dir {target}"
    click.echo(f"run it: klio job run{where}")


def _make_resources(job_dir: Path) -> list[str]:
    """The created job's resources, made as ``klio job verify --create-resources`` makes them."""
    from klio_runtime.cli.job_verify import make_missing_resources
    from klio_runtime.config import load_config

    return make_missing_resources(load_config(job_dir / "klio-job.yaml"))
