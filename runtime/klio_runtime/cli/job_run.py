"""``klio job run``: run a job directory, with progress and a summary: a batch pipeline for file
inputs, the local streaming worker (or the named Beam runner) for Pub/Sub inputs."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from klio_runtime.cli.options import (
    EXIT_FAILED,
    EXIT_INVALID,
    config_file_option,
    credentials_hint,
    force_build_option,
    image_tag_option,
    job_dir_option,
    note_ctrl_c,
    override_option,
    stopped_if_ctrl_c,
    template_option,
)
from klio_runtime.config import (
    AvroEventInput,
    AvroEventOutput,
    ConfigError,
    FileEventInput,
    FileEventOutput,
    KlioConfig,
    KlioRunner,
    entries_not_run_here,
    parse_overrides,
    parse_templates,
    version_1_layout_warnings,
)

if TYPE_CHECKING:
    from klio_runtime.runner import JobSummary

# Beam (~1.5 s to import) is imported by the functions that run a job, not by this module: every
# other `klio` command, and `klio --help`, loads this one.

SHOWN_IDS = 10
SHOWN_ID_CHARS = 80
"""Characters of one id in the summary (a 1 MB id would fill the terminal)."""


def _total(config: KlioConfig) -> int | None:
    from klio_runtime.io.events import count_lines

    total = 0
    for inp in config.job_config.events.inputs:
        if not isinstance(inp, FileEventInput) or inp.skip_klio_read:
            return None
        try:
            total += count_lines(inp.location)
        except (OSError, FileNotFoundError):
            return None
    return total


def _shown_id(element: str) -> str:
    """An id as the summary shows it: quoted with escapes when it has characters one cannot see
    (a byte-order mark, a trailing space), cut when long."""
    if not element.isprintable() or element != element.strip():
        element = repr(element)
    return element if len(element) <= SHOWN_ID_CHARS else element[:SHOWN_ID_CHARS] + "…"


def _ids(ids: list[str], count: int) -> str:
    """The first of the ids (or places) kept for ``count`` messages. Fewer kept than messages:
    some came more than once, had none, or Beam stopped keeping them (~1 MB per metric)."""
    shown = ", ".join(_shown_id(element) for element in ids[:SHOWN_IDS])
    more = f", … ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else ""
    kept = f" ({len(ids)} listed of {count})" if ids and count > len(ids) else ""
    return escape(shown) + more + kept  # ids are data, not rich markup


def render_summary(summary: JobSummary, console: Console, writes_events: bool = True) -> None:
    """The run's summary table; ``writes_events``: the job has an event output Klio writes."""
    table = Table(title="klio job run: summary", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("elements", overflow="fold")
    table.add_row("received", str(summary.received), "")
    if summary.processed is not None:
        table.add_row("processed (sent to run)", str(summary.processed), "")
    if writes_events:
        table.add_row("written to event outputs", str(summary.output), "")
    else:
        # messages, not elements: a run that yields several per element hands on more than it got
        table.add_row("messages out (no event output to write)", str(summary.output), "")
    table.add_row("skipped (output exists)", str(summary.skipped.get("output_exists", 0)), "")
    table.add_row("ping", str(summary.skipped.get("ping", 0)), "")
    for reason, count in sorted(summary.dropped.items()):
        ids = summary.dropped_ids.get(reason, [])
        table.add_row(f"dropped: {reason}", str(count), _ids(ids, count))
    for reason, count in sorted(summary.dead_letter.items()):
        ids = summary.dead_letter_ids.get(reason, [])
        table.add_row(f"dead-lettered: {reason}", str(count), _ids(ids, count))
    console.print(table)


def _run_with_progress(
    config: KlioConfig, run_fn: Any, runner: str | None, options: dict[str, Any], console: Console
) -> JobSummary:
    from klio_runtime.runner import run_job

    total = _total(config)
    with (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            # the bar is drawn on stdout: a stderr sent elsewhere (2>file) gets the logs there
            redirect_stderr=_is_terminal(sys.stderr),
        ) as progress,
        _console_logs_above_the_bar(),
        _bar_follows_the_run(progress, progress.add_task(config.job_name, total=total)) as task,
    ):
        # The run stays on this thread (a job may set signal handlers; Ctrl-C lands in its steps)
        summary = run_job(config, run_fn, runner, options)
        # every line was handled, dead-lettered ones (never routed as messages) too
        progress.update(task, completed=total if total is not None else summary.received)
    return summary


