"""The example DAG run locally as Klio users would: `klio job run` on each job dir in turn, each
child reading its parent's event output file, over the ids in examples/track_ingest/ids.txt.

One id (demo-003) has a source file (a stereo 44.1 kHz WAV) which track-ingest normalises; the
others get track-ingest's tone, whose loudness is known exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from klio_runtime.cli import main as klio_cli

from tests.examples.dag import (
    JOB_DIRS,
    TONE_PEAK_DBFS,
    TONE_RMS_DBFS,
    check_flac,
    check_loudness,
    check_png,
    check_report,
    copy_examples,
)

pytestmark = pytest.mark.slow
IDS = ["demo-001", "demo-002", "demo-003"]
SOURCED = "demo-003"


@dataclass
class LocalDag:
    root: Path

    @property
    def out(self) -> Path:
        return self.root / "dag" / "out"

    def run(self, job_dir: str, *args: str) -> dict[str, Any]:
        """`klio job run` on one job dir; the run's summary."""
        summary = self.root / f"{job_dir}.summary.json"
        result = CliRunner().invoke(
            klio_cli,
            ["job", "run", "--job-dir", str(self.root / job_dir), "--no-progress",
             "--summary-json", str(summary), *args],
        )
        assert result.exit_code == 0, f"{job_dir}: {result.output}"
        data: dict[str, Any] = json.loads(summary.read_text())
        return data


def write_source(path: Path) -> None:
    """2 s of a 1 kHz tone, stereo 44.1 kHz, peak 0.25 (-12 dBFS): to be normalised."""
    t = np.arange(2 * 44100) / 44100
    tone = 0.25 * np.sin(2 * np.pi * 1000 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([tone, tone], axis=1), 44100, subtype="FLOAT")


@pytest.fixture(scope="module")
def local_dag(tmp_path_factory: pytest.TempPathFactory) -> LocalDag:
    dag = LocalDag(copy_examples(tmp_path_factory.mktemp("examples")))
    write_source(dag.root / "dag" / "sources" / f"{SOURCED}.wav")
    for job_dir in JOB_DIRS:
        summary = dag.run(job_dir)
        assert (summary["received"], summary["processed"], summary["output"]) == (3, 3, 3), (
            job_dir, summary)
        assert not summary["dropped"] and not summary["dead_letter"], (job_dir, summary)
    return dag


def test_every_job_config_verifies() -> None:
    from tests.examples.dag import EXAMPLES

    for job_dir in JOB_DIRS:
        result = CliRunner().invoke(klio_cli, ["job", "verify", "--job-dir",
                                               str(EXAMPLES / job_dir)])
        assert result.exit_code == 0, f"{job_dir}: {result.output}"
        assert "valid" in result.output


def test_each_child_reads_its_parents_event_file(local_dag: LocalDag) -> None:
    events = local_dag.out / "events"
    for job in ("track-ingest", "spectrograms", "loudness", "track-report"):
        written = sorted(events.glob(f"{job}-*"))
        assert written, f"no event output of {job}"
        assert sorted("".join(p.read_text() for p in written).split()) == IDS


def test_ingest_writes_tones_and_normalises_sources(local_dag: LocalDag) -> None:
    for element in IDS:
        samples = check_flac((local_dag.out / "audio" / f"{element}.flac").read_bytes())
        peak = 20 * np.log10(np.max(np.abs(samples)))
        expected = -1.0 if element == SOURCED else TONE_PEAK_DBFS
        assert abs(peak - expected) < 0.01, (element, peak)
    # Two ids, two pitches: the tone depends on the id.
    a, b = (sf.read(local_dag.out / "audio" / f"{e}.flac")[0] for e in IDS[:2])
    assert not np.allclose(a, b)


def test_spectrograms_loudness_and_reports(local_dag: LocalDag) -> None:
    for element in IDS:
        png_path = local_dag.out / "spectrograms" / f"{element}.png"
        json_path = local_dag.out / "loudness" / f"{element}.json"
        png = png_path.read_bytes()
        check_png(png)
        if element == SOURCED:  # normalised to a -1 dBFS peak; a sine's RMS is 3.01 dB lower
            loudness = check_loudness(json_path.read_bytes(), element, -4.01, -1.0)
        else:
            loudness = check_loudness(json_path.read_bytes(), element, TONE_RMS_DBFS,
                                      TONE_PEAK_DBFS)
        page = (local_dag.out / "reports" / f"{element}.html").read_text()
        check_report(page, element, png, str(png_path), str(json_path), loudness)


def test_a_second_run_skips_and_force_reruns(local_dag: LocalDag) -> None:
    outputs = {
        "track_ingest": "audio/{}.flac", "spectrograms": "spectrograms/{}.png",
        "loudness": "loudness/{}.json", "track_report": "reports/{}.html",
    }
    before = {p: p.stat().st_mtime_ns for p in local_dag.out.rglob("*.*") if p.is_file()
              and "events" not in p.parts}
    for job_dir in ("track_ingest", "loudness"):
        summary = local_dag.run(job_dir)
        assert summary["processed"] == 0 and summary["skipped"] == {"output_exists": 3}, summary
        assert summary["output"] == 3  # a skipped message still goes on to the children
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before, "a skipping run wrote outputs"

    (local_dag.out / outputs["loudness"].format("demo-002")).unlink()
    summary = local_dag.run("loudness")
    assert summary["processed"] == 1 and summary["skipped"] == {"output_exists": 2}, summary

    summary = local_dag.run("track_report", "-O", "job_config.data.outputs[0].force=true")
    assert summary["processed"] == 3 and not summary["skipped"], summary
    report = local_dag.out / outputs["track_report"].format("demo-001")
    assert report.stat().st_mtime_ns > before[report]
