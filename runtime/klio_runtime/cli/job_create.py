"""``klio job create``: scaffold a job directory that runs as created."""

from __future__ import annotations

import os
from pathlib import Path

import click

from klio_runtime.cli.options import EXIT_INVALID
from klio_runtime.scaffold import ScaffoldError, create_job

EMULATOR_PROJECT = "klio-local"


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
@click.option(
    "--base-image",
    default="klio-runtime:latest",
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
) -> None:
    """Create a job: klio-job.yaml, run.py, transforms.py, Dockerfile, tests/ (and, for a batch
    job, two sample elements in <job-name>_input_elements.txt). Klio's other create options are
    accepted and ignored, with a note."""
    target = job_dir if job_dir is not None else Path(".")
    if job_type == "streaming" and not gcp_project and os.environ.get("PUBSUB_EMULATOR_HOST"):
        gcp_project = EMULATOR_PROJECT  # any project name does on the emulator
    try:
        written = create_job(target, job_name, base_image, job_type, gcp_project, region)
    except ScaffoldError as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    if ctx.args:
        click.echo(f"ignored (Klio options this scaffold does not use): {' '.join(ctx.args)}",
                   err=True)
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