def _is_terminal(stream: Any) -> bool:
    return stream is not None and stream.isatty()


@contextmanager
def _bar_follows_the_run(progress: Progress, task: TaskID) -> Iterator[TaskID]:
    """Move the bar to the messages the job's router has handed on (see ``element_progress``),
    from a thread of its own while the run goes on in this one."""
    from klio_runtime.metrics import element_progress

    start = element_progress.routed()
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(0.1):
            progress.update(task, completed=element_progress.routed() - start)

    follower = threading.Thread(target=follow, name="klio-progress", daemon=True)
    follower.start()
    try:
        yield task
    finally:
        stop.set()
        follower.join()


@contextmanager
def _console_logs_above_the_bar() -> Iterator[None]:
    """While the progress bar shows on a terminal, rich prints what is written to ``sys.stderr``
    and ``sys.stdout`` above it. Console handlers made before (Beam's ``basicConfig()``, a job's
    own, on any logger) hold the terminal's stream itself and would write across the bar: they
    are pointed at the redirected streams meanwhile. After, every handler holding one of those
    (also one made while the bar showed) is pointed back at the terminal's."""
    redirected = {
        id(stream): (stream, original)
        for stream, original in ((sys.stderr, sys.__stderr__), (sys.stdout, sys.__stdout__))
        if stream is not original and original is not None
    }
    for stream, original in redirected.values():
        for handler in _console_handlers():
            if handler.stream is original:
                handler.setStream(stream)
    try:
        yield
    finally:
        for handler in _console_handlers():
            found = redirected.get(id(handler.stream))
            if found is not None and found[0] is handler.stream:
                handler.setStream(found[1])


def _console_handlers() -> list[logging.StreamHandler[Any]]:
    """The stream handlers (not file ones) of every logger."""
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    handlers = {
        id(handler): handler
        for logger in loggers
        if isinstance(logger, logging.Logger)  # not a PlaceHolder
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    }
    return list(handlers.values())


def _refuse_config(error: ConfigError, err: Console) -> NoReturn:
    for line in error.errors:
        err.print(f"[red]config error[/red] {escape(line)}", highlight=False)
    raise SystemExit(EXIT_INVALID) from None


def _run_streaming(config: KlioConfig, run_fn: Any, console: Console, err: Console) -> None:
    """A job with Pub/Sub inputs, run locally: the streaming worker in the foreground (as in a
    pod, with probes and metrics on free ports) until Ctrl-C, which drains it."""
    from klio_runtime.metrics import element_progress
    from klio_runtime.runner import hub_counts, streaming_summary
    from klio_runtime.transforms.io import writer_names
    from klio_runtime.worker.serve import Probes, serve
    from klio_runtime.worker.settings import WorkerSettings

    since = hub_counts(config.job_name)
    sent_before = element_progress.sent_to_run
    console.print(
        f"{config.job_name}: streaming from Pub/Sub on the local worker; Ctrl-C drains and stops",
        highlight=False,
    )
    try:
        serve(
            config,
            run_fn,
            WorkerSettings(),
            Probes(health_port=0, metrics_port=0, host="127.0.0.1"),
            announce=lambda line: err.print(line, highlight=False, markup=False),
        )
    except ConfigError as error:
        _refuse_config(error, err)
    except Exception as error:
        err.print(
            f"[red]worker failed[/red] {type(error).__name__}: {escape(str(error))}"
            f"{credentials_hint(error)}",
            highlight=False,
        )
        raise SystemExit(EXIT_FAILED) from None
    processed = element_progress.sent_to_run - sent_before
    summary = streaming_summary(config.job_name, since, processed)
    render_summary(summary, console, bool(writer_names(config)))


