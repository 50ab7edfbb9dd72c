"""`klio job run` and `klio job create` as subprocesses, on real files and on the GCS emulator."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from klio_runtime.io.events import encode_line
from klio_runtime.message import new_message

from tests.runtime.helpers import klio_in

REPO = Path(__file__).resolve().parents[2]
KLIO = str(Path(sys.executable).parent / "klio")
JOBS = Path(__file__).parent / "jobs"
N = 1000


def klio(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")
    }
    return subprocess.run(
        [KLIO, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**base, **(env or {})},
        check=False,
        cwd=cwd,
    )


def run_job(job_dir: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    summary = job_dir / "summary.json"
    done = klio(
        "job", "run", "--job-dir", str(job_dir), "--summary-json", str(summary), *extra, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "klio job run: summary" in done.stdout
    result: dict[str, Any] = json.loads(summary.read_text())
    result["stdout"], result["stderr"] = done.stdout, done.stderr
    return result


def event_ids(prefix: Path) -> list[str]:
    lines: list[str] = []
    for shard in sorted(prefix.parent.glob(prefix.name + "-[0-9]*-of-[0-9]*")):
        lines += shard.read_text().split()
    return sorted(lines)


@pytest.fixture
def uppercase_job(tmp_path: Path) -> Path:
    job = tmp_path / "uppercase"
    job.mkdir()
    for name in ("klio-job.yaml", "run.py", "transforms.py"):
        shutil.copy(REPO / "examples" / "uppercase" / name, job / name)
    (job / "data" / "input").mkdir(parents=True)
    ids = [f"track-{i:04d}" for i in range(N)]
    for element in ids:
        (job / "data" / "input" / f"{element}.txt").write_text(f"text of {element}\n")
    (job / "ids.txt").write_text("\n".join(ids) + "\n")
    return job


@pytest.mark.slow
def test_uppercase_1000_then_skip_ping_and_force(uppercase_job: Path) -> None:
    job = uppercase_job
    first = run_job(job)
    assert (first["received"], first["processed"], first["output"]) == (N, N, N)
    assert klio_lines_without_element(first["stderr"]) == []  # the built-in checks' lines too
    assert first["dropped"] == {} and first["dead_letter"] == {}
    for i in range(N):
        element = f"track-{i:04d}"
        written = (job / "out" / "data" / f"{element}.txt").read_text()
        assert written == f"TEXT OF {element.upper()}\n"
    assert event_ids(job / "out" / "events" / "uppercased") == [f"track-{i:04d}" for i in range(N)]
    assert "received" in first["stdout"] and str(N) in first["stdout"]

    again = run_job(job, "--no-progress")
    assert again["processed"] == 0 and again["skipped"] == {"output_exists": N}
    assert again["output"] == N

    (job / "data" / "input" / "track-0001.txt").write_text("changed\n")
    specials = job / "specials.txt"
    specials.write_text(
        "\n".join(
            [
                encode_line(new_message("track-0000", ping=True)),
                encode_line(new_message("track-0001", force=True)),
                "track-0002",
            ]
        )
        + "\n"
    )
    mixed = run_job(job, "--no-progress", "-O", f"job_config.events.inputs[0].location={specials}")
    assert mixed["skipped"] == {"ping": 1, "output_exists": 1}
    assert mixed["processed"] == 1 and mixed["output"] == 3
    assert "INFO klio [track-0000] Pass through 'track-0000': Ping mode ON." in mixed["stderr"]
    assert klio_lines_without_element(mixed["stderr"]) == []
    assert (job / "out" / "data" / "track-0001.txt").read_text() == "CHANGED\n"

    # Klio's spelling: an IO entry named by its type and its position among that type
    forced = run_job(job, "--no-progress", "-O", "job_config.data.outputs.file0.force=true")
    assert forced["processed"] == N and forced["skipped"] == {}


@pytest.mark.slow
def test_bad_input_each_counted_by_reason_and_id_rest_done(tmp_path: Path) -> None:
    job = tmp_path / "bad"
    shutil.copytree(JOBS / "bad_input", job, ignore=shutil.ignore_patterns("out"))
    (job / "ids.txt").write_bytes(
        b"ok-1\nok-2\nraise-1\nok-3\nslow-1\n../escape\n\xff\xfebroken\nok-4\n"
    )
    result = run_job(job, "--no-progress")
    assert result["dropped"] == {"run_error": 1, "timeout": 1}
    assert result["dropped_ids"] == {"run_error": ["raise-1"], "timeout": ["slow-1"]}
    assert result["dead_letter"] == {"invalid_element_id": 1, "malformed_line": 1}
    assert result["dead_letter_ids"]["invalid_element_id"] == ["../escape"]
    # named as the config names it: the job runs in its directory, as Klio runs it
    assert result["dead_letter_ids"]["malformed_line"] == ["./ids.txt:7"]
    assert event_ids(job / "out" / "events") == ["ok-1", "ok-2", "ok-3", "ok-4"]
    letters = [
        json.loads(line)
        for shard in (job / "out" / "dead-letter").glob("events-*.jsonl")
        for line in shard.read_text().splitlines()
    ]
    assert sorted(d["reason"] for d in letters) == ["invalid_element_id", "malformed_line"]
    assert "cannot handle raise-1" in result["stderr"]
    assert "[slow-1]" in result["stderr"] and "timed out" in result["stderr"]


@pytest.mark.slow
def test_klio_style_job_runs_unchanged(tmp_path: Path) -> None:
    job = tmp_path / "klio_style"
    shutil.copytree(JOBS / "klio_style", job, ignore=shutil.ignore_patterns("out"))
    result = run_job(job, "--direct-runner", "--no-progress")
    assert result["processed"] == 5 and result["output"] == 5
    assert event_ids(job / "out" / "events") == ["n-1", "n-2", "n-3", "n-4", "n-5"]
    assert "DEBUG klio [n-3] tagging n-3" in result["stderr"]
    assert "INFO klio [n-4] greeting with hi" in result["stderr"]


def klio_lines_without_element(stderr: str) -> list[str]:
    """Lines of the ``klio`` logger that name no element (``[-]``)."""
    return [line for line in stderr.splitlines() if " klio [-] " in line]


def test_helper_transforms_log_each_line_with_its_element(tmp_path: Path) -> None:
    job = tmp_path / "klio_helpers"
    shutil.copytree(JOBS / "klio_helpers", job)
    (job / "data" / "out").mkdir()
    (job / "data" / "out" / "b.txt").write_text("b\n")  # b's output exists: passed through
    result = run_job(job, "--no-progress")
    err = result["stderr"]
    assert klio_lines_without_element(err) == []
    # locations as the config writes them: the job runs in its directory, as Klio runs it
    for line in (
        "INFO klio [a] Output not found at ./data/out/a.txt",
        "INFO klio [b] Pass through 'b': Force mode OFF with output found at "
        "'./data/out/b.txt'.",
        "INFO klio [a] Input found at ./data/in/a.txt",
        "DEBUG klio [a] Process 'a': Ping mode OFF.",
        "INFO klio [a] working",
        "INFO klio [c] Input not found at ./data/in/c.txt",
        "INFO klio [c] Dropping KlioMessage - can not process 'b'c'' any further.",
    ):
        assert line in err


@pytest.mark.slow
def test_created_job_runs_as_created(tmp_path: Path) -> None:
    created = klio("job", "create", "--job-dir", str(tmp_path / "new"), "--job-name", "my-job")
    assert created.returncode == 0, created.stderr
    for name in (
        "klio-job.yaml",
        "run.py",
        "transforms.py",
        "Dockerfile",
        "job-requirements.txt",
        "tests/test_transforms.py",
        "my-job_input_elements.txt",
    ):
        assert (tmp_path / "new" / name).is_file()
    assert "FROM klio-runtime:0.1.0" in (tmp_path / "new" / "Dockerfile").read_text()
    result = run_job(tmp_path / "new", "--no-progress")
    assert result["processed"] == 2 and result["output"] == 2
    tested = klio("job", "test", "-j", str(tmp_path / "new"), "--", "-q", "-p", "no:cacheprovider")
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
    # pytest's options before the job's, as Klio's command takes them
    tested = klio("job", "test", "-q", "-p", "no:cacheprovider", "-j", str(tmp_path / "new"))
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
    refused = klio("job", "create", "--job-dir", str(tmp_path / "new"), "--job-name", "Bad_Name")
    assert refused.returncode == 2 and "Bad_Name" in refused.stderr
    again = klio("job", "create", "--job-dir", str(tmp_path / "new"), "--job-name", "my-job")
    assert again.returncode == 2
    assert "already has Dockerfile, job-requirements.txt, klio-job.yaml" in again.stderr


@pytest.mark.slow
def test_klios_batch_quickstart_as_its_docs_tell_it(tmp_path: Path) -> None:
    """Klio's hello_klio_batch.rst: in a git project directory, `klio job create` with its
    flags writes the job there; the user writes the elements file; `klio job run
    --direct-runner` logs that it started and what each element's transform received."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    created = klio_in(
        tmp_path, "job", "create", "--job-name", "klio-quick-start", "--job-type", "batch",
        "--create-resources", "--use-defaults",
    )
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "klio-job.yaml").is_file() and (tmp_path / ".git").is_dir()
    (tmp_path / "klio-quick-start_input_elements.txt").write_text("hello\nworld\n")
    ran = klio_in(tmp_path, "job", "run", "--direct-runner")
    assert ran.returncode == 0, ran.stderr
    assert "Running pipeline with DirectRunner" in ran.stderr
    for element in ("hello", "world"):
        shown = f"Received '{element}' from file './klio-quick-start_input_elements.txt'"
        assert shown in ran.stderr


