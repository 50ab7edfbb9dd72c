"""KlioContext: what a job's code sees as ``ctx`` / ``self._klio``.

Built from the parsed config it is given (no ``__main__`` state). It pickles as its config, so a
DoFn holding it rebuilds the logger and metrics in the worker process.

Klio's module-level decorators (``@handle_klio`` on a plain function) have no way to receive the
config, so the runtime *binds* the running job's context to the process: the pipeline builder binds
it before calling ``run``, and the job's built-in DoFns bind it again in ``setup`` on every worker.
:func:`bound_context` is that one place; our own transforms take the config in their constructors.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from klio_runtime.config import KlioConfig, load_config
from klio_runtime.metrics import KlioMetrics
from klio_runtime.proto.klio_pb2 import KlioJob

LOGGER_NAME = "klio"

# The element being processed in this thread; the log handler adds it to every record. The
# decorators set the element's bytes (decoded only when a record is written, not per element).
current_element: contextvars.ContextVar[str | bytes] = contextvars.ContextVar(
    "klio_current_element", default="-"
)


def current_element_id() -> str:
    """The id of the element this thread is handling (``-`` outside one)."""
    element = current_element.get()
    return element.decode("utf-8", "backslashreplace") if type(element) is bytes else str(element)


@contextmanager
def handling_element(element: str | bytes) -> Iterator[None]:
    """Records written meanwhile in this thread name ``element`` (see :data:`current_element`)."""
    token = current_element.set(element)
    try:
        yield
    finally:
        current_element.reset(token)


def printable(text: str) -> str:
    """``text`` with control characters escaped: an id from a message (a newline in it) must
    not start what reads as a log line of its own."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _ElementIdFilter(logging.Filter):
    """Adds ``record.element_id``; never filters (the job's logger level decides what shows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = getattr(record, "element_id", None)
        record.element_id = printable(current_element_id() if shown is None else str(shown))
        return True


ELEMENT_ID_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(element_id)s] %(message)s"


def show_element_ids(handler: logging.Handler) -> None:
    """Make ``handler`` (e.g. a root handler a process sets up) print the element id as the
    ``klio`` logger's own handler does."""
    handler.addFilter(_ElementIdFilter())
    handler.setFormatter(logging.Formatter(ELEMENT_ID_FORMAT))


def _prints_to_console(handler: logging.Handler) -> bool:
    # the process's own streams too: a progress bar may have replaced sys.stderr since
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and any(
        stream is console for console in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    )


class _KlioHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be replaced after the handler is made).

    The ``klio`` logger does not propagate (a root console handler, which any module-level
    ``logging.info()`` call installs, would print each line twice); so each record is also
    handed to the root logger's other handlers, as under Klio: a Cloud Logging or file handler,
    pytest's ``caplog``.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        own = logging.getLogger(LOGGER_NAME).handlers  # pytest attaches its own here as well
        for handler in logging.root.handlers:
            if (
                record.levelno >= handler.level
                and handler not in own
                and not _prints_to_console(handler)
            ):
                handler.handle(record)


_default_level: int = logging.INFO


def leave_level_to_root() -> None:
    """Give the ``klio`` logger no level of its own from now on, as Klio leaves it: the root
    logger's level then decides, so a job's tests that set one (pytest's ``caplog.set_level``)
    see every record of the job and of Klio's own ``klio.*`` loggers, DEBUG included."""
    global _default_level
    _default_level = logging.NOTSET
    logging.getLogger(LOGGER_NAME).setLevel(logging.NOTSET)


def klio_logger() -> logging.Logger:
    """The ``klio`` logger with a handler that shows the element id; INFO unless the job set a
    level (or :func:`leave_level_to_root` was called)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _KlioHandler) for h in logger.handlers):
        handler = _KlioHandler()
        handler.setLevel(logging.NOTSET)
        show_element_ids(handler)
        logger.addHandler(handler)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(_default_level)
    return logger


def job_ref(config: KlioConfig) -> KlioJob:
    """This job's identity as Klio's ``KlioJob`` proto (job name and GCP project)."""
    job = KlioJob()
    job.job_name = config.job_name
    project = getattr(config.pipeline_options, "project", None)
    if project:
        job.gcp_project = str(project)
    return job


class JobLimits(NamedTuple):
    """The job-wide limits on each element's run (``job_config.timeout_seconds`` / ``retries``)."""

    timeout_seconds: float | None
    retries: int


