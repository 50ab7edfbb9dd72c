"""Options every command that works on a job directory shares: one spelling, one help text."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import click

from klio_runtime.config import CONFIG_FILE_NAME

if TYPE_CHECKING:
    from klio_runtime.config import KlioConfig

T = TypeVar("T")

EXIT_INVALID = 2
"""The exit code of a command refused for its input (a config, an option)."""
EXIT_FAILED = 1
"""The exit code of a command that failed."""
EXIT_INTERRUPTED = 130
"""The exit code of a command stopped by Ctrl-C (the shell's code for SIGINT)."""

_ctrl_c = threading.Event()
_first_ctrl_c_at = 0.0
_REPEATS_IGNORED_FOR = 2.0  # seconds: a second press soon after the first would cut its stop short


def _noted_ctrl_c(signum: int, frame: Any) -> None:
    global _first_ctrl_c_at
    now = time.monotonic()
    if _ctrl_c.is_set() and now - _first_ctrl_c_at < _REPEATS_IGNORED_FOR:
        return
    if not _ctrl_c.is_set():
        _first_ctrl_c_at = now
    _ctrl_c.set()
    # what follows is the run being stopped: Beam would log the interrupt as a step's error
    logging.disable(logging.ERROR)
    signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as Python's own


def note_ctrl_c() -> None:
    """From now on, note when Ctrl-C is pressed (it still raises ``KeyboardInterrupt``): Beam
    reports one raised inside a step as the pipeline's failure, or a job's step swallows it, and
    a command that runs a pipeline must still say it was stopped (:func:`stopped_if_ctrl_c`). A
    handler the process set itself is left alone."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _noted_ctrl_c)


def ctrl_c_pressed() -> bool:
    """Whether Ctrl-C was pressed since :func:`note_ctrl_c`."""
    return _ctrl_c.is_set()


def stopped_if_ctrl_c() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed: a run that ended, failed or not, after
    it (a step's teardown or a bare ``except`` took it) was stopped."""
    if ctrl_c_pressed():
        raise KeyboardInterrupt


CREDENTIALS_HINT = (
    "\nhint: gs:// data and Pub/Sub need Google credentials (gcloud auth application-default "
    "login, or GOOGLE_APPLICATION_CREDENTIALS), or an emulator: STORAGE_EMULATOR_HOST for GCS, "
    "PUBSUB_EMULATOR_HOST for Pub/Sub"
)


def credentials_hint(err: BaseException) -> str:
    """What to do about a failure whose cause is missing Google credentials ("" otherwise)."""
    seen: BaseException | None = err
    while seen is not None:
        if type(seen).__name__ == "DefaultCredentialsError" or "DefaultCredentialsError" in str(
            seen
        ):
            return CREDENTIALS_HINT
        seen = seen.__cause__ or seen.__context__
    return ""


job_dir_option = click.option(
    "--job-dir",
    "-j",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help=f"The job directory ({CONFIG_FILE_NAME}, run.py).",
)
config_file_option = click.option(
    "--config-file",
    "-c",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"The job config, if not {CONFIG_FILE_NAME} in the job directory (a relative path is"
    " looked for in the job directory first, as Klio does).",
)
override_option = click.option(
    "--override",
    "--config-override",
    "-O",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value by dotted path, e.g. job_config.events.inputs[0].location=ids.txt"
    " or, as Klio names IO entries, job_config.events.inputs.file0.location=ids.txt (repeatable).",
)
template_option = click.option(
    "--template",
    "-T",
    "templates",
    multiple=True,
    metavar="KEY=VALUE",
    help="Replace $KEY and ${KEY} in the config file with VALUE before it is read (repeatable).",
)
image_tag_option = click.option(
    "--image-tag",
    default=None,
    help="Klio's worker image tag: `klio job run` gives it to the worker image of a pipeline "
    "it submits with the beam_fn_api experiment, as Klio does, and `klio job deploy` to the "
    "KlioJob's image; no image is built here.",
)
force_build_option = click.option(
    "--force-build", is_flag=True, help="Accepted for Klio's command line; no image is built."
)


@dataclass(frozen=True)
class JobOptions:
    """The job a command works on and its config, as Klio's options name them."""

    job_dir: Path
    config_file: Path | None
    overrides: tuple[str, ...]
    templates: tuple[str, ...]
    image_tag: str | None = None

    def as_arguments(self) -> list[str]:
        """The same options, for a child process running another ``klio`` command."""
        arguments = ["--job-dir", str(self.job_dir)]
        if self.config_file is not None:
            arguments += ["--config-file", str(self.config_file)]
        for pair in self.overrides:
            arguments += ["--override", pair]
        for pair in self.templates:
            arguments += ["--template", pair]
        return arguments

    def load_config(self) -> KlioConfig:
        """The job's config, overrides and templates applied; a config error is refused, by
        field (exit 2)."""
        from klio_runtime.runner import load_job_config

        return self.loaded_with(load_job_config)

    def loaded_with(self, loader: Callable[..., T]) -> T:
        """``loader(job_dir, config_file, overrides, templates)``, the last two parsed: the one
        place the job options become a loader's arguments. A config error is refused, by field
        (exit 2)."""
        from klio_runtime.config import ConfigError, parse_overrides, parse_templates

        try:
            return loader(
                self.job_dir,
                self.config_file,
                parse_overrides(self.overrides),
                parse_templates(self.templates),
            )
        except ConfigError as err:
            refuse_config(err)


def job_and_config_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of Klio's commands that load a job and name its image (run, test, profile,
    audit, deploy): -j, -c, -O, -T, and --image-tag and --force-build (accepted; the job runs
    from its directory, nothing is built). ``command`` gets them as ``job``, a
    :class:`JobOptions`."""
    return _with_job_options(command, image_options=True)


def job_config_options(command: Callable[..., None]) -> Callable[..., None]:
    """Klio's ``with_klio_config`` alone (``stop``, ``delete``): -j, -c, -O and -T, as ``job``."""
    return _with_job_options(command, image_options=False)


def _with_job_options(command: Callable[..., None], image_options: bool) -> Callable[..., None]:
    @functools.wraps(command)
    def with_job(
        job_dir: Path,
        config_file: Path | None,
        overrides: tuple[str, ...],
        templates: tuple[str, ...],
        image_tag: str | None = None,
        force_build: bool = False,
        **arguments: Any,
    ) -> None:
        command(job=JobOptions(job_dir, config_file, overrides, templates, image_tag), **arguments)

    options = [job_dir_option, config_file_option, override_option, template_option]
    if image_options:
        options += [image_tag_option, force_build_option]
    wrapped: Callable[..., None] = with_job
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


class FieldProblems(Protocol):
    """An error listing its problems by field (ConfigError, the operator's ConversionError)."""

    @property
    def errors(self) -> Sequence[str]: ...


def refuse_config(error: FieldProblems) -> NoReturn:
    """Print each of the config's problems (by field) and exit 2."""
    for line in error.errors:
        click.echo(f"config error: {line}", err=True)
    raise SystemExit(EXIT_INVALID)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