@pytest.mark.slow
def test_config_errors_exit_2_with_the_field(tmp_path: Path) -> None:
    (tmp_path / "klio-job.yaml").write_text("version: 2\njob_name: x\njob_config:\n  nonsense: [\n")
    (tmp_path / "run.py").write_text("def run(p, c):\n    return p\n")
    bad_yaml = klio("job", "run", "--job-dir", str(tmp_path))
    assert bad_yaml.returncode == 2 and "config error" in bad_yaml.stderr
    (tmp_path / "klio-job.yaml").write_text(
        "version: 2\njob_name: x\njob_config:\n  events:\n    inputs:\n      - type: file\n"
    )
    missing = klio("job", "run", "--job-dir", str(tmp_path))
    assert missing.returncode == 2 and "job_config.events.inputs[0].location" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_gs_data_without_credentials_fails_saying_what_to_set(uppercase_job: Path) -> None:
    env = {"HOME": str(uppercase_job), "CLOUDSDK_CONFIG": str(uppercase_job / "gcloud")}
    done = klio("job", "run", "--job-dir", str(uppercase_job), "--no-progress", "-O",
                "job_config.data.inputs[0].type=gcs", "-O",
                "job_config.data.inputs[0].location=gs://no-such-bucket/in", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DefaultCredentialsError" in done.stderr
    assert "hint: gs:// data and Pub/Sub need Google credentials" in done.stderr


@pytest.mark.slow
def test_uppercase_with_data_on_gcs_emulator(uppercase_job: Path, gcs_emulator: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="klio-local",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_emulator},
    )
    bucket = client.create_bucket("klio-data")
    ids = [f"track-{i:04d}" for i in range(50)]
    for element in ids:
        bucket.blob(f"input/{element}.txt").upload_from_string(f"cloud {element}\n")
    (uppercase_job / "ids.txt").write_text("\n".join([*ids, "track-9999"]) + "\n")
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator}
    overrides = [
        "-O",
        "job_config.data.inputs[0].type=gcs",
        "-O",
        "job_config.data.inputs[0].location=gs://klio-data/input",
        "--override",
        "job_config.data.outputs[0].type=gcs",
        "--override",
        "job_config.data.outputs[0].location=gs://klio-data/output",
        "--config-override",
        "job_config.events.outputs[0].location=gs://klio-data/events/out",
    ]
    result = run_job(uppercase_job, "--no-progress", *overrides, env=env)
    assert result["processed"] == 50 and result["dropped"] == {"input_missing": 1}
    for element in ids:
        assert (
            bucket.blob(f"output/{element}.txt").download_as_bytes()
            == f"CLOUD {element.upper()}\n".encode()
        )
    events = [b.name for b in client.list_blobs("klio-data", prefix="events/")]
    assert events == ["events/out-00000-of-00001"], "and no temporary object left"
    again = run_job(uppercase_job, "--no-progress", *overrides, env=env)
    assert again["skipped"] == {"output_exists": 50}
    # an event file on gs:// that is not there is refused by field, as a local one
    field = "job_config.events.inputs[0].location"
    missing = klio(
        "job", "run", "--job-dir", str(uppercase_job), "-O", f"{field}=gs://klio-data/no*.txt",
        env=env,
    )
    assert missing.returncode == 2, missing.stdout + missing.stderr
    said = f"config error {field}: 'gs://klio-data/no*.txt' matches no file"
    assert said in " ".join(missing.stderr.split()) and "Traceback" not in missing.stderr


