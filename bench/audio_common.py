"""Shared by the audio benchmarks: a folder of mixed-format files, subprocess phases, peak RSS."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
           "mp3": ("MP3", "MPEG_LAYER_III")}


def make_files(folder: Path, count: int, seconds: float, sr: int = 44100) -> list[str]:
    """``count`` stereo files, the formats in turn; each a distinct tone pair plus noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    names = []
    exts = list(FORMATS)
    for i in range(count):
        ext = exts[i % len(exts)]
        name = f"clip-{i:04d}.{ext}"
        path = folder / name
        if not path.exists():
            f = 110.0 * (1 + i % 24)
            left = 0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.shape)
            right = 0.3 * np.sin(2 * np.pi * 1.5 * f * t) + 0.02 * rng.standard_normal(t.shape)
            fmt, subtype = FORMATS[ext]
            sf.write(path, np.stack([left, right], axis=1).astype(np.float32), sr, format=fmt,
                     subtype=subtype)
        names.append(name)
    return names


def message_only() -> Any:
    """The job's last step: each message without its array (neither side writes arrays out).
    An audio step, so the array reaches it as it is, not encoded for it."""
    from klio_runtime.audio.item import AudioItem
    from klio_runtime.audio.steps import AudioDoFn
    from klio_runtime.message import serialize

    class MessageOnly(AudioDoFn):
        step = "MessageOnly"

        def apply(self, item: AudioItem) -> bytes:
            return serialize(item.message)

    return MessageOnly()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_phase(script: str, phase: str, *args: str) -> dict[str, Any]:
    """Run ``script --phase phase args`` in a new process (own peak RSS); last line is JSON."""
    out = subprocess.run(
        [sys.executable, script, "--phase", phase, *args], check=True, capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def job_dir(root: Path, audio: Path, names: list[str]) -> Path:
    """A Klio job folder: ids.txt of the files, data input = the audio folder."""
    job = root / "job"
    job.mkdir(parents=True, exist_ok=True)
    (job / "ids.txt").write_text("".join(f"{n}\n" for n in names))
    (job / "klio-job.yaml").write_text(
        "version: 2\njob_name: audio-bench\n"
        "pipeline_options: {streaming: false, runner: DirectRunner}\n"
        "job_config:\n"
        "  events:\n"
        "    inputs: [{type: file, location: ./ids.txt}]\n"
        "    outputs: [{type: file, location: ./out/events}]\n"
        f"  data:\n    inputs: [{{type: file, location: {audio}, file_suffix: ''}}]\n"
    )
    return job


def time_job(root: Path, audio: Path, names: list[str], run: Callable[[Any, Any], Any]) -> float:
    """Seconds for a Klio job running ``run`` over ``names``, on a warm worker: Beam's runner
    modules are imported and set up by one small run first, as a long-lived worker would have."""
    from klio_runtime.runner import load_job, run_job

    def make(where: Path, files: list[str]) -> Path:
        job = job_dir(where, audio, files)
        (job / "run.py").write_text("def run(pcoll, config):\n    return pcoll\n")
        return job

    run_job(load_job(make(root / "warm", names[:1]))[0], run)
    config, _, _ = load_job(make(root, names))
    start = time.perf_counter()
    summary = run_job(config, run)
    seconds = time.perf_counter() - start
    if summary.output != len(names) or summary.dropped:
        raise SystemExit(f"the job did not handle every file: {summary}")
    return seconds
