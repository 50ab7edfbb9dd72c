"""Klio commands whose work is done elsewhere here: each says where, and exits 2.

Klio deployed, stopped and deleted Dataflow (or GKE) jobs and built their images from its CLI. On
Kubernetes a KlioJob is the job and the operator does that work; Dataflow jobs are submitted by
``klio job run --runner DataflowRunner`` and managed with ``gcloud``.
"""

from __future__ import annotations

from typing import NoReturn

import click

from klio_runtime.cli.options import EXIT_INVALID

_WHERE = {
    "deploy": (
        "on Kubernetes, `klio-operator manifest -j . | kubectl apply -f -` deploys the job as a "
        "KlioJob (the operator runs its workers); `klio job run --runner DataflowRunner` "
        "submits it to Dataflow"
    ),
    "stop": (
        "for a KlioJob, set `spec.suspend: true` (`kubectl patch kliojob NAME --type merge "
        "-p '{\"spec\": {\"suspend\": true}}'`): its subscriptions keep the backlog; for "
        "Dataflow, `gcloud dataflow jobs drain JOB_ID` (or `cancel`)"
    ),
    "delete": (
        "`kubectl delete kliojob NAME` deletes the job and the topics and subscriptions the "
        "operator made for it; for Dataflow, `gcloud dataflow jobs cancel JOB_ID`"
    ),
    "build": (
        "`docker build -t IMAGE .` in the job directory builds its image (the Dockerfile "
        "`klio job create` wrote)"
    ),
}


def _elsewhere(name: str, klio_command: str) -> click.Command:
    @click.command(
        name,
        hidden=True,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def command() -> NoReturn:
        click.echo(f"`klio {klio_command}` is not a command here: {_WHERE[name]}.", err=True)
        raise SystemExit(EXIT_INVALID)

    command.help = f"Not here (Klio's `klio {klio_command}`): says what does it instead."
    return command


job_commands = [_elsewhere(name, f"job {name}") for name in ("deploy", "stop", "delete")]


@click.group(hidden=True)
def image() -> None:
    """Not here (Klio's `klio image`): says what does it instead."""


image.add_command(_elsewhere("build", "image build"))
