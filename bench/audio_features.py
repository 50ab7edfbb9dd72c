"""Mel spectrogram + MFCC through the audio transforms in a Klio job vs a raw librosa loop.

    .venv/bin/python bench/audio_features.py [--files 100] [--seconds 30]

Both sides, per file: decode and resample to 22050 Hz mono (``librosa.load`` / ``LoadAudio()``),
mel power spectrogram (128 bands), MFCC (20) from it in dB (``power_to_db(ref=np.max)``, Klio's
GetMFCC). The files are bench/audio_load.py's (made once in a cache folder). Each side runs in its
own process, warmed (librosa's numba kernels compiled, one small run first), alternately
``--repeat`` times; the best time of each is compared (the machine is shared). Goal ≥ 0.9×.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audio_common

CACHE = Path(tempfile.gettempdir()) / "klio-bench-audio"
POOL = 200  # files made for both benchmarks; this one uses the first --files of them


def raw_loop(audio: Path, names: list[str]) -> dict[str, Any]:
    import librosa
    import numpy as np

    def features(y: np.ndarray, sr: int) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128)
        return librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=np.max), n_mfcc=20)

    warm, _ = librosa.load(audio / names[0], sr=22050, duration=1.0)
    features(warm, 22050)
    start = time.perf_counter()
    frames = 0
    for name in names:
        y, sr = librosa.load(audio / name, sr=22050)
        frames += features(y, sr).shape[1]
    return {"seconds": time.perf_counter() - start, "frames": frames}


def in_job(root: Path, audio: Path, names: list[str]) -> dict[str, Any]:
    import apache_beam as beam
    from klio_runtime.audio.io import GcsLoadBinary
    from klio_runtime.audio.transforms import GetMelSpec, GetMFCC, LoadAudio

    def run(pcoll: Any, config: Any) -> Any:
        return (
            pcoll
            | GcsLoadBinary()
            | LoadAudio(sr=22050)
            | GetMelSpec(n_mels=128)
            | GetMFCC(n_mfcc=20)
            | "Done" >> beam.ParDo(audio_common.message_only())
        )

    return {"seconds": audio_common.time_job(root, audio, names, run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each side")
    parser.add_argument("--phase", choices=["raw", "job"])
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    audio = CACHE / f"{POOL}x{args.seconds:g}s"
    names = audio_common.make_files(audio, max(POOL, args.files), args.seconds)[: args.files]
    if args.phase:
        result = raw_loop(audio, names) if args.phase == "raw" else in_job(args.root, audio, names)
        result["peak_rss_mb"] = audio_common.peak_rss_mb()
        print(json.dumps(result))
        return
    options = ["--files", str(args.files), "--seconds", str(args.seconds)]
    raws, jobs = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            raws.append(audio_common.run_phase(__file__, "raw", *options))
            jobs.append(audio_common.run_phase(__file__, "job", *options, "--root", tmp))
    raw = min(raws, key=lambda r: r["seconds"])
    job = min(jobs, key=lambda r: r["seconds"])
    print(f"files: {args.files} x {args.seconds:g} s stereo 44.1 kHz (wav/flac/ogg/mp3) → "
          "22050 Hz mono → mel (128) → MFCC (20)")
    print(f"raw librosa loop:         {raw['seconds']:.2f} s, peak RSS {raw['peak_rss_mb']:.0f} MB")
    print(f"transforms in a Klio job: {job['seconds']:.2f} s, peak RSS {job['peak_rss_mb']:.0f} MB")
    print(f"ratio (raw time / job time, goal >= 0.9): {raw['seconds'] / job['seconds']:.2f}x")


if __name__ == "__main__":
    main()
