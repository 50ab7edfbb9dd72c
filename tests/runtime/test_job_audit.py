"""`klio job audit` as a subprocess: a job's own tests run with Klio's audit steps watching."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.runtime.helpers import klio_in

CONFIG = """
version: 2
job_name: audited
pipeline_options:
  streaming: false
job_config:
  events:
    inputs:
      - type: file
        location: ids.txt
"""
TRANSFORMS = """
from klio.transforms import decorators


@decorators.handle_klio
def keep(ctx, item):
    return item
"""
RUN = """
import apache_beam as beam
import transforms


def run(input_pcol, config):
    return input_pcol | beam.Map(transforms.keep)
"""
CLEAN_TEST = """
import transforms


def test_keep_is_decorated():
    assert callable(transforms.keep)
"""
LEAKY_TEST = """
import tempfile


def test_uses_an_unnamed_temporary_file():
    with tempfile.TemporaryFile() as handle:
        handle.write(b"scratch")
"""
TENSORFLOW_TEST = """
import sys
import types

# Stands in for `import tensorflow` (not installed here): the audit looks at sys.modules.
sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))


def test_model_loads():
    assert "tensorflow" in sys.modules
"""


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "klio-job.yaml").write_text(CONFIG)
    (tmp_path / "run.py").write_text(RUN)
    (tmp_path / "transforms.py").write_text(TRANSFORMS)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_clean.py").write_text(CLEAN_TEST)
    return tmp_path


def audit(
    job: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return klio_in(job, "job", "audit", *args, env=env)


def test_a_clean_job_passes_every_step(job: Path) -> None:
    done = audit(job)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "PyTest passed!" in done.stdout
    for step in ("tempfile", "multithreaded_tf", "numpy_broken_blas"):
        assert f"[{step}]: audit step passed!" in done.stdout
    assert "0 errors, 0 warnings" in done.stdout
    assert "Good job! Your job does not exhibit any known issues." in done.stdout


def test_an_unnamed_temporary_file_is_an_error_with_where_it_was_made(job: Path) -> None:
    (job / "tests" / "test_leaky.py").write_text(LEAKY_TEST)

    done = audit(job)

    assert done.returncode == 1
    assert "[tempfile]: `tempfile.TemporaryFile` was used!" in done.stdout
    assert "test_leaky.py" in done.stdout and "with tempfile.TemporaryFile()" in done.stdout
    assert "1 errors, 0 warnings" in done.stdout
    assert "You have errors in your job." in done.stdout


def test_tensorflow_on_several_threads_is_a_warning_unless_one_at_a_time(job: Path) -> None:
    (job / "tests" / "test_model.py").write_text(TENSORFLOW_TEST)

    threaded = audit(job)
    single = audit(job, "-O", "job_config.thread_pool_size=1")

    assert threaded.returncode == 0, threaded.stdout + threaded.stderr
    assert "[multithreaded_tf]: TensorFlow usage detected" in threaded.stdout
    assert "0 errors, 1 warnings" in threaded.stdout
    assert "Your job has warnings, but no errors." in threaded.stdout
    assert single.returncode == 0, single.stdout + single.stderr
    assert "[multithreaded_tf]: audit step passed!" in single.stdout


def test_failing_tests_fail_the_audit(job: Path) -> None:
    (job / "tests" / "test_broken.py").write_text("def test_broken():\n    assert False\n")

    done = audit(job)

    assert done.returncode == 1
    assert "PyTest failed!" in done.stdout


def test_list_names_each_step_and_what_it_watches(job: Path) -> None:
    done = audit(job, "--list")

    assert done.returncode == 0, done.stderr
    assert "tempfile: Avoid leaky file descriptors" in done.stdout
    assert "multithreaded_tf: " in done.stdout
    assert "numpy_broken_blas: NumPy before 1.16.3" in done.stdout
    assert "Auditing" not in done.stdout  # listing runs no audit


KLIO_STYLE_STEP = '''
from klio_exec.commands.audit_steps import base


class JobDirStep(base.BaseKlioAuditStep):
    """Looks at the job directory."""

    AUDIT_STEP_NAME = "job_dir"

    def after_tests(self):
        # Klio's own single-thread check, unguarded: experiments is a list in Klio
        if "worker_threads=1" not in self.klio_config.pipeline_options.experiments:
            self.emit_warning(warning="looked at " + self.job_dir, bold=True)
'''


def test_a_step_written_for_klio_is_found_under_klio_s_entry_points(
    job: Path, tmp_path: Path
) -> None:
    # A package registering an audit step, as Klio's plugins do: a distribution on the path
    # whose entry points name the step under klio.plugins.audit.
    plugins = tmp_path / "plugins"
    (plugins / "klio_job_dir_step-1.0.dist-info").mkdir(parents=True)
    (plugins / "klio_job_dir_step.py").write_text(KLIO_STYLE_STEP)
    (plugins / "klio_job_dir_step-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: klio-job-dir-step\nVersion: 1.0\n"
    )
    (plugins / "klio_job_dir_step-1.0.dist-info" / "entry_points.txt").write_text(
        "[klio.plugins.audit]\njob_dir = klio_job_dir_step:JobDirStep\n"
    )
    env = {**os.environ, "PYTHONPATH": str(plugins)}

    listed = audit(job, "--list", env=env)
    done = audit(job, env=env)

    assert "job_dir: Looks at the job directory." in listed.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"[job_dir]: looked at {job.resolve()}" in done.stdout
    assert "0 errors, 1 warnings" in done.stdout
