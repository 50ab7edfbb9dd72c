"""`klio job verify`: exit 0 with an OK line, or 2 with every problem by path."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from klio_runtime.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
GOOD_RUN = "import apache_beam as beam\n\n\ndef run(pcoll, config):\n    return pcoll\n"


def make_job(
    tmp_path: Path, config: str = "batch_file_audio.yaml", run: str | None = GOOD_RUN
) -> Path:
    shutil.copy(FIXTURES / config, tmp_path / "klio-job.yaml")
    if run is not None:
        (tmp_path / "run.py").write_text(run)
    return tmp_path


@pytest.fixture(autouse=True)
def no_cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No emulator and no credentials (another test may have set them for the session): the
    jobs' topics and buckets cannot be looked for, which verify says and goes on
    (tests/config/test_resources.py looks for them on the emulators)."""
    for name in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
                 "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")  # nor a metadata server (on GCE)


def not_checked(err: str) -> list[str]:
    """stderr without the warning that the job's cloud resources were not looked for."""
    return [
        line for line in err.splitlines()
        if not line.startswith(("warning: the job's topics", "hint: gs:// data and Pub/Sub"))
    ]


def verify(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["job", "verify", *args])
    return result.exit_code, result.stdout, result.stderr


def test_valid_job_dir(tmp_path: Path) -> None:
    code, out, err = verify("--job-dir", str(make_job(tmp_path)))
    assert (code, err) == (0, "")
    assert out == f"OK: job local-spectrograms in {tmp_path} is valid\n"


def test_klios_bigquery_job_is_valid_with_a_warning_that_run_refuses_it(tmp_path: Path) -> None:
    code, out, err = verify("--job-dir", str(make_job(tmp_path, "bigquery_events.yaml")))
    assert code == 0 and out == f"OK: job read-bq-write-bq in {tmp_path} is valid\n"
    assert not_checked(err) == [
        f"warning: job_config.events.{way}[0]: Klio's bq event IO is not run here (there is no "
        f"BigQuery to test it against); set {flag}: true and do it in run"
        for way, flag in (("inputs", "skip_klio_read"), ("outputs", "skip_klio_write"))
    ]


VERSION_1_LAYOUT = """\
version: 1
job_name: v1-job
job_config:
  inputs:
    - topic: projects/p/topics/in
      subscription: projects/p/subscriptions/in
      data_location: gs://b/in
  outputs:
    - topic: projects/p/topics/out
      data_location: gs://b/out
"""


def test_klios_version_1_layout_is_valid_with_a_warning_that_it_configures_no_io(
    tmp_path: Path,
) -> None:
    # as Klio 21+: `inputs`/`outputs` are read as the job's own keys, so the job has no IO
    (tmp_path / "klio-job.yaml").write_text(VERSION_1_LAYOUT)
    (tmp_path / "run.py").write_text(GOOD_RUN)
    code, out, err = verify("--job-dir", str(tmp_path))
    assert code == 0 and out == f"OK: job v1-job in {tmp_path} is valid\n"
    assert [line for line in not_checked(err) if line.startswith("warning")] == [
        f"warning: job_config.{key}: version 1's layout, read as one of the job's own keys (as"
        " Klio does): it configures no IO; move its entries to job_config.events and"
        " job_config.data (Klio's migration guide)"
        for key in ("inputs", "outputs")
    ]
    # a version 2 job's own key of that name, listing other things, is not that layout
    own_key = VERSION_1_LAYOUT.replace("version: 1", "version: 2").split("job_config:")[0] + (
        "job_config:\n  inputs: [vggish, yamnet]\n"
    )
    (tmp_path / "klio-job.yaml").write_text(own_key)
    code, out, err = verify("--job-dir", str(tmp_path))
    assert code == 0 and not [line for line in not_checked(err) if line.startswith("warning")]