def test_the_command_line_loads_without_beam() -> None:
    """`klio --help`, `klio message …` and the other commands that run no pipeline start in a
    fraction of a second: Beam (~1.5 s to import) comes only with a run."""
    code = "import sys, klio_runtime.cli; print(sorted(m for m in sys.modules if 'beam' in m))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_stop_and_delete_take_klios_config_options_without_image_ones() -> None:
    """As Klio's: `stop` and `delete` load the config only (Klio's with_klio_config); the
    commands that name an image (run, test, profile, audit, deploy) take --image-tag too."""
    from click.testing import CliRunner
    from klio_runtime.cli import main

    def options(*command: str) -> str:
        return CliRunner().invoke(main, [*command, "--help"]).output

    for command in (("job", "stop"), ("job", "delete")):
        shown = options(*command)
        assert "--config-file" in shown and "--template" in shown
        assert "--image-tag" not in shown and "--force-build" not in shown
    for command in (("job", "run"), ("job", "deploy"), ("job", "test")):
        assert "--image-tag" in options(*command)
    refused = CliRunner().invoke(main, ["job", "stop", "--image-tag", "v1"])
    assert refused.exit_code == 2 and "No such option" in refused.output


def test_summary_says_when_there_is_no_event_output_to_write() -> None:
    from klio_runtime.cli.job_run import render_summary
    from klio_runtime.runner import JobSummary
    from rich.console import Console

    def table(writes_events: bool) -> str:
        console = Console(record=True, width=120)
        render_summary(JobSummary(received=4, processed=4, output=4), console, writes_events)
        return console.export_text()

    assert "written to event outputs" in table(True)
    # a job like Klio's read-file integration job, which configures no event output
    without = table(False)
    assert "messages out (no event output to write)" in without
    assert "written to event outputs" not in without


