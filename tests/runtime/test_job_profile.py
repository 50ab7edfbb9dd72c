"""`klio job profile` as a subprocess, on a job whose steps are marked with Klio's ``@profile``."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.runtime.helpers import KLIO, klio_in

TRANSFORMS = """
import apache_beam as beam
from klio.transforms import decorators


class Shout(beam.DoFn):
    @decorators.handle_klio
    @decorators.profile
    def process(self, item):
        text = item.element.decode("utf-8").upper()
        if text == "BAD":
            raise ValueError("cannot shout bad")
        yield text  # Klio: a str yielded becomes the payload


@decorators.handle_klio
@decorators.profile
def count_letters(ctx, item):
    letters = len(item.payload)
    ctx.logger.info("%d letters", letters)
    return item
"""
RUN = """
import apache_beam as beam
import transforms


def run(input_pcol, config):
    return input_pcol | beam.ParDo(transforms.Shout()) | beam.Map(transforms.count_letters)
"""
CONFIG = """
version: 2
job_name: profiled
pipeline_options:
  streaming: true
  runner: DataflowRunner
job_config:
  events:
    inputs:
      - type: pubsub
        topic: projects/p/topics/in
        subscription: projects/p/subscriptions/in
    outputs:
      - type: file
        location: ./out/events
"""


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A streaming Dataflow job: profiling runs it here, as a batch over the ids given."""
    directory = tmp_path / "profiled"
    directory.mkdir()
    (directory / "klio-job.yaml").write_text(CONFIG)
    (directory / "run.py").write_text(RUN)
    (directory / "transforms.py").write_text(TRANSFORMS)
    return directory


