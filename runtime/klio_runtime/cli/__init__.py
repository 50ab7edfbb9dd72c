"""The ``klio`` command line. Each command group lives in its own module."""

from __future__ import annotations

import click

from klio_runtime.cli.job import job
from klio_runtime.cli.message import message
from klio_runtime.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="klio-k8s", prog_name="klio")
def main() -> None:
    """Run and manage Klio jobs."""


main.add_command(job)
main.add_command(message)
main.add_command(worker)

__all__ = ["main"]
