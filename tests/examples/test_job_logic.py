"""The example jobs' own logic, without a pipeline: tones, normalising, loudness, the report page;
and track-report as its worker runs it (two event inputs, one per parent) on the worker's
micro-batch executor, batch after batch."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from klio_runtime.config import parse_config
from klio_runtime.message import new_message, parse, serialize
from klio_runtime.runner import load_run_function
from klio_runtime.worker.executor import BatchExecutor

from tests.examples.dag import EXAMPLES


def job_module(job_dir: str) -> ModuleType:
    path = EXAMPLES / job_dir / "transforms.py"
    spec = importlib.util.spec_from_file_location(f"example_{job_dir}_transforms", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ingest = job_module("track_ingest")
loudness = job_module("loudness")
report = job_module("track_report")


def test_tone_is_deterministic_per_id_and_on_the_semitone_grid() -> None:
    assert ingest.tone_frequency("demo-001") == ingest.tone_frequency("demo-001")
    frequencies = {ingest.tone_frequency(f"t{i}") for i in range(200)}
    assert len(frequencies) > 12
    for f in frequencies:
        step = 12 * math.log2(f / 220.0)
        assert abs(step - round(step)) < 1e-9 and 0 <= round(step) < 24
    tone = ingest.synthesise("demo-001")
    assert len(tone) == 2 * ingest.SAMPLE_RATE and tone.dtype == np.float32


def test_normalise_peaks_at_minus_one_dbfs_and_refuses_silence() -> None:
    quiet = 0.01 * np.sin(np.linspace(0, 100, 1000))
    peak = np.max(np.abs(ingest.normalise(quiet, "q")))
    assert abs(20 * math.log10(peak) - ingest.PEAK_DBFS) < 1e-4
    with pytest.raises(ValueError, match=r"'s1'.*silent"):
        ingest.normalise(np.zeros(100), "s1")


def test_loudness_of_a_tone_a_square_and_silence() -> None:
    sr = 22050
    t = np.arange(sr) / sr
    sine = loudness.measure(np.sin(2 * np.pi * 440 * t), sr)
    assert (sine["peak_dbfs"], sine["rms_dbfs"], sine["duration_seconds"]) == (0.0, -3.01, 1.0)
    square = loudness.measure(np.full(sr // 2, -0.5), sr)
    assert square["rms_dbfs"] == square["peak_dbfs"] == -6.02
    silence = loudness.measure(np.zeros(100), sr)
    assert silence["rms_dbfs"] is None and silence["peak_dbfs"] is None


def test_report_escapes_and_shows_silence_as_minus_infinity() -> None:
    page = report.render_report(
        "a<b", "T&T", b"\x89PNG", "gs://b/s/a<b.png",
        {"rms_dbfs": None, "peak_dbfs": None, "duration_seconds": 1.0, "sample_rate": 8000},
        "gs://b/l/a<b.json",
    )
    assert "<h1>T&amp;T: a&lt;b</h1>" in page
    assert 'href="gs://b/s/a&lt;b.png"' in page and 'href="gs://b/l/a&lt;b.json"' in page
    assert "<td>−∞ dBFS</td>" in page and "<td>8000 Hz</td>" in page


def test_track_report_runs_on_the_worker_executor_from_either_parent(tmp_path: Path) -> None:
    """As the rendered worker config has it: one Pub/Sub event input per parent. Each batch
    (from one parent, the other, or both) runs; the executor stays warm between batches."""
    raw = yaml.safe_load((EXAMPLES / "track_report" / "klio-job.yaml").read_text())
    jc = raw["job_config"]
    jc["events"] = {
        "inputs": [{"type": "pubsub", "subscription": f"projects/p/subscriptions/from-{p}"}
                   for p in ("spectrograms", "loudness")],
        "outputs": [],
    }
    for entry, folder in zip(jc["data"]["inputs"] + jc["data"]["outputs"],
                             ("spectrograms", "loudness", "reports"), strict=True):
        entry["location"] = str(tmp_path / folder)
    raw["pipeline_options"] = {"streaming": True}
    config = parse_config(raw)
    ids = [f"t{i}" for i in range(6)]
    for element in ids:
        (tmp_path / "spectrograms").mkdir(exist_ok=True)
        (tmp_path / "loudness").mkdir(exist_ok=True)
        (tmp_path / "spectrograms" / f"{element}.png").write_bytes(b"\x89PNG fake")
        (tmp_path / "loudness" / f"{element}.json").write_text(json.dumps(
            {"rms_dbfs": -9.03, "peak_dbfs": -6.02, "duration_seconds": 2.0,
             "sample_rate": 22050}))
    executor = BatchExecutor(config, load_run_function(EXAMPLES / "track_report"),
                             ["pubsub0", "pubsub1"])
    feeds = [{"pubsub0": [ids[0]]}, {"pubsub1": [ids[1]]}, {"pubsub0": [ids[2]]},
             {"pubsub1": [ids[3]], "pubsub0": [ids[4]]}, {"pubsub1": [ids[5]]}]
    try:
        for feed in feeds:
            result = executor.run({k: [serialize(new_message(e)) for e in v]
                                   for k, v in feed.items()})
            sent = sorted(e for v in feed.values() for e in v)
            assert sorted(parse(m).data.element.decode() for m in result.output) == sent
            for element in sent:
                assert (tmp_path / "reports" / f"{element}.html").is_file(), (feed, result)
    finally:
        executor.close()
