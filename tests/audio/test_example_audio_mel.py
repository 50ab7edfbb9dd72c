"""examples/audio_mel as `klio job run` runs it: a PNG and .npy per file, bad files dropped."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from klio_runtime import context as kcontext
from klio_runtime.runner import load_job, run_job
from PIL import Image

from tests.audio import signals

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "audio_mel"


@pytest.fixture
def job_dir(tmp_path: Path, bad_dir: Path) -> Path:
    """A copy of the example (no out/), plus two bad files listed in ids.txt."""
    job = tmp_path / "audio_mel"
    shutil.copytree(EXAMPLE, job, ignore=shutil.ignore_patterns("out", "__pycache__"))
    shutil.copy(bad_dir / "text.wav", job / "audio" / "text.wav")
    shutil.copy(bad_dir / "truncated-flac.flac", job / "audio" / "cut.flac")
    with (job / "ids.txt").open("a") as ids:
        ids.write("text.wav\ncut.flac\n")
    return job


@pytest.mark.slow
def test_example_plots_every_file_and_drops_bad_ones_by_name(
    job_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signals.need("ffmpeg")
    monkeypatch.setattr(kcontext, "_bound", None)  # the run binds its own job context
    good = sorted(
        line for line in (EXAMPLE / "ids.txt").read_text().split() if line
    )
    assert len(good) >= 3 and sum(p.stat().st_size for p in (EXAMPLE / "audio").iterdir()) < 100_000

    config, run_fn, _ = load_job(job_dir)
    summary = run_job(config, run_fn)

    assert summary.received == len(good) + 2
    assert summary.dropped == {"not_audio": 1, "truncated": 1}
    assert summary.dropped_ids == {"not_audio": ["text.wav"], "truncated": ["cut.flac"]}
    assert summary.output == len(good)
    for name in good:
        png = Image.open(job_dir / "out" / "plots" / f"{name}.png")
        assert png.size == (640, 480)  # matplotlib's default figure, as klio-audio's
        assert len(np.unique(np.asarray(png.convert("L")))) > 20
        mel = np.load(job_dir / "out" / "mel" / f"{name}.npy")
        info = sf.info(job_dir / "audio" / name)
        # decoded at 22050 Hz (LoadAudio's default, the rate GetMelSpec assumes), hop 512
        assert mel.shape == (128, 1 + round(info.duration * 22050) // 512)

    again = run_job(config, run_fn)  # outputs exist now: nothing is recomputed
    assert again.skipped.get("output_exists") == len(good)
