"""``klio job audit``: the job's tests run with audit steps watching for known problems, as Klio's.

Each step is a class found under the ``klio.plugins.audit`` entry-point group (Klio's, so a
package can add its own). It is built with ``(job_dir, klio_config, writer)``, prepares in
:meth:`AuditStep.before_tests`, and judges in :meth:`AuditStep.after_tests` with
:meth:`AuditStep.emit_warning` / :meth:`AuditStep.emit_error`. Ours: ``tempfile``,
``multithreaded_tf`` and ``numpy_broken_blas``, Klio's three.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

from packaging.version import Version

from klio_runtime.config import KlioConfig

ENTRY_POINT_GROUP = "klio.plugins.audit"


class Writer(Protocol):
    """What steps write with: pytest's (and Klio's) terminal writer."""

    def write(self, msg: str, **markup: bool) -> None: ...

    def sep(self, sepchar: str, title: str | None = None, **markup: bool) -> None: ...


Stack = Sequence[traceback.FrameSummary]


_PYTEST_CODE = ("/_pytest/", "/pluggy/")
"""Where pytest's own frames come from (by package; a test's own path may say "pytest")."""


def _frames_after_pytest(stack: Stack) -> list[traceback.FrameSummary]:
    """The frames of a stack below pytest's own (what the job's code did)."""
    frames = list(stack)
    for index in range(len(frames) - 1, -1, -1):
        if any(part in frames[index].filename for part in _PYTEST_CODE):
            return frames[index + 1 :]
    return frames


class AuditStep:
    """One audit step. Subclasses name themselves (``AUDIT_STEP_NAME``), describe themselves (the
    class docstring, or :meth:`get_description`) and implement :meth:`after_tests`."""

    AUDIT_STEP_NAME = ""

    def __init__(self, job_dir: str, klio_config: KlioConfig, tw: Writer) -> None:
        self.job_dir = job_dir
        self.klio_config = klio_config
        self.tw = tw
        self.errored = False
        self.warned = False

    @staticmethod
    def get_description() -> str | None:
        """What ``--list`` shows; None: the class docstring."""
        return None

    def before_tests(self) -> None:
        """Set up before the job's tests run (they run in this process)."""

    def after_tests(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement after_tests")

    # Klio's parameter names (`warning`, `error`, `tb`, writer markup as keywords): steps call
    # them by name.
    def emit_warning(self, warning: str, tb: Stack | None = None, **markup: bool) -> None:
        self.warned = True
        self._emit(warning, tb, **{"yellow": True, **markup})

    def emit_error(self, error: str, tb: Stack | None = None, **markup: bool) -> None:
        self.errored = True
        self._emit(error, tb, **{"red": True, **markup})

    def _emit(self, message: str, tb: Stack | None, **markup: bool) -> None:
        text = f"[{self.AUDIT_STEP_NAME}]: {message}\n"
        if tb:
            text += "".join(traceback.format_list(_frames_after_pytest(tb))) + "\n"
        self.tw.write(text, **markup)

    def single_threaded(self) -> bool:
        """One element at a time per worker: ``job_config.thread_pool_size: 1`` (this runtime's
        setting), or Klio's Dataflow experiment ``worker_threads=1``."""
        experiments = self.klio_config.pipeline_options.experiments or []
        return (
            self.klio_config.job_config.thread_pool_size == 1 or "worker_threads=1" in experiments
        )


class TempFileUsage(AuditStep):
    """Avoid leaky file descriptors from `tempfile.TemporaryFile`."""

    AUDIT_STEP_NAME = "tempfile"
    IGNORED = _PYTEST_CODE  # pytest's own temporary files are not the job's

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stacks: list[Stack] = []
        self._real: Callable[..., Any] = tempfile.TemporaryFile

    def before_tests(self) -> None:
        real = self._real
        stacks = self.stacks
        ignored = self.IGNORED

        def noting_temporary_file(*args: Any, **kwargs: Any) -> Any:
            stack = traceback.extract_stack()[:-1]
            if not any(part in stack[-1].filename for part in ignored):
                stacks.append(stack)
            return real(*args, **kwargs)

        tempfile.TemporaryFile = noting_temporary_file

    def after_tests(self) -> None:
        tempfile.TemporaryFile = self._real
        if self.stacks:
            self.emit_error(
                "`tempfile.TemporaryFile` was used! Please use `tempfile.NamedTemporaryFile`"
                " instead to avoid leaking files. Traceback:",
                self.stacks[0],
            )


class MultithreadedTFUsage(AuditStep):
    """Use caution when running tensorflow in a multithreaded environment."""

    AUDIT_STEP_NAME = "multithreaded_tf"

    def after_tests(self) -> None:
        loaded = any("tensorflow" in name for name in sys.modules)
        if loaded and not self.single_threaded():
            self.emit_warning(
                "TensorFlow usage detected within job, but it is not run one element at a time"
                " per worker (job_config.thread_pool_size: 1, or Klio's `worker_threads=1` under"
                " pipeline_options.experiments on Dataflow)! This can cause threading issues."
                " Be careful."
            )


class NumPyBrokenBLASUsage(AuditStep):
    """Detect a NumPy version with known threading issues."""

    AUDIT_STEP_NAME = "numpy_broken_blas"
    MINIMUM_NUMPY_VERSION = Version("1.16.3")

    @staticmethod
    def get_description() -> str:
        return (
            "NumPy before 1.16.3 links against an OpenBLAS whose `dot` (_dgemv) is not"
            " reentrant: with several threads it can give wrong results or deadlock (numpy"
            " 1.16.3 release notes; OpenBLAS issue 1844)."
        )

    def after_tests(self) -> None:
        if self.single_threaded() or platform.system().lower() != "linux":
            return
        try:
            import numpy
        except ImportError:
            return
        if Version(numpy.__version__) < self.MINIMUM_NUMPY_VERSION:
            self.emit_error(
                f"Multiple threads are used, but a NumPy version older than"
                f" {self.MINIMUM_NUMPY_VERSION} was detected. Older versions of NumPy are known"
                " to be thread-unsafe due to a broken OpenBLAS dependency on Linux."
            )


def installed_steps() -> list[tuple[str, type[AuditStep] | None, str]]:
    """Every step under the entry-point group: (name, class or None if it failed to load, its
    description or the load error)."""
    found: list[tuple[str, type[AuditStep] | None, str]] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):  # in registration order, as Klio
        try:
            step = point.load()
        except Exception as err:  # a broken plugin is reported, not fatal
            found.append((point.name, None, f"cannot be loaded: {type(err).__name__}: {err}"))
            continue
        described = getattr(step, "get_description", lambda: None)()
        docstring = (step.__doc__ or "").strip()
        found.append((point.name, step, described or docstring or "No description"))
    return found