@click.command("run")
@job_dir_option
@config_file_option
@click.option(
    "--runner",
    default=None,
    help="Beam runner (DataflowRunner, FlinkRunner, …); default: the config's, "
    "DirectRunner running in-process.",
)
@click.option("--direct-runner", is_flag=True, help="Run locally in-process (Klio's flag).")
@override_option
@template_option
@click.option(
    "--pipeline-option",
    "pipeline_opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra Beam pipeline option (repeatable).",
)
@click.option(
    "--update/--no-update",
    default=None,
    help="Update the running Dataflow job of the same name (Beam's update option; default: the"
    " config's pipeline_options.update).",
)
@image_tag_option
@force_build_option
@click.option(
    "--blocking/--no-blocking",
    default=None,
    help="Wait for a pipeline submitted to a runner elsewhere (Dataflow, Flink) to end, as "
    "Klio's flag (default: the config's job_config.blocking); a pipeline run here is always "
    "waited for.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the summary as JSON to this file.",
)
def run(
    job_dir: Path,
    config_file: Path | None,
    runner: str | None,
    direct_runner: bool,
    overrides: tuple[str, ...],
    templates: tuple[str, ...],
    pipeline_opts: tuple[str, ...],
    update: bool | None,
    image_tag: str | None,
    force_build: bool,
    blocking: bool | None,
    no_progress: bool,
    summary_json: Path | None,
) -> None:
    """Run the job in JOB_DIR (default: here) and print a summary.

    File event inputs run as a batch pipeline. Pub/Sub inputs stream: on the local worker until
    Ctrl-C, or on the Beam runner named (DataflowRunner, FlinkRunner, …).
    """
    from klio_runtime.io.gcs import fail_fast_when_unreachable
    from klio_runtime.runner import JobLoadError, in_job_directory, load_job

    # someone is waiting here: storage that cannot be reached is said at once, not after the
    # clients' two minutes of retries per call (a runner elsewhere does not call ready_for)
    fail_fast_when_unreachable()
    note_ctrl_c()
    console = Console(stderr=False)
    err_console = Console(stderr=True)
    if direct_runner:
        runner = KlioRunner.DIRECT_RUNNER.value
    if summary_json is not None:
        summary_json = summary_json.resolve()  # named from where the command was given
        if not summary_json.parent.is_dir():  # known now, not after the run
            err_console.print(
                f"[red]error[/red] --summary-json: {escape(str(summary_json.parent))} is not a"
                " directory",
                highlight=False,
            )
            raise SystemExit(EXIT_INVALID)
    with in_job_directory(job_dir, config_file) as (directory, config_path):
        try:
            config, run_fn, _ = load_job(
                directory, config_path, parse_overrides(overrides), parse_templates(templates)
            )
            options = parse_overrides(pipeline_opts)
            if update is not None:
                options["update"] = update
            refused = entries_not_run_here(config)  # before any run starts
            if refused:
                raise ConfigError(refused)
            for line in version_1_layout_warnings(config):
                err_console.print(f"[yellow]warning[/yellow] {escape(line)}", highlight=False)
        except ConfigError as err:
            _refuse_config(err, err_console)
        except JobLoadError as err:
            err_console.print(f"[red]error[/red] {escape(str(err))}", highlight=False)
            raise SystemExit(EXIT_INVALID) from None
        _run_loaded(
            config, run_fn, runner, options, blocking, image_tag, no_progress, summary_json,
            console, err_console,
        )


def _no_inputs_hint(config: KlioConfig, err: Exception) -> str:
    """Why `run` got the pipeline instead of a PCollection, when that is what failed."""
    if "PBegin" not in str(err):
        return ""
    inputs = config.job_config.events.inputs
    if not inputs:
        return (
            "\nThe job has no event inputs (job_config.events.inputs), so its run() was given"
            " the pipeline itself, as in Klio."
        )
    if all(entry.skip_klio_read for entry in inputs):
        return (
            "\nEach event input sets skip_klio_read, so its run() was given the pipeline to"
            " read them itself, as in Klio."
        )
    return ""


def _prefix_field(entry: FileEventOutput | AvroEventOutput) -> str:
    """The field an output's prefix was given in (an avro output may say only file_path_prefix)."""
    only_prefix = isinstance(entry, AvroEventOutput) and not entry.location
    return "file_path_prefix" if only_prefix else "location"


def _written_prefixes(config: KlioConfig) -> dict[str, str]:
    """Field → prefix of each file the run writes itself: event outputs and dead letters."""
    from klio_runtime.pipeline import dead_letter_location

    prefixes = {
        f"job_config.events.outputs[{index}].{_prefix_field(entry)}": entry.prefix
        for index, entry in enumerate(config.job_config.events.outputs)
        if isinstance(entry, FileEventOutput | AvroEventOutput) and not entry.skip_klio_write
    }
    dead_letters = dead_letter_location(config)
    if dead_letters and getattr(config.job_config, "dead_letter_location", None):
        prefixes["job_config.dead_letter_location"] = dead_letters
    return prefixes


