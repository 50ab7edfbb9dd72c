"""``klio job audit``: the job's tests, run with Klio's audit steps watching (see
:mod:`klio_runtime.audit`)."""

from __future__ import annotations

from pathlib import Path

import click

from klio_runtime.cli.options import JobOptions, job_and_config_options


def _list_steps(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--list``: the installed steps and what each watches for; nothing runs."""
    if not value or ctx.resilient_parsing:
        return
    from klio_runtime.audit import installed_steps

    for name, _, description in installed_steps():
        click.echo(f"{name}: {description}")
    ctx.exit()


@click.command("audit")
@job_and_config_options
@click.option(
    "--list",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_steps,
    help="List the installed audit steps (runs no audit).",
)
def audit(job: JobOptions) -> None:
    """Run the job's tests with Klio's audit steps watching for known problems (leaky temporary
    files, TensorFlow on several threads, a thread-unsafe NumPy); exits 1 on an error."""
    import pytest
    from _pytest._io import TerminalWriter

    from klio_runtime.audit import audit as run_audit
    from klio_runtime.cli.job_test import enter_job_tests

    config = enter_job_tests(job)
    writer = TerminalWriter()
    code = run_audit(str(Path.cwd()), config, writer, lambda: int(pytest.main(["-qq"])))
    raise SystemExit(code)
