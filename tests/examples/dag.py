"""Shared facts of the example DAG (examples/track_ingest → spectrograms + loudness →
track_report) for the tests: where the jobs are, and checks of their outputs."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# In the order they run (parents first).
JOB_DIRS = ("track_ingest", "spectrograms", "loudness", "track_report")
JOB_NAMES = {d: d.replace("_", "-") for d in JOB_DIRS}
KLIOJOBS = EXAMPLES / "kliojobs"

# What track-ingest synthesises for an id with no source (examples/track_ingest/transforms.py).
TONE_SAMPLE_RATE = 22050
TONE_SECONDS = 2.0
TONE_PEAK_DBFS = -6.02  # amplitude 0.5
TONE_RMS_DBFS = -9.03  # a sine's RMS is its peak / sqrt(2): 3.01 dB below


def copy_examples(into: Path) -> Path:
    """The four job dirs and examples/dag, copied (their local configs point at ../dag)."""
    for name in (*JOB_DIRS, "dag"):
        shutil.copytree(
            EXAMPLES / name, into / name, ignore=shutil.ignore_patterns("out", "__pycache__")
        )
    return into


def check_flac(data: bytes, seconds: float = TONE_SECONDS) -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == TONE_SAMPLE_RATE
    assert samples.ndim == 1, f"not mono: {samples.shape}"
    assert abs(len(samples) / rate - seconds) < 0.01
    return samples


def check_png(data: bytes) -> None:
    """A real image with a picture in it (many colours), not a blank canvas."""
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    assert image.width >= 200 and image.height >= 150, image.size
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50, "the spectrogram PNG is (nearly) blank"


def check_loudness(data: bytes, element: str, rms: float, peak: float) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(data)
    assert facts["track"] == element
    assert facts["rms_dbfs"] == rms
    assert facts["peak_dbfs"] == peak
    assert facts["duration_seconds"] == TONE_SECONDS
    assert facts["sample_rate"] == TONE_SAMPLE_RATE
    return facts


def check_report(page: str, element: str, png: bytes, png_path: str, json_path: str,
                 loudness: dict[str, Any]) -> None:
    """The page names the track, embeds the PNG, links both parents' objects, shows the numbers."""
    assert f"Track report: {element}</h1>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert f'href="{png_path}"' in page
    assert f'href="{json_path}"' in page
    assert f"<td>{loudness['rms_dbfs']} dBFS</td>" in page
    assert f"<td>{loudness['peak_dbfs']} dBFS</td>" in page
