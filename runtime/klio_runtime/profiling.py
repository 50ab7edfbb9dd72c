"""What ``klio job profile`` measures, as Klio's ``klio job profile`` does.

The job runs over the given elements (an input file of ids, or ids on the command line) on the
in-process runner, with its event outputs left out: everything else (the built-in steps, ``run``,
data IO) as in ``klio job run``. Four measures:

- ``cpu`` and ``memory``: the run happens in a child process, sampled on an interval; one line per
  sample, ``CPU <percent> <unix time>`` or memory_profiler's ``MEM <MiB> <unix time>``, which
  :func:`plot` can draw.
- ``timeit`` and ``memory-per-line``: line by line, in this process, for the functions and
  methods the job marks with ``@profile`` (line_profiler's wall time; memory_profiler's memory).
"""

from __future__ import annotations

import functools
import inspect
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from klio_runtime.config import KlioRunner

CPU_LABEL = "CPU"
"""The first word of a CPU sample line (memory_profiler's memory lines start with ``MEM``)."""


class ProfileInputError(ValueError):
    """The elements to profile with are missing, given twice, or unreadable."""


def element_ids(input_file: Path | None, entity_ids: Sequence[str]) -> list[str]:
    """The ids to run the job over: the file's non-empty lines, or the ones given.

    Raises ProfileInputError (Klio's rules): neither or both given, an unreadable or empty file.
    """
    if input_file is None and not entity_ids:
        raise ProfileInputError("Must provide `--input-file` or a list of entity IDs.")
    if input_file is not None and entity_ids:
        raise ProfileInputError(
            "Illegal usage: `--input-file` is mutually exclusive with entity ID arguments."
        )
    if input_file is None:
        return list(entity_ids)
    try:
        lines = input_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ProfileInputError(
            f"--input-file {input_file}: no such file (a relative path is looked for in the job"
            " directory, then here)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileInputError(f"--input-file {input_file}: cannot read: {exc}") from None
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        raise ProfileInputError(f"--input-file {input_file}: no element ids in it")
    return ids


def write_ids_file(ids: Iterable[str], iterations: int, path: Path) -> Path:
    """The event input of the profiled run: each id ``iterations`` times in a row (Klio repeats
    each element so that a line's time is measured over several calls)."""
    if iterations < 1:
        raise ProfileInputError(f"--iterations must be at least 1, not {iterations}")
    path.write_text("".join(f"{i}\n" * iterations for i in ids), encoding="utf-8")
    return path


def profiling_overrides() -> dict[str, Any]:
    """Config overrides for the profiled run: no event outputs and no dead-letter topic (as in
    Klio, profiling writes no events), run here as a batch. Its event inputs stay as configured
    (the job may read them); each reads the ids file instead (``build_pipeline``'s
    ``events_from``)."""
    return {
        "job_config.events.outputs": [],
        "job_config.dead_letter_topic": None,
        "pipeline_options.runner": KlioRunner.DIRECT_RUNNER.value,
        "pipeline_options.streaming": False,
    }


# -- line by line: the profilers ``@profile`` wraps with ---------------------------------------


def wall_time_profiler() -> Any:
    """line_profiler's profiler: handed to ``@profile`` it times every line of what it wraps
    (generator functions included), in whichever thread runs it."""
    from line_profiler import LineProfiler

    return LineProfiler()


def print_wall_times(profiler: Any, stream: IO[str]) -> None:
    """The line timings, in seconds (Klio's ``output_unit=1``)."""
    profiler.print_stats(stream=stream, output_unit=1)


def memory_line_profiler() -> Any:
    """memory_profiler's line profiler, reading memory as psutil does."""
    from memory_profiler import LineProfiler

    return LineProfiler(backend="psutil")


def traced_by(profiler: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with memory_profiler's line tracing on while it runs; unlike memory_profiler's own
    wrapper, a generator function is traced while it yields, not only while it is created."""
    profiler.add_function(func)
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            profiler.enable_by_count()
            try:
                yield from func(*args, **kwargs)
            finally:
                profiler.disable_by_count()

        return generator_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        profiler.enable_by_count()
        try:
            return func(*args, **kwargs)
        finally:
            profiler.disable_by_count()

    return wrapper


def memory_per_element(stream: IO[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """For ``@profile``: each call measured on its own and its table written when it returns."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        from memory_profiler import show_results

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator_call(*args: Any, **kwargs: Any) -> Iterator[Any]:
                profiler = memory_line_profiler()
                try:
                    yield from traced_by(profiler, func)(*args, **kwargs)
                finally:
                    show_results(profiler, stream=stream)

            return generator_call

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            profiler = memory_line_profiler()
            try:
                return traced_by(profiler, func)(*args, **kwargs)
            finally:
                show_results(profiler, stream=stream)

        return call

    return wrap


def show_memory(profiler: Any, stream: IO[str]) -> None:
    """memory_profiler's table: the most memory each line reached over all calls."""
    from memory_profiler import show_results

    show_results(profiler, stream=stream)


# -- sampling a child process ------------------------------------------------------------------


def sample_memory(
    process: subprocess.Popen[bytes],
    stream: IO[str],
    interval: float,
    include_children: bool = False,
    multiprocess: bool = False,
) -> None:
    """memory_profiler's samples of the process until it ends: ``MEM <MiB> <unix time>``;
    ``include_children`` sums its children in, ``multiprocess`` adds a ``CHLD`` line per child."""
    from memory_profiler import memory_usage

    memory_usage(
        proc=process,
        interval=interval,
        timestamps=True,
        include_children=include_children,
        multiprocess=multiprocess,
        stream=stream,
    )


def sample_cpu(process: subprocess.Popen[bytes], stream: IO[str], interval: float) -> None:
    """The process's CPU (its children included) until it ends: ``CPU <percent> <unix time>``,
    where 100 is one core fully used; the last sample covers the run's end, so even a run
    shorter than the interval gets one. (Klio sampled the whole machine's CPU; the job's own is
    what a job author reads this for.) The process is left for the caller to reap."""
    import psutil

    try:
        watched = psutil.Process(process.pid)
    except psutil.NoSuchProcess:
        return
    tracked: dict[int, psutil.Process] = {}

    def percent() -> float:
        # cpu_percent measures since the same Process object's previous call: keep each one.
        try:
            members = [watched, *watched.children(recursive=True)]
        except psutil.NoSuchProcess:
            members = [watched]
        total = 0.0
        for member in members:
            try:
                total += tracked.setdefault(member.pid, member).cpu_percent(interval=None)
            except psutil.NoSuchProcess:
                tracked.pop(member.pid, None)
        return total

    def ended() -> bool:
        # Without reaping it (Popen.poll would): an exited process stays a readable zombie.
        try:
            return watched.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    percent()  # the first call only starts each process's measure
    written = 0
    next_sample = time.monotonic() + interval
    while True:
        time.sleep(max(0.0, min(_END_CHECK_SECONDS, next_sample - time.monotonic())))
        done = ended()
        if done or time.monotonic() >= next_sample:
            stream.write(f"{CPU_LABEL} {percent():.1f} {time.time():.4f}\n")
            written += 1
            next_sample += interval
            if written % 50 == 0:  # `tail -f` on the file shows progress
                stream.flush()
        if done:
            break
    stream.flush()


_END_CHECK_SECONDS = 0.05
"""How often :func:`sample_cpu` looks whether the run ended, between samples."""


# -- plotting ----------------------------------------------------------------------------------


def read_samples(path: Path) -> tuple[list[float], list[float]]:
    """(seconds since the first sample, value) of a samples file's ``CPU``/``MEM`` lines."""
    values: list[float] = []
    stamps: list[float] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in (CPU_LABEL, "MEM"):
            continue
        values.append(float(parts[1]))
        stamps.append(float(parts[2]))
    if not values:
        raise ProfileInputError(
            "no samples to plot: the run ended before the first one (try a smaller --interval)"
        )
    return [stamp - stamps[0] for stamp in stamps], values


def plot(samples: Path, png: Path, y_label: str, title: str) -> Path:
    """Draw a samples file over time into ``png`` (matplotlib, no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise ProfileInputError(
            "--plot-graph needs matplotlib: pip install matplotlib (or klio-k8s[audio])"
        ) from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    seconds, values = read_samples(samples)
    figure = pyplot.figure(figsize=(14, 6), dpi=90)
    try:
        pyplot.plot(seconds, values, "+-c")
        pyplot.xlabel("Time (in seconds)")
        pyplot.ylabel(y_label)
        pyplot.title(title)
        pyplot.grid()
        figure.savefig(png)
    finally:
        pyplot.close(figure)
    return png


def png_path(what: str, output_file: Path | None, started: time.struct_time) -> Path:
    """Where a plot goes: beside the output file, with ``.png``; else Klio's name in the current
    directory, ``klio_profile_<what>_<YYYYmmddHHMMSS>.png``."""
    if output_file is not None:
        return output_file.with_suffix(".png")
    return Path(f"klio_profile_{what}_{time.strftime('%Y%m%d%H%M%S', started)}.png")
