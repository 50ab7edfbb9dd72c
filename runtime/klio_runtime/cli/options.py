"""Options every command that works on a job directory shares: one spelling, one help text."""

from __future__ import annotations

from pathlib import Path

import click

from klio_runtime.config import CONFIG_FILE_NAME

job_dir_option = click.option(
    "--job-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help=f"The job directory ({CONFIG_FILE_NAME}, run.py).",
)
config_file_option = click.option(
    "--config-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"The job config, if not {CONFIG_FILE_NAME} in the job directory.",
)