def test_the_summary_says_when_fewer_ids_were_listed_than_messages() -> None:
    from klio_runtime.cli.job_run import render_summary
    from klio_runtime.runner import JobSummary
    from rich.console import Console

    def row(count: int, ids: list[str]) -> str:
        console = Console(record=True, width=400)
        dropped = JobSummary(dropped={"input_missing": count}, dropped_ids={"input_missing": ids})
        render_summary(dropped, console)
        return next(line for line in console.export_text().splitlines() if "input_missing" in line)

    ids = [f"id-{i:02d}" for i in range(12)]
    assert "id-09, … (2 more)" in row(12, ids) and "listed" not in row(12, ids)
    # Beam keeps ~1 MB of ids per metric: 300,000 drops may list only some of them
    assert "… (2 more) (12 listed of 300000)" in row(300000, ids)
    assert "id-00, id-01 (2 listed of 3)" in row(3, ids[:2])
    assert "listed" not in row(5, [])  # drops with no id to keep
    # ids one cannot read as they are: quoted with escapes; a long one is cut
    shown = row(4, ["\ufeffalpha", "alpha ", "x" * 1_000_000])
    assert "'\\ufeffalpha', 'alpha ', " + "x" * 80 + "… (3 listed" in shown


def test_brackets_in_errors_and_ids_are_shown_as_they_are(tmp_path: Path) -> None:
    # rich reads "[file0]" as markup: Beam's step names and element ids must not be eaten
    from klio_runtime.cli.job_run import render_summary
    from klio_runtime.runner import JobSummary
    from rich.console import Console

    console = Console(record=True, width=120)
    dropped = JobSummary(dropped={"run_error": 1}, dropped_ids={"run_error": ["[b]id[/b]"]})
    render_summary(dropped, console)
    assert "[b]id[/b]" in console.export_text()
    (tmp_path / "klio-job.yaml").write_text(
        "version: 2\njob_name: x\npipeline_options: {streaming: false}\njob_config:\n"
        "  events:\n    inputs: [{type: file, location: ./ids.txt}]\n"
    )
    (tmp_path / "ids.txt").write_text("a\n")
    (tmp_path / "run.py").write_text(
        "import apache_beam as beam\n\n\ndef run(p, c):\n"
        "    return p | '[file0] Boom' >> beam.Map(lambda data: {}['missing'])\n"
    )
    failed = klio("job", "run", "--job-dir", str(tmp_path), "--no-progress")
    assert failed.returncode == 1
    assert "pipeline failed" in failed.stderr
    shown = " ".join(failed.stderr.split())  # rich wraps long lines
    assert "[while running 'Klio job/[file0] Boom']" in shown


