"""``klio job …``: verify, run and create job directories."""

from __future__ import annotations

import click


@click.group()
def job() -> None:
    """Work with a Klio job directory."""
