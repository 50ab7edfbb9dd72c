"""``klio job test``: the job's own tests (pytest), with the job's context bound, as Klio runs them.

Klio's job tests call a decorated DoFn's ``process`` (or a decorated function) directly, outside any
pipeline; ``klio job test`` gives such code the job's context from its ``klio-job.yaml``, runs from
the job directory with it importable (``import transforms``), and sets ``KLIO_TEST_MODE``. The
``klio`` logger gets no level of its own, so a test's ``caplog.set_level(logging.DEBUG)`` sees
Klio's DEBUG lines (thread limiter, per-transform metrics) as in Klio. Arguments after the options
(or after ``--``) go to pytest.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from klio_runtime.cli.options import JobOptions, job_and_config_options

if TYPE_CHECKING:
    from klio_runtime.config import KlioConfig


# As Klio's: pytest's own options may come before or after the job's (-j DIR -k name, or
# -k name -j DIR); "--" passes what follows to pytest as it is.
@click.command("test", context_settings={"ignore_unknown_options": True})
@job_and_config_options
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def test(job: JobOptions, pytest_args: tuple[str, ...]) -> None:
    """Run the job's tests with pytest (PYTEST_ARGS are passed on). As Klio's: when pytest does
    not succeed (failures, or no tests found), "Tests failed with exit code N" and exit 1."""
    import pytest

    enter_job_tests(job)
    code = int(pytest.main(list(pytest_args)))
    if code != 0:
        raise SystemExit(f"Tests failed with exit code {code}")


def enter_job_tests(job: JobOptions) -> KlioConfig:
    """Make this process the place the job's tests run, as Klio's do: the job's config bound as
    the context, the job directory current and importable, ``KLIO_TEST_MODE`` set. Exits 2 on
    an invalid config."""
    from klio_runtime.context import KlioContext, bind_context, leave_level_to_root
    from klio_runtime.runner import forget_other_jobs_modules

    directory = job.job_dir.resolve()
    config = job.load_config()
    leave_level_to_root()  # the tests' own level decides what is logged, as in Klio
    bind_context(KlioContext(config))
    os.environ["KLIO_TEST_MODE"] = "true"
    os.chdir(directory)
    forget_other_jobs_modules(str(directory))
    sys.path.insert(0, str(directory))
    return config
