"""``klio job create``: scaffold a job directory that runs as created."""

from __future__ import annotations

from pathlib import Path

import click

from klio_runtime.scaffold import ScaffoldError, create_job

EXIT_INVALID = 2


@click.command("create")
@click.option(
    "--job-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the job (default: ./<job-name>).",
)
@click.option("--job-name", required=True, help="The job's name (DNS-1123 label).")
@click.option(
    "--base-image",
    default="klio-runtime:latest",
    show_default=True,
    help="The runtime image the job's Dockerfile starts FROM.",
)
def create(job_dir: Path | None, job_name: str, base_image: str) -> None:
    """Create a job: klio-job.yaml, run.py, transforms.py, Dockerfile, tests/, sample ids."""
    target = job_dir if job_dir is not None else Path(job_name)
    try:
        written = create_job(target, job_name, base_image)
    except ScaffoldError as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    click.echo(
        f"created {job_name} in {target}: " + ", ".join(str(p.relative_to(target)) for p in written)
    )
    click.echo(f"run it: klio job run --job-dir {target}")