def test_a_job_without_event_inputs_gets_the_pipeline_itself(tmp_path: Path) -> None:
    # As Klio: run(pipeline, config) makes its own source; its output goes to the event output.
    (tmp_path / "klio-job.yaml").write_text(
        "version: 2\njob_name: own-source\njob_config:\n  events:\n    outputs:\n"
        "      - type: file\n        location: ./out/ids\n"
    )
    (tmp_path / "run.py").write_text(
        "import apache_beam as beam\n"
        "from klio_core.proto import klio_pb2\n\n\n"
        "def to_message(element):\n"
        "    msg = klio_pb2.KlioMessage()\n"
        "    msg.data.element = element.encode()\n"
        "    msg.version = klio_pb2.Version.V2\n"
        "    msg.metadata.intended_recipients.anyone.SetInParent()\n"
        "    return msg.SerializeToString()\n\n\n"
        "def run(pipeline, config):\n"
        "    assert isinstance(pipeline, beam.Pipeline)\n"
        "    return pipeline | beam.Create(['a', 'b', 'c']) | beam.Map(to_message)\n"
    )
    result = run_job(tmp_path)
    assert event_ids(tmp_path / "out" / "ids") == ["a", "b", "c"]
    assert "Traceback" not in result["stderr"]
    # Klio's GKE runner deploys the job: here it runs in this process, and says so
    on_gke = run_job(tmp_path, "-O", "pipeline_options.runner=DirectGKERunner")
    assert "note: Klio deploys a DirectGKERunner job to Kubernetes" in on_gke["stderr"]
    said = " ".join(on_gke["stderr"].split())  # the console wraps its lines
    assert "On a cluster, `klio job deploy` applies its KlioJob" in said