def job_limits(config: KlioConfig) -> JobLimits | None:
    """The job's limits, or None when it sets none (then the job's code is called directly)."""
    job_config = config.job_config
    limit = getattr(job_config, "timeout_seconds", None)
    retries = int(getattr(job_config, "retries", 0) or 0)
    return JobLimits(float(limit) if limit else None, retries) if limit or retries else None


class SerializedKlioJob(bytes):
    """This job's ``KlioJob``, serialized, as Klio's ``ctx.job`` is: Klio's helpers, and jobs
    written like them, parse it (``KlioJob().ParseFromString(ctx.job)``). It also reads as the
    proto Klio's docs show (``ctx.job.job_name``, ``ctx.job.gcp_project``)."""

    @functools.cached_property
    def proto(self) -> KlioJob:
        return KlioJob.FromString(self)

    @property
    def job_name(self) -> str:
        return self.proto.job_name

    @property
    def gcp_project(self) -> str:
        return self.proto.gcp_project

    def SerializeToString(self) -> bytes:
        return bytes(self)


class KlioContext:
    """``config`` (the parsed job config), ``job`` (this job's KlioJob, serialized as Klio's:
    :class:`SerializedKlioJob`), ``logger``, ``metrics``."""

    def __init__(
        self,
        config: KlioConfig,
        job: KlioJob | None = None,
        logger: logging.Logger | None = None,
        metrics: KlioMetrics | None = None,
    ) -> None:
        self.config = config
        self.job = SerializedKlioJob(
            (job if job is not None else job_ref(config)).SerializeToString()
        )
        self.logger = logger if logger is not None else klio_logger()
        self.metrics = (
            metrics
            if metrics is not None
            else KlioMetrics.of_job(config)
        )
        self.job_limits = job_limits(config)

    def __reduce__(self) -> tuple[Any, ...]:
        return (KlioContext, (self.config,))

    def __repr__(self) -> str:
        return f"KlioContext(job={self.config.job_name!r})"


JOB_CONFIG_FILE_ENV = "KLIO_JOB_CONFIG_FILE"
"""Names the running job's config file for the processes Beam starts to run its steps."""

_bound: KlioContext | None = None
_bound_lock = threading.Lock()


def job_context(config: KlioConfig) -> KlioContext:
    """The context of a job that KlioJobTransform builds: its drops and skips reach its run's
    summary from any step (:attr:`KlioMetrics.summarized`)."""
    ctx = KlioContext(config)
    ctx.metrics.summarized = True
    return ctx


def bind_context(ctx: KlioContext) -> None:
    """Make ``ctx`` the running job's context in this process (see the module docstring)."""
    global _bound
    with _bound_lock:
        _bound = ctx


def context_is_bound() -> bool:
    """Whether a job's context is bound in this process (see :func:`bind_context`)."""
    return _bound is not None


def bound_context() -> KlioContext:
    """The running job's context; a clear error outside a Klio pipeline. In a child process of
    Beam's ``multi_processing`` mode, made from the config file ``klio job run`` names in
    :data:`JOB_CONFIG_FILE_ENV` (as Klio's workers read theirs from their image)."""
    if _bound is None:
        config_file = os.environ.get(JOB_CONFIG_FILE_ENV)
        if config_file:
            bind_context(job_context(load_config(config_file)))
            assert _bound is not None
            return _bound
        raise RuntimeError(
            "no Klio job context in this process: run the code through `klio job run`, "
            "klio_runtime.pipeline.KlioJobTransform, or set `self._klio = KlioContext(config)`"
        )
    return _bound
