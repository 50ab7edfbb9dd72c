"""``klio job …``: verify, run, test, audit, profile, configure and create job directories; deploy,
stop and delete their KlioJobs."""

from __future__ import annotations

import click

from klio_runtime.cli.job_audit import audit
from klio_runtime.cli.job_cluster import delete, deploy, stop
from klio_runtime.cli.job_config import config
from klio_runtime.cli.job_create import create
from klio_runtime.cli.job_profile import profile
from klio_runtime.cli.job_run import run
from klio_runtime.cli.job_test import test
from klio_runtime.cli.job_verify import verify


@click.group()
def job() -> None:
    """Work with a Klio job directory."""


job.add_command(verify)
job.add_command(run)
job.add_command(create)
job.add_command(test)
job.add_command(profile)
job.add_command(config)
job.add_command(audit)
job.add_command(deploy)
job.add_command(stop)
job.add_command(delete)