def test_config_file_option(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    other = tmp_path / "other.yaml"
    shutil.copy(FIXTURES / "two_parents.yaml", other)
    code, out, err = verify("--job-dir", str(job_dir), "--config-file", str(other))
    assert code == 0
    assert "track-report" in out
    # its topics and buckets cannot be looked for here: said, with what to set, and no failure
    assert "warning: the job's topics, subscriptions and buckets were not checked: could not " \
        "look for subscription projects/p/subscriptions/" in err
    assert "hint: gs:// data and Pub/Sub need Google credentials" in err


def test_every_config_error_and_missing_run_py(tmp_path: Path) -> None:
    code, out, err = verify("--job-dir", str(make_job(tmp_path, "gcs_local_path.yaml", run=None)))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("error: klio-job.yaml: job_config.data.inputs[0].location: ")
    assert lines[1].startswith("error: klio-job.yaml: job_config.data.outputs[0].location: ")
    assert lines[2].startswith("error: run.py: no such file")
    assert lines[3] == f"3 problem(s) in {tmp_path}"


def test_missing_config_file(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(GOOD_RUN)
    code, _, err = verify("--job-dir", str(tmp_path))
    assert code == 2
    assert f"{tmp_path / 'klio-job.yaml'}: no such file" in err


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def run(pcoll):\n    return pcoll\n", "run.py: line 1: run must accept two arguments"),
        ("def run(a, b, c):\n    pass\n", "run.py: line 1: run must need only two arguments"),
        ("async def run(a, b):\n    pass\n", "run.py: line 1: run must be a plain function"),
        ("def transform(pcoll, config):\n    pass\n", "run.py: defines no top-level function run"),
        ("class Job:\n    def run(self, config):\n        pass\n", "run.py: defines no top-level"),
        ("def run(pcoll, config:\n", "run.py: line 1: "),
        (  # Klio runs run_basic when there is one: that is the function checked
            "def run_basic(pcoll):\n    pass\ndef run(pcoll, config):\n    pass\n",
            "run.py: line 1: run_basic must accept two arguments",
        ),
        (  # found without importing it: neither beside run.py nor installed
            "import apache_beam\nfrom nosuchmod.x import y\ndef run(pcoll, config):\n    pass\n",
            "run.py: line 2: no module named 'nosuchmod' (not beside it, nor installed",
        ),
    ],
)
def test_run_py_problems(tmp_path: Path, source: str, expected: str) -> None:
    code, _, err = verify("--job-dir", str(make_job(tmp_path, run=source)))
    assert code == 2
    assert err.splitlines()[0].startswith(f"error: {expected}")


@pytest.mark.parametrize(
    "source",
    [
        "def run(pcoll, config, *, label='x'):\n    pass\n",
        "def run(*args):\n    pass\n",
        "from transforms import run\n",  # the job's own module, beside it (made below)
        "run = make_run()\n",
        "def run_basic(pcoll, config):\n    pass\n",
    ],
)
def test_run_py_accepted_shapes(tmp_path: Path, source: str) -> None:
    (tmp_path / "transforms.py").write_text("def run(pcoll, config):\n    return pcoll\n")
    code, _, err = verify("--job-dir", str(make_job(tmp_path, run=source)))
    assert (code, err) == (0, "")


def test_run_py_may_import_the_job_as_a_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Klio's examples import their own modules by the job directory's name (audio_spectrograms:
    # `from audio_spectrograms import transforms`); `klio job run` finds them, so verify does
    job_dir = tmp_path / "my_job"
    job_dir.mkdir()
    (job_dir / "transforms.py").write_text("X = 1\n")
    source = "from my_job import transforms\ndef run(pcoll, config):\n    return pcoll\n"
    make_job(job_dir, run=source)
    monkeypatch.chdir(job_dir)  # the job's own directory, as relative as a user gives it
    code, _, err = verify("--job-dir", ".")
    assert (code, err) == (0, "")


def test_run_py_is_not_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    source = textwrap.dedent(
        f"""\
        open({str(marker)!r}, "w").close()

        def run(pcoll, config):
            return pcoll
        """
    )
    code, _, _ = verify("--job-dir", str(make_job(tmp_path, run=source)))
    assert code == 0
    assert not marker.exists()


def test_klio_spellings_of_config_file_overrides_and_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "job").mkdir()
    job_dir = make_job(tmp_path / "job")
    templated = (
        (FIXTURES / "batch_file_audio.yaml")
        .read_text()
        .replace("job_name: local-spectrograms", "job_name: ${who}-spectrograms")
    )
    (job_dir / "templated.yaml").write_text(templated)
    monkeypatch.chdir(tmp_path)  # `-c` relative: found in the job directory, as in Klio
    code, out, err = verify("--job-dir", "job", "-c", "templated.yaml", "-T", "who=team")
    assert (code, err) == (0, ""), err
    assert out.startswith("OK: job team-spectrograms in job is valid")

    code, _, err = verify("--job-dir", "job", "-c", "templated.yaml")
    assert code == 2 and "template variable $who has no value (give -T who=VALUE)" in err
    code, _, err = verify("--job-dir", "job", "-O", "job_config.retries=many")
    assert code == 2 and "job_config.retries: " in err