def test_a_job_runs_in_its_own_directory_from_wherever_it_is_named(tmp_path: Path) -> None:
    # Klio runs a job in its directory (its image's working directory): catvdog loads its model
    # by a relative path in setup. --summary-json and a relative --config-file stay named from
    # where the command is given.
    job = tmp_path / "job"
    job.mkdir()
    (job / "klio-job.yaml").write_text(
        "version: 2\njob_name: own-dir\njob_config:\n  events:\n    inputs:\n"
        "      - type: file\n        location: ids.txt\n    outputs:\n"
        "      - type: file\n        location: out/ids\n"
    )
    (job / "ids.txt").write_text("a\nb\n")
    (job / "model.txt").write_text("-labelled\n")
    (job / "run.py").write_text(
        "import apache_beam as beam\n"
        "from klio.transforms import decorators\n\n"
        "MODEL = open('model.txt').read()  # at import, as well as in setup\n\n\n"
        "class Label(beam.DoFn):\n"
        "    def setup(self):\n"
        "        with open('model.txt') as f:\n"
        "            self.suffix = f.read().strip().encode()\n\n"
        "    @decorators.handle_klio\n"
        "    def process(self, data):\n"
        "        data.payload = data.element + self.suffix\n"
        "        yield data\n\n\n"
        "def run(pcoll, config):\n"
        "    return pcoll | beam.ParDo(Label())\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "own.yaml").write_text((job / "klio-job.yaml").read_text())
    done = klio(
        "job", "run", "--job-dir", "../job", "--config-file", "own.yaml",
        "--summary-json", "summary.json", cwd=elsewhere,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((elsewhere / "summary.json").read_text())["output"] == 2
    assert event_ids(job / "out" / "ids") == ["a", "b"]
    assert not (elsewhere / "out").exists()


def test_a_version_1_layout_is_warned_and_its_failure_explained(tmp_path: Path) -> None:
    """Klio reads version 1's `job_config.inputs` as a key of the job's own: no event inputs,
    so `run` gets the pipeline and a job written for a PCollection fails; both are said."""
    (tmp_path / "klio-job.yaml").write_text(
        "version: 1\njob_name: v1-job\njob_config:\n  inputs:\n"
        "    - {topic: projects/p/topics/in, data_location: gs://b/in}\n"
    )
    (tmp_path / "run.py").write_text(
        "import apache_beam as beam\n\n\ndef run(pcoll, config):\n"
        "    return pcoll | 'Hello' >> beam.Map(lambda x: x)\n"
    )
    done = klio("job", "run", "--job-dir", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    stderr = " ".join(done.stderr.split())  # rich wraps long lines
    assert "job_config.inputs: version 1's layout, read as one of the job's own keys" in stderr
    assert "The job has no event inputs (job_config.events.inputs), so its run() was given" in (
        stderr
    )

    # every input read by run itself (skip_klio_read): run gets the pipeline too, and is told so
    (tmp_path / "klio-job.yaml").write_text(
        "version: 2\njob_name: reads-itself\npipeline_options: {streaming: false}\n"
        "job_config:\n  events:\n    inputs:\n"
        "      - {type: file, location: ids.txt, skip_klio_read: true}\n"
    )
    done = klio("job", "run", "--job-dir", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    stderr = " ".join(done.stderr.split())
    assert "Each event input sets skip_klio_read, so its run() was given the pipeline" in stderr


def test_event_inputs_a_run_cannot_read_are_refused_by_field_before_it_starts(
    uppercase_job: Path,
) -> None:
    (uppercase_job / "adir").mkdir()
    field = "job_config.events.inputs[0].location"
    for location, said in (
        ("./missing.txt", "'./missing.txt' matches no file"),
        ("./*.nothing", "'./*.nothing' matches no file"),
        ("./adir", "'./adir' is a directory (name a file, or its files: ./adir/*)"),
    ):
        refused_before_the_run(uppercase_job, f"{field}={location}", f"{field}: {said}")


def refused_before_the_run(job: Path, override: str, said: str) -> None:
    """`klio job run -O override` is refused (exit 2) with ``config error <said>``."""
    done = klio("job", "run", "--job-dir", str(job), "-O", override)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"config error {said}" in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr


def test_an_avro_event_input_that_is_not_avro_is_refused_naming_it(uppercase_job: Path) -> None:
    (uppercase_job / "ids.avro").write_text("track-0000\n")  # a text file, named .avro
    (uppercase_job / "empty.avro").write_bytes(b"")  # Beam reads nothing from it
    field = "job_config.events.inputs[0]"
    for entry in (
        '{"type": "avro", "location": "./empty.avro"}',
        '{"type": "avro", "file_pattern": "./n*.avro", "validate": false}',  # looked at in the run
    ):
        done = klio("job", "run", "--job-dir", str(uppercase_job), "-O", f"{field}={entry}")
        assert done.returncode == 0, done.stdout + done.stderr
    for entry, said in (
        ('{"type": "avro", "location": "./ids.avro"}', "location: './ids.avro' is not an Avro"),
        ('{"type": "avro", "file_pattern": "./n*.avro"}', "file_pattern: './n*.avro' matches no"),
    ):
        refused_before_the_run(uppercase_job, f"{field}={entry}", f"{field}.{said}")


def test_outputs_a_run_cannot_write_are_refused_by_field_before_it_starts(
    uppercase_job: Path,
) -> None:
    for field, location in (
        ("job_config.events.outputs[0].location", "./ids.txt/out"),
        ("job_config.events.outputs[0].location", "./ids.txt/deeper/out"),
        ("job_config.dead_letter_location", "./ids.txt/dead"),
    ):
        said = f"{field}: './ids.txt' is a file, not a directory"
        refused_before_the_run(uppercase_job, f"{field}={location}", said)
        assert not (uppercase_job / "out" / "data").exists()  # nothing ran


def test_a_summary_file_in_no_directory_is_refused_before_the_run(uppercase_job: Path) -> None:
    done = klio(
        "job", "run", "--job-dir", str(uppercase_job), "--summary-json", "/no/such/dir/s.json"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--summary-json: /no/such/dir is not a directory" in done.stderr
    assert not (uppercase_job / "data" / "output").exists()  # nothing ran


LOGGING_JOB = '''
import logging
import os
import signal
import time

import apache_beam as beam
from klio.transforms import decorators

# the job's own console handlers, made before `klio job run` draws its bar: the root's, and one
# of a logger that does not propagate
logging.basicConfig(format="JOB %(levelname)s %(message)s")
OWN = logging.getLogger("job.own")
OWN.propagate = False
OWN.addHandler(logging.StreamHandler())
OWN.handlers[0].setFormatter(logging.Formatter("OWN %(message)s"))


@decorators.handle_klio
def upper(ctx, data):
    element = data.element.decode()
    logging.getLogger("job").warning("own line of %s", element)
    OWN.warning("handler line of %s", element)
    ctx.logger.info("klio line of %s", element)
    try:
        time.sleep(float(os.environ.get("SECONDS_PER_ELEMENT", "0")))
    except BaseException:
        if not os.environ.get("SWALLOW_CTRL_C"):  # as a step with a bare `except:` would
            raise
    return data.element.upper()


def run(input_pcol, config):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a job may: only the main thread can
    return input_pcol | beam.Map(upper)
'''
ANSI_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def logging_job(tmp_path: Path, ids: list[str]) -> Path:
    """The job above over ``ids``, with a line that is not UTF-8 (a dead letter) among them, and
    a data input for each (the router holds messages for its batched existence checks)."""
    lines = [element.encode() for element in ids]
    (tmp_path / "ids.txt").write_bytes(b"\n".join([*lines[:2], b"\xff\xfe", *lines[2:]]) + b"\n")
    (tmp_path / "data").mkdir()
    for element in ids:
        (tmp_path / "data" / element).write_text(element)
    (tmp_path / "run.py").write_text(LOGGING_JOB)
    (tmp_path / "klio-job.yaml").write_text(
        "version: 2\njob_name: logs\npipeline_options: {streaming: false}\n"
        "job_config:\n  events:\n    inputs: [{type: file, location: ./ids.txt}]\n"
        "    outputs: [{type: file, location: ./out/events}]\n"
        "  data:\n    inputs: [{type: file, location: ./data}]\n"
    )
    return tmp_path


def shown_on_a_terminal(
    *args: str, cwd: Path, stderr_to: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Exit code and text of `klio` run on a pseudo-terminal, where rich draws its progress bar
    (stderr there too, unless sent to the file ``stderr_to``)."""
    reader, terminal = pty.openpty()
    full_env = {**os.environ, "COLUMNS": "200", "TERM": "xterm", **(env or {})}
    full_env.pop("STORAGE_EMULATOR_HOST", None)
    with open(stderr_to or os.devnull, "wb") as err_file:
        proc = subprocess.Popen(
            [KLIO, *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal if stderr_to is None else err_file,
            cwd=cwd,
            env=full_env,
        )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if not select.select([reader], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(reader, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        proc.kill()
        os.close(reader)
    return code, ANSI_CONTROL.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_log_lines_show_once_each_above_the_progress_bar(tmp_path: Path) -> None:
    ids = [f"t{i}" for i in range(5)]
    job = logging_job(tmp_path, ids)
    code, shown = shown_on_a_terminal("job", "run", cwd=job, env={"SECONDS_PER_ELEMENT": "0.3"})
    assert code == 0, shown
    counts = {int(done) for done in re.findall(r"logs [━╸╺ ]+ (\d+)/6 ", shown)}
    # counted as each message is handed on to run (not in the metrics' batches of 64, nor when
    # the router takes it in to wait for its batch's checks), and ending at the total: the
    # dead-lettered line is done as well
    assert counts & {1, 2, 3, 4}, shown
    assert max(counts) == 6, shown
    for element in ids:
        for line in (f"klio line of {element}", f"own line of {element}"):
            # once each (a root console handler the run did not know printed the job's lines
            # a second time), and from a line's start, not written across the bar
            assert shown.count(line) == 1, shown
            start = shown.rindex("\n", 0, shown.index(line)) + 1
            start = max(start, shown.rfind("\r", 0, shown.index(line)) + 1)
            assert shown[start:].startswith(("20", "JOB WARNING")), shown[start:][:120]
        # a handler of the job's own logger, too
        handler_line = f"OWN handler line of {element}"
        assert shown.count(handler_line) == 1, shown
        assert re.search(rf"[\r\n]{handler_line}", shown), shown


def test_logs_go_where_stderr_goes_while_the_bar_shows(tmp_path: Path) -> None:
    job = logging_job(tmp_path, ["t0", "t1"])
    code, shown = shown_on_a_terminal("job", "run", cwd=job, stderr_to=tmp_path / "err.log")
    assert code == 0, shown
    assert "logs " in shown and "3/3" in shown
    logged = (tmp_path / "err.log").read_text()
    for line in ("klio line of t1", "own line of t1", "OWN handler line of t1"):
        assert line in logged and line not in shown


@pytest.mark.parametrize("swallowed", [False, True])
def test_ctrl_c_stops_a_run_without_the_bar_with_130(tmp_path: Path, swallowed: bool) -> None:
    job = logging_job(tmp_path, [f"t{i}" for i in range(50)])
    env = {**os.environ, "SECONDS_PER_ELEMENT": "0.2", "SWALLOW_CTRL_C": "1" if swallowed else ""}
    env.pop("STORAGE_EMULATOR_HOST", None)
    proc = subprocess.Popen(
        [KLIO, "job", "run", "--no-progress"],
        cwd=job,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the run has started once an element is worked on
            if "klio line of t0" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "stopped (Ctrl-C)" in stderr
    assert "Traceback" not in stderr and "pipeline failed" not in stderr


def test_a_run_with_its_stderr_closed_still_runs(tmp_path: Path) -> None:
    job = logging_job(tmp_path, ["t0"])
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    done = subprocess.run(
        [KLIO, "job", "run"],
        cwd=job,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=240,
        preexec_fn=lambda: os.close(2),  # as `2>&-` leaves it
        check=False,
    )
    assert done.returncode == 0, done.stdout
    assert "klio job run: summary" in done.stdout


def test_console_handlers_made_while_the_bar_shows_get_the_terminal_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from klio_runtime.cli.job_run import _console_logs_above_the_bar

    before = logging.StreamHandler(sys.__stderr__)
    redirected = io.StringIO()  # what rich puts in sys.stderr while its bar shows
    logger = logging.getLogger("test.bar.handlers")
    logger.addHandler(before)
    try:
        monkeypatch.setattr(sys, "stderr", redirected)
        with _console_logs_above_the_bar():
            assert before.stream is redirected  # above the bar, not across it
            during = logging.StreamHandler()  # as Beam's basicConfig() makes one in the run
            logger.addHandler(during)
        assert before.stream is sys.__stderr__
        assert during.stream is sys.__stderr__  # not a proxy left behind by the bar
    finally:
        logger.handlers.clear()


def test_beams_multi_processing_mode_runs_the_steps_with_the_jobs_context(tmp_path: Path) -> None:
    # the steps run in child processes Beam starts, where `klio job run` bound no context, and
    # a DoFn's decorated setup runs before the job's own steps there (Klio's documented pattern)
    job = logging_job(tmp_path, ["t0", "t1"])
    (job / "run.py").write_text(
        "import apache_beam as beam\n"
        "from klio.transforms import decorators\n\n\n"
        "class Upper(beam.DoFn):\n"
        "    @decorators.set_klio_context\n"
        "    def setup(self):\n"
        "        self.job_name = self._klio.config.job_name\n\n"
        "    @decorators.handle_klio\n"
        "    def process(self, data):\n"
        "        data.payload = self.job_name.encode()\n"
        "        yield data\n\n\n"
        "def run(input_pcol, config):\n"
        "    return input_pcol | beam.ParDo(Upper())\n"
    )
    result = run_job(
        job, "--no-progress", "--pipeline-option", "direct_running_mode=multi_processing"
    )
    assert result["received"] == 2 and result["output"] == 2, result["stderr"]
    assert sorted(event_ids(job / "out" / "events")) == ["t0", "t1"]