def audit(job_dir: str, config: KlioConfig, tw: Writer, run_tests: Callable[[], int]) -> int:
    """Run the job's tests (``run_tests``, pytest's exit code) between the steps' before and
    after; report as Klio does. Returns the exit code: 1 if the tests failed or a step erred."""
    tw.write("Auditing your Klio job...\n")
    steps: list[AuditStep] = []
    for name, step_class, problem in installed_steps():
        if step_class is None:
            tw.write(f"[{name}]: audit step {problem}\n", red=True)
            return 1
        steps.append(step_class(job_dir, config, tw))
    for step in steps:
        step.before_tests()
    tw.write("Running tests for audit validation...\n")
    tests_failed = run_tests() != 0
    tw.write("PyTest failed!\n" if tests_failed else "PyTest passed!\n", yellow=tests_failed)
    tw.sep("=", "audit session starts", bold=True)
    started = time.monotonic()
    for step in steps:
        step.after_tests()
        if not (step.errored or step.warned):
            tw.write(f"[{step.AUDIT_STEP_NAME}]: audit step passed!\n", green=True)
    errors = sum(step.errored for step in steps)
    warnings = sum(step.warned for step in steps)
    colour = "red" if errors else "yellow" if warnings else "green"
    tw.sep(
        "=",
        f"{errors} errors, {warnings} warnings in {time.monotonic() - started:.3f} seconds",
        bold=True,
        **{colour: True},
    )
    if tests_failed or errors:
        tw.sep("=", "You have errors in your job. Please fix and try again.", red=True)
        return 1
    if warnings:
        tw.write(
            "Cool! Your job has warnings, but no errors. Please check the warnings.\n", yellow=True
        )
    else:
        tw.write("Good job! Your job does not exhibit any known issues.\n")
    return 0
