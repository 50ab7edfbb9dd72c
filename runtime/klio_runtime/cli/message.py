"""``klio message …``: encode, decode and publish KlioMessages."""

from __future__ import annotations

import click


@click.group()
def message() -> None:
    """Encode, decode and publish KlioMessages."""