def profile(job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return klio_in(job, "job", "profile", *args)


def hits(report: str, line: str) -> int:
    """The Hits column (line_profiler) of a source line's row."""
    for row in report.splitlines():
        if row.rstrip().endswith(line):
            return int(row.split()[1])
    raise AssertionError(f"no row for {line!r} in:\n{report}")


def occurrences(report: str, line: str) -> int:
    """The Occurrences column (memory_profiler: line, usage MiB, increment MiB, occurrences)."""
    for row in report.splitlines():
        if row.rstrip().endswith(line):
            return int(row.split()[5])
    raise AssertionError(f"no row for {line!r} in:\n{report}")


def test_timeit_times_each_marked_line_over_every_iteration(job: Path) -> None:
    done = profile(job, "timeit", "-n", "3", "alpha", "bravo")

    assert done.returncode == 0, done.stderr
    assert "Timer unit: 1 s" in done.stdout
    assert "Function: Shout.process" in done.stdout
    assert "Function: count_letters" in done.stdout
    assert hits(done.stdout, 'text = item.element.decode("utf-8").upper()') == 6
    assert hits(done.stdout, "letters = len(item.payload)") == 6
    assert "profiled run: 6 received, 6 sent to run" in done.stderr
    assert not (job / "out").exists()  # profiling writes no events
    assert "letters" not in done.stderr  # the job's logs are hidden unless asked


def test_timeit_goes_on_past_an_element_that_raises_and_shows_logs_on_request(
    job: Path,
) -> None:
    (job / "ids.txt").write_text("alpha\nbad\n\n")

    done = profile(job, "timeit", "-n", "1", "--show-logs", "-i", "ids.txt")

    assert done.returncode == 0, done.stderr
    assert hits(done.stdout, 'text = item.element.decode("utf-8").upper()') == 2
    assert hits(done.stdout, "letters = len(item.payload)") == 1
    assert "2 received, 2 sent to run, 0 skipped (output exists), 1 dropped" in done.stderr
    assert "5 letters" in done.stderr
    assert "cannot shout bad" in done.stderr


def test_memory_per_line_writes_a_table_per_call_or_the_maximum_over_all(job: Path) -> None:
    per_call = profile(job, "memory-per-line", "-o", "lines.txt", "alpha", "bravo")
    maximum = profile(job, "memory-per-line", "--maximum", "alpha", "bravo")

    assert per_call.returncode == 0, per_call.stderr
    tables = (job / "lines.txt").read_text()
    # two elements through two marked functions: a table for each call
    assert tables.count("Mem usage") == 4
    assert occurrences(tables, "letters = len(item.payload)") == 1
    assert maximum.returncode == 0, maximum.stderr
    assert maximum.stdout.count("Mem usage") == 2
    assert occurrences(maximum.stdout, "letters = len(item.payload)") == 2
    assert re.search(r"\d+\.\d MiB", maximum.stdout)


SAMPLE = re.compile(r"^(CPU|MEM) \d+\.\d+ \d{10}\.\d{4}$")


def test_cpu_samples_the_run_until_it_ends(job: Path) -> None:
    done = profile(job, "cpu", "--interval", "0.05", "-o", "cpu.txt", "alpha")

    assert done.returncode == 0, done.stderr
    samples = (job / "cpu.txt").read_text().splitlines()
    assert samples and all(SAMPLE.match(line) and line.startswith("CPU ") for line in samples)
    assert max(float(line.split()[1]) for line in samples) > 0  # the run did work
    stamps = [float(line.split()[2]) for line in samples]
    assert stamps == sorted(stamps)


def test_memory_samples_and_plots(job: Path) -> None:
    done = profile(job, "memory", "-g", "-o", "memory.txt", "alpha")

    assert done.returncode == 0, done.stderr
    samples = (job / "memory.txt").read_text().splitlines()
    assert samples and all(SAMPLE.match(line) and line.startswith("MEM ") for line in samples)
    assert max(float(line.split()[1]) for line in samples) > 50  # MiB of a Beam run
    assert "Memory plot graph generated at: memory.png" in done.stdout
    assert (job / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["timeit"], "Must provide `--input-file` or a list of entity IDs."),
        (["timeit", "-i", "ids.txt", "alpha"], "mutually exclusive with entity ID arguments"),
        (["memory-per-line", "--maximum", "--per-element", "alpha"], "mutually exclusive"),
        (["timeit", "-n", "0", "alpha"], "--iterations"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(job: Path, args: list[str], says: str) -> None:
    (job / "ids.txt").write_text("alpha\n")

    done = profile(job, *args)

    assert done.returncode == 2
    assert says in done.stderr


def test_a_job_without_marks_is_told_so(job: Path) -> None:
    (job / "transforms.py").write_text(
        re.sub(r"^ *@decorators\.profile\n", "", TRANSFORMS, flags=re.MULTILINE)
    )

    done = profile(job, "timeit", "-n", "1", "alpha")

    assert done.returncode == 0, done.stderr
    assert "no function or method of the job is marked with @profile" in done.stderr


def test_a_failing_run_fails_the_profile(job: Path) -> None:
    (job / "run.py").write_text("raise RuntimeError('broken job')\n")

    timed = profile(job, "timeit", "alpha")
    sampled = profile(job, "cpu", "alpha")

    assert timed.returncode == 2
    assert "run.py: import failed: RuntimeError: broken job" in timed.stderr
    assert sampled.returncode == 1
    assert "the profiled run failed (exit code 2)" in sampled.stderr


def test_klio_config_options_reach_the_run_in_both_processes(job: Path) -> None:
    (job / "klio-job.yaml").write_text(CONFIG.replace("job_name: profiled", "job_name: p-$SUFFIX"))

    untemplated = profile(job, "timeit", "-n", "1", "alpha")
    templated = profile(job, "timeit", "-n", "1", "-T", "SUFFIX=x", "--image-tag", "v1", "alpha")
    sampled = profile(job, "cpu", "-T", "SUFFIX=x", "-o", "cpu.txt", "alpha")
    overridden = profile(job, "timeit", "-T", "SUFFIX=x", "-O", "version=7", "alpha")
    overridden_child = profile(job, "cpu", "-T", "SUFFIX=x", "-O", "version=7", "alpha")

    assert untemplated.returncode == 2
    assert "template variable $SUFFIX has no value" in untemplated.stderr
    assert templated.returncode == 0, templated.stderr
    assert sampled.returncode == 0, sampled.stderr
    assert overridden.returncode == 2
    assert "version: only version 2" in overridden.stderr
    assert overridden_child.returncode == 2  # refused before the sampled child starts
    assert "version: only version 2" in overridden_child.stderr


def test_a_short_run_still_gets_a_cpu_sample_and_dash_is_stdout(job: Path) -> None:
    done = profile(job, "cpu", "--interval", "30", "-o", "-", "alpha")

    assert done.returncode == 0, done.stderr
    samples = done.stdout.splitlines()
    assert len(samples) == 1 and SAMPLE.match(samples[0]) and samples[0].startswith("CPU ")
    assert not (job / "-").exists()


def test_input_file_is_looked_for_in_the_job_dir_first(job: Path, tmp_path: Path) -> None:
    (job / "ids.txt").write_text("alpha\nbravo\n")

    done = klio_in(tmp_path, "job", "profile", "timeit", "-n", "1", "-j", str(job), "-i", "ids.txt")
    missing = profile(job, "timeit", "-i", "nope.txt")

    assert done.returncode == 0, done.stderr
    assert hits(done.stdout, "letters = len(item.payload)") == 2
    assert missing.returncode == 2
    assert "--input-file nope.txt: no such file" in missing.stderr


def test_an_unwritable_output_file_is_refused_before_the_run_and_kept(job: Path) -> None:
    (job / "previous.txt").write_text("earlier results\n")

    no_dir = profile(job, "timeit", "-o", "missing/out.txt", "alpha")
    no_ids = profile(job, "memory-per-line", "--maximum", "-o", "previous.txt")

    assert no_dir.returncode == 2
    assert "no such directory: missing" in no_dir.stderr
    assert "profiled run" not in no_dir.stderr  # refused before the job ran
    assert no_ids.returncode == 2
    assert (job / "previous.txt").read_text() == "earlier results\n"


def test_profile_above_a_klio_decorator_is_warned_about(job: Path) -> None:
    (job / "transforms.py").write_text(
        TRANSFORMS.replace(
            "@decorators.handle_klio\n@decorators.profile\ndef count_letters",
            "@decorators.profile\n@decorators.handle_klio\ndef count_letters",
        )
    )

    done = profile(job, "timeit", "-n", "1", "alpha")

    assert done.returncode == 0, done.stderr
    assert "@profile is above a Klio decorator on count_letters" in done.stderr
    assert "put @profile last (innermost)" in done.stderr


def test_a_png_samples_file_is_refused_with_a_plot(job: Path) -> None:
    done = profile(job, "memory", "-g", "-o", "samples.png", "alpha")

    assert done.returncode == 2
    assert "the samples are text" in done.stderr


MULTI_RUN = """
import apache_beam as beam


def run(pcolls, config):
    # as Klio's multi-event-input jobs: one field per input; the job reads its own config
    topic = config.job_config.events.inputs[0].topic
    first = pcolls.pubsub0 | "First" >> beam.Map(lambda data: data)
    second = pcolls.file1 | "Second" >> beam.Map(lambda data: data)
    assert topic == "projects/p/topics/in"
    return (first, second) | beam.Flatten()
"""
MULTI_CONFIG = """
version: 2
job_name: profiled-multi
pipeline_options:
  streaming: true
  runner: DataflowRunner
job_config:
  dead_letter_topic: projects/p/topics/dead
  events:
    inputs:
      - type: pubsub
        topic: projects/p/topics/in
      - type: file
        location: ./more-ids.txt
    outputs:
      - type: pubsub
        topic: projects/p/topics/out
"""


def test_every_event_input_reads_the_ids_and_the_job_sees_its_own_config(
    tmp_path: Path,
) -> None:
    # As Klio's profiler: each input (here a topic and a file) gets the ids, under its own name,
    # and the config the job reads keeps its inputs; nothing is published (no credentials here).
    directory = tmp_path / "multi"
    directory.mkdir()
    (directory / "klio-job.yaml").write_text(MULTI_CONFIG)
    (directory / "run.py").write_text(MULTI_RUN)
    done = profile(directory, "timeit", "-n", "1", "a", "b")
    assert done.returncode == 0, done.stderr
    assert "profiled run: 4 received, 4 sent to run" in done.stderr


def test_a_bad_config_is_refused_before_any_sample(tmp_path: Path) -> None:
    for measure in ("cpu", "memory"):
        refused = profile(tmp_path, measure, "a")
        assert refused.returncode == 2, refused.stderr
        assert "klio-job.yaml: no such file" in refused.stderr
        assert refused.stdout == ""  # no samples printed first


def test_a_report_with_stdout_closed_goes_nowhere_and_the_run_still_ends_well(job: Path) -> None:
    done = subprocess.run(
        [KLIO, "job", "profile", "timeit", "-n", "1", "alpha"],
        cwd=job,
        stderr=subprocess.PIPE,
        text=True,
        timeout=240,
        preexec_fn=lambda: os.close(1),  # as `>&-` leaves it
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "profiled run: 1 received, 1 sent to run" in done.stderr