def _run_loaded(
    config: KlioConfig,
    run_fn: Any,
    runner: str | None,
    options: dict[str, Any],
    blocking: bool | None,
    image_tag: str | None,
    no_progress: bool,
    summary_json: Path | None,
    console: Console,
    err_console: Console,
) -> None:
    """Run a loaded job (see :func:`run`) and print its summary."""
    from klio_runtime.io.avro_events import AVRO_MAGIC
    from klio_runtime.io.events import unreadable_inputs, unwritable_local_outputs
    from klio_runtime.io.pubsub_events import has_pubsub_input
    from klio_runtime.runner import GKE_RUNNER, LOCAL_RUNNERS, run_job
    from klio_runtime.transforms.io import writer_names

    started = time.monotonic()
    chosen = runner if runner is not None else config.pipeline_options.runner
    if chosen == GKE_RUNNER:
        err_console.print(
            f"note: Klio deploys a {GKE_RUNNER} job to Kubernetes; here it runs in this process."
            " On a cluster, `klio job deploy` applies its KlioJob (keeping what"
            " kubernetes/deployment.yaml says) and the operator runs its workers.",
            highlight=False,
        )
    if chosen in LOCAL_RUNNERS:
        inputs = [
            (f"job_config.events.inputs[{index}]", entry)
            for index, entry in enumerate(config.job_config.events.inputs)
            if not entry.skip_klio_read
        ]
        unusable = (
            unreadable_inputs(
                {
                    f"{field}.location": entry.location
                    for field, entry in inputs
                    if isinstance(entry, FileEventInput)
                }
            )
            + unreadable_inputs(
                {
                    f"{field}.{'location' if entry.location else 'file_pattern'}": entry.pattern
                    for field, entry in inputs
                    # validate: false, as Beam's reader, looks at nothing before the run
                    if isinstance(entry, AvroEventInput) and entry.validate_
                },
                AVRO_MAGIC,
                "an Avro file",
            )
            + unwritable_local_outputs(_written_prefixes(config))
        )
        if unusable:
            _refuse_config(ConfigError(unusable), err_console)
        # the line Klio's quickstart tells job authors to look for (Beam's DirectRunner logs it)
        err_console.print("Running pipeline with DirectRunner (in-process)", highlight=False)
    if chosen in LOCAL_RUNNERS and has_pubsub_input(config):
        _run_streaming(config, run_fn, console, err_console)
        return
    try:
        if chosen not in LOCAL_RUNNERS:
            waits = blocking if blocking is not None else config.job_config.blocking
            summary = run_job(
                config, run_fn, runner, options, blocking=waits, image_tag=image_tag
            )
        elif no_progress:
            summary = run_job(config, run_fn, runner, options)
        else:
            summary = _run_with_progress(config, run_fn, runner, options, console)
    except ConfigError as err:
        _refuse_config(err, err_console)
    except Exception as err:
        stopped_if_ctrl_c()  # Beam reports Ctrl-C inside a step as the pipeline's failure
        if isinstance(err, NotImplementedError | ValueError):
            # the job as defined cannot run (our steps' setup says so with a ValueError, too)
            err_console.print(f"[red]error[/red] {escape(str(err))}", highlight=False)
            raise SystemExit(EXIT_INVALID) from None
        err_console.print(
            f"[red]pipeline failed[/red] {type(err).__name__}: {escape(str(err))}"
            f"{credentials_hint(err)}{_no_inputs_hint(config, err)}",
            highlight=False,
        )
        raise SystemExit(EXIT_FAILED) from None
    stopped_if_ctrl_c()
    if summary.submitted:
        console.print(f"submitted to {chosen}: {summary.state}", highlight=False)
    else:
        render_summary(summary, console, bool(writer_names(config)))
    if summary_json is not None:
        summary_json.write_text(json.dumps(dataclasses.asdict(summary), indent=2, sort_keys=True))
    console.print(f"done in {time.monotonic() - started:.1f} s ({summary.state})")
