"""The ``klio`` command line. Each command group lives in its own module."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, NoReturn

import click

from klio_runtime.cli.elsewhere import image
from klio_runtime.cli.job import job
from klio_runtime.cli.message import message
from klio_runtime.cli.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    credentials_hint,
    ctrl_c_pressed,
)
from klio_runtime.cli.worker import worker


class _KlioGroup(click.Group):
    """Every command: a failure for want of Google credentials is one line and what to do,
    not a traceback; Ctrl-C is one line and exit code 130 (click's own says "Aborted!", 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        _closed_streams_to_devnull()
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _stopped()
        except Exception as err:
            if ctrl_c_pressed():  # what Beam made of it: the pipeline "failed" (note_ctrl_c)
                _stopped()
            hint = credentials_hint(err)
            if not hint:
                raise
            click.echo(f"error: {type(err).__name__}: {err}{hint}", err=True)
            raise SystemExit(EXIT_FAILED) from None


def _closed_streams_to_devnull() -> None:
    """A command run with stdout or stderr closed (``>&-``) writes what it would show there to
    nowhere, as to ``>/dev/null``, rather than failing on Python's ``None`` stream. The first
    file opened takes the closed descriptor, so child processes get /dev/null there too."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def _stopped() -> NoReturn:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut this short
    click.echo("stopped (Ctrl-C)", err=True)
    raise SystemExit(EXIT_INTERRUPTED) from None


@click.group(cls=_KlioGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="klio-k8s", prog_name="klio")
def main() -> None:
    """Run and manage Klio jobs."""


main.add_command(job)
main.add_command(message)
main.add_command(worker)
main.add_command(image)

__all__ = ["main"]
