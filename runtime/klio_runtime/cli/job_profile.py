"""``klio job profile``: CPU, memory and line-by-line time or memory of a job over given elements,
with Klio's subcommands and options (:mod:`klio_runtime.profiling` says what each measures)."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from klio_runtime.cli.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    JobOptions,
    fail,
    job_and_config_options,
    note_ctrl_c,
    refuse_config,
    stopped_if_ctrl_c,
)

STDOUT = Path("-")
"""``-o -``: stdout, as in Klio."""


def _output_file_checked(
    _ctx: click.Context, _param: click.Parameter, path: Path | None
) -> Path | None:
    """Refuse an output file that cannot be written before the job runs, not after."""
    if path is None or path == STDOUT:
        return path
    if not path.parent.is_dir():
        raise click.BadParameter(f"no such directory: {path.parent}")
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory")
    return path


input_file_option = click.option(
    "--input-file",
    "-i",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File of element ids, one per line, to profile the job with (instead of ENTITY_IDS);"
    " a relative path is looked for in the job directory first, as Klio does.",
)
output_file_option = click.option(
    "--output-file",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_output_file_checked,
    help="Write the results to this file (default, or -: stdout).",
)
show_logs_option = click.option(
    "--show-logs", is_flag=True, help="Show the job's logs while profiling."
)
interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=0.001),
    default=0.1,
    show_default=True,
    help="Sampling period (in seconds).",
)
plot_graph_option = click.option(
    "--plot-graph",
    "-g",
    is_flag=True,
    help="Also plot the samples with matplotlib, to klio_profile_<what>_<YYYYmmddHHMMSS>.png "
    "(or beside --output-file).",
)


@dataclass(frozen=True)
class SampledMeasure:
    """What ``cpu`` or ``memory`` samples, and how its plot is named, labelled and announced
    (Klio's words)."""

    name: str
    announced: str
    y_label: str
    title: str


CPU = SampledMeasure("cpu", "CPU", "CPU%", "CPU Usage of All Klio-based Transforms")
MEMORY = SampledMeasure(
    "memory", "Memory", "Memory used (in MiB)", "Memory Used While Running Klio-based Transforms"
)
entity_ids_argument = click.argument("entity_ids", nargs=-1, required=False)


@click.group("profile")
def profile() -> None:
    """Profile the job over given elements: CPU, memory, or line by line (@profile)."""


@contextlib.contextmanager
def _ids_file(
    job: JobOptions, input_file: Path | None, entity_ids: tuple[str, ...], iterations: int = 1
) -> Iterator[Path]:
    from klio_runtime.profiling import ProfileInputError, element_ids, write_ids_file

    if input_file is not None and not input_file.is_absolute():
        in_job_dir = job.job_dir / input_file
        input_file = in_job_dir if in_job_dir.is_file() else input_file
    try:
        ids = element_ids(input_file, entity_ids)
    except ProfileInputError as err:
        raise click.UsageError(str(err)) from None
    with tempfile.TemporaryDirectory(prefix="klio-profile-") as directory:
        # iterations >= 1: click's IntRange checked it
        yield write_ids_file(ids, iterations, Path(directory) / "element_ids.txt")


@contextlib.contextmanager
def _output(path: Path | None, mode: str = "w") -> Iterator[IO[str]]:
    if path is None or path == STDOUT:
        yield sys.stdout
        return
    with path.open(mode, encoding="utf-8") as stream:
        yield stream


@contextlib.contextmanager
def _logs_shown(show_logs: bool) -> Iterator[None]:
    """Klio hides the job's logs while profiling unless asked (they would bury the results)."""
    if show_logs:
        yield
        return
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _run_over(job: JobOptions, ids_file: Path) -> None:
    """The job over the ids file, here, on the in-process runner, writing no events."""
    from klio_runtime.config import ConfigError, KlioRunner, parse_overrides, parse_templates
    from klio_runtime.io.gcs import fail_fast_when_unreachable
    from klio_runtime.profiling import profiling_overrides
    from klio_runtime.runner import JobLoadError, in_job_directory, load_job, run_job

    fail_fast_when_unreachable()  # as `klio job run`: someone is waiting
    note_ctrl_c()
    # in the job's directory, from its import on, as `klio job run` runs it
    with in_job_directory(job.job_dir, job.config_file) as (directory, config_path):
        try:
            overrides = {**parse_overrides(job.overrides), **profiling_overrides()}
            config, run_fn, _ = load_job(
                directory, config_path, overrides, parse_templates(job.templates)
            )
        except ConfigError as err:
            refuse_config(err)
        except JobLoadError as err:
            fail(str(err))
        try:
            direct = KlioRunner.DIRECT_RUNNER.value
            summary = run_job(config, run_fn, direct, events_from=str(ids_file))
        except Exception as err:
            stopped_if_ctrl_c()  # Beam reports Ctrl-C inside a step as the pipeline's failure
            fail(f"the profiled run failed: {type(err).__name__}: {err}", EXIT_FAILED)
    stopped_if_ctrl_c()
    skipped = summary.skipped.get("output_exists", 0)
    click.echo(
        f"profiled run: {summary.received} received, {summary.processed} sent to run,"
        f" {skipped} skipped (output exists), {sum(summary.dropped.values())} dropped",
        err=True,
    )
    if skipped and not summary.processed:
        click.echo(
            "hint: every element's data output exists, so none reached run: remove those"
            " outputs to profile the job's work on them",
            err=True,
        )


def _run_line_profiled(
    job: JobOptions, ids_file: Path, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Run with ``@profile`` wrapping what it marks: set before the job's modules load."""
    from klio_runtime import decorators
    from klio_runtime.runner import forget_other_jobs_modules

    forget_other_jobs_modules(None)  # a copy imported before would not be wrapped
    decorators.ACTIVE_PROFILER = wrapper
    try:
        _run_over(job, ids_file)
    finally:
        decorators.ACTIVE_PROFILER = None


def _warn_if_nothing_marked(profiled: bool) -> None:
    if not profiled:
        click.echo(
            "warning: no function or method of the job is marked with @profile (from"
            " klio.transforms.decorators import profile): nothing was measured line by line",
            err=True,
        )


@profile.command("timeit")
@input_file_option
@output_file_option
@click.option(
    "--iterations",
    "-n",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Number of times to run each element id.",
)
@show_logs_option
@entity_ids_argument
@job_and_config_options
def timeit(
    job: JobOptions,
    input_file: Path | None,
    output_file: Path | None,
    iterations: int,
    show_logs: bool,
    entity_ids: tuple[str, ...],
) -> None:
    """Wall time of every line of the functions marked with @profile (line_profiler), in seconds."""
    from klio_runtime.profiling import print_wall_times, wall_time_profiler

    profiler = wall_time_profiler()
    with _ids_file(job, input_file, entity_ids, iterations) as ids_file, _logs_shown(show_logs):
        _run_line_profiled(job, ids_file, profiler)
    _warn_if_nothing_marked(bool(profiler.functions))
    with _output(output_file) as stream:
        print_wall_times(profiler, stream)


@profile.command("memory-per-line")
@click.option(
    "--maximum",
    "get_maximum",
    is_flag=True,
    help="The most memory each line reached over all elements (one table).",
)
@click.option(
    "--per-element",
    is_flag=True,
    help="A table for each element processed (the default).",
)
@input_file_option
@output_file_option
@show_logs_option
@entity_ids_argument
@job_and_config_options
def memory_per_line(
    job: JobOptions,
    get_maximum: bool,
    per_element: bool,
    input_file: Path | None,
    output_file: Path | None,
    show_logs: bool,
    entity_ids: tuple[str, ...],
) -> None:
    """Memory of every line of the functions marked with @profile (memory_profiler)."""
    from klio_runtime.profiling import (
        memory_line_profiler,
        memory_per_element,
        show_memory,
        traced_by,
    )

    if get_maximum and per_element:
        raise click.UsageError("--maximum and --per-element are mutually exclusive.")
    marked: list[str] = []
    with (
        _ids_file(job, input_file, entity_ids) as ids_file,
        # Per element: appended to, as Klio does (a table per call, written as it returns).
        _output(output_file, "w" if get_maximum else "a") as stream,
    ):
        profiler = memory_line_profiler()
        wrap = (
            (lambda func: traced_by(profiler, func)) if get_maximum else memory_per_element(stream)
        )

        def wrapper(func: Callable[..., Any]) -> Callable[..., Any]:
            marked.append(getattr(func, "__qualname__", repr(func)))
            return wrap(func)

        with _logs_shown(show_logs):
            _run_line_profiled(job, ids_file, wrapper)
        _warn_if_nothing_marked(bool(marked))
        if get_maximum:
            show_memory(profiler, stream)


def _profile_child(
    measure: SampledMeasure,
    job: JobOptions,
    input_file: Path | None,
    entity_ids: tuple[str, ...],
    output_file: Path | None,
    plot_graph: bool,
    show_logs: bool,
    sample: Callable[[subprocess.Popen[bytes], IO[str]], None],
) -> None:
    """Run the job in a child process (``run-pipeline``) and sample it until it ends."""
    from klio_runtime.profiling import ProfileInputError, plot, png_path

    job.load_config()  # refused here, before any sample is taken (the child would fail later)

    if plot_graph and output_file is not None and output_file.suffix.lower() == ".png":
        raise click.UsageError(
            f"--output-file {output_file}: the samples are text; the plot goes beside them,"
            f" to {output_file.with_suffix('.png')}: name the samples file otherwise"
        )
    started = time.localtime()
    with (
        _ids_file(job, input_file, entity_ids) as ids_file,
        tempfile.TemporaryDirectory() as scratch,
    ):
        command = [
            sys.executable,
            "-m",
            "klio_runtime.cli",
            "job",
            "profile",
            "run-pipeline",
            *job.as_arguments(),
            "--ids-file",
            str(ids_file),
        ]
        if show_logs:
            command.append("--show-logs")
        # A plot without an output file still needs the samples somewhere: a scratch file.
        samples = output_file or (Path(scratch) / "samples.txt" if plot_graph else None)
        # its own session: Ctrl-C reaches this command only, which stops the run below
        process = subprocess.Popen(command, start_new_session=True)
        try:
            with _output(samples) as stream:
                sample(process, stream)
        except KeyboardInterrupt:
            process.terminate()
            raise
        finally:
            code = process.wait()
        if code != 0:
            fail(f"the profiled run failed (exit code {code})", EXIT_FAILED)
        if plot_graph and samples is not None:
            try:
                png = plot(
                    samples,
                    png_path(measure.name, output_file, started),
                    measure.y_label,
                    measure.title,
                )
            except ProfileInputError as err:
                fail(str(err), EXIT_FAILED)
            click.echo(f"{measure.announced} plot graph generated at: {png}")


@profile.command("cpu")
@interval_option
@input_file_option
@output_file_option
@plot_graph_option
@show_logs_option
@entity_ids_argument
@job_and_config_options
def cpu(
    job: JobOptions,
    interval: float,
    input_file: Path | None,
    output_file: Path | None,
    plot_graph: bool,
    show_logs: bool,
    entity_ids: tuple[str, ...],
) -> None:
    """The job's CPU use on an interval while it runs: `CPU <percent> <unix time>` lines."""
    from klio_runtime.profiling import sample_cpu

    def sample(process: subprocess.Popen[bytes], stream: IO[str]) -> None:
        sample_cpu(process, stream, interval)

    _profile_child(CPU, job, input_file, entity_ids, output_file, plot_graph, show_logs, sample)


@profile.command("memory")
@interval_option
@click.option(
    "--include-children", is_flag=True, help="Add the memory of the run's child processes."
)
@click.option(
    "--multiprocess", is_flag=True, help="Also sample each child process on its own line."
)
@input_file_option
@output_file_option
@plot_graph_option
@show_logs_option
@entity_ids_argument
@job_and_config_options
def memory(
    job: JobOptions,
    interval: float,
    include_children: bool,
    multiprocess: bool,
    input_file: Path | None,
    output_file: Path | None,
    plot_graph: bool,
    show_logs: bool,
    entity_ids: tuple[str, ...],
) -> None:
    """The job's memory on an interval while it runs: memory_profiler's `MEM <MiB> <unix time>`."""
    from klio_runtime.profiling import sample_memory

    def sample(process: subprocess.Popen[bytes], stream: IO[str]) -> None:
        sample_memory(process, stream, interval, include_children, multiprocess)

    _profile_child(MEMORY, job, input_file, entity_ids, output_file, plot_graph, show_logs, sample)


@profile.command("run-pipeline", hidden=True)
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The element ids to run over, one per line.",
)
@show_logs_option
@job_and_config_options
def run_pipeline(job: JobOptions, ids_file: Path, show_logs: bool) -> None:
    """The run `cpu` and `memory` sample, in its own process."""
    with _logs_shown(show_logs):
        try:
            _run_over(job, ids_file)
        except KeyboardInterrupt:
            # Ctrl-C reached the whole process group: the sampling command says it stopped
            raise SystemExit(EXIT_INTERRUPTED) from None
