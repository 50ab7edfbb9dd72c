"""Klio's ``klio image build``, whose work is done elsewhere here: it says where, and exits 2.

Klio built a job's worker image from its CLI. Here the job directory's Dockerfile (the one
``klio job create`` writes) is built with ``docker build``; ``klio job deploy`` then applies the
job's KlioJob, which names that image.
"""

from __future__ import annotations

from typing import NoReturn

import click

from klio_runtime.cli.options import EXIT_INVALID

_BUILD = (
    "`docker build -t IMAGE .` in the job directory builds its image (the Dockerfile "
    "`klio job create` wrote)"
)


@click.group(hidden=True)
def image() -> None:
    """Not here (Klio's `klio image`): says what does it instead."""


@image.command(
    "build",
    hidden=True,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
def build() -> NoReturn:
    """Not here (Klio's `klio image build`): says what does it instead."""
    click.echo(f"`klio image build` is not a command here: {_BUILD}.", err=True)
    raise SystemExit(EXIT_INVALID)
