"""Memory of a 1-hour 44.1 kHz stereo file: peak RSS against its decoded size.

    .venv/bin/python bench/audio_memory.py [--minutes 60]

Writes the file (PCM_16 WAV, block by block) into a temporary folder, then runs each phase in its
own process and prints its peak RSS as a multiple of the decoded size (float32, all channels):
  raw     soundfile.read of the whole file (the floor for holding it decoded)
  load    LoadAudio(sr=None) in a Klio job (KlioJobTransform on FnApiRunner): the whole file
          decoded, to mono
  stream  StreamFeature("mel") in a Klio job: the mel spectrogram, block by block
In both jobs the next step is the job's own, as Klio's audio jobs write it (``handle_klio`` over
``handle_binary``): it reads the array as the audio step made it, with no copy on the way.
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

SR = 44100


def write_long_file(path: Path, minutes: float) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(SR * 60) / SR
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as out:
        for minute in range(int(minutes)):
            tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * minute) * t)
            left = tone + 0.02 * rng.standard_normal(t.shape)
            out.write(np.stack([left, left[::-1]], axis=1).astype(np.float32))


def phase(name: str, path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    if name == "raw":
        import soundfile as sf

        data, _ = sf.read(path, dtype="float32", always_2d=True)
        shape = list(data.shape)
    else:
        import apache_beam as beam
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        from klio_runtime.audio.decorators import handle_binary
        from klio_runtime.audio.io import StreamFeature
        from klio_runtime.audio.transforms import LoadAudio
        from klio_runtime.config import parse_config
        from klio_runtime.decorators import handle_klio
        from klio_runtime.message import new_message, serialize
        from klio_runtime.pipeline import KlioJobTransform

        @handle_klio
        @handle_binary(skip_dump=True)
        def report_shape(ctx: Any, item: Any) -> bytes:
            # a job's own next step, written as in Klio: it reads the array
            print(json.dumps({"shape": list(item.payload.shape)}), file=sys.stderr)
            return b""

        def run(pcoll: Any, config: Any) -> Any:
            step = (LoadAudio(sr=None) if name == "load"
                    else StreamFeature("mel", location=str(path.parent), file_suffix=".wav"))
            return pcoll | step | beam.Map(report_shape)

        # as in a Klio job (what `klio job run` builds around run): the audio steps hand their
        # arrays on to the job's decorated steps
        config = parse_config(
            {"job_name": "audio-memory", "pipeline_options": {"streaming": False}}
        )
        payload = str(path).encode() if name == "load" else b""
        with beam.Pipeline(runner=FnApiRunner()) as pipeline:
            _ = (
                pipeline
                | beam.Create([serialize(new_message(path.stem, payload))])
                | KlioJobTransform(config, run)
            )
        shape = []
    return {"seconds": time.perf_counter() - start, "shape": shape}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--phase", choices=["raw", "load", "stream"])
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.phase:
        result = phase(args.phase, args.file)
        result["peak_rss_mb"] = audio_common.peak_rss_mb()
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.wav"
        write_long_file(path, args.minutes)
        decoded_mb = int(args.minutes) * 60 * SR * 2 * 4 / 1e6
        print(f"{args.minutes:g} min, 44.1 kHz stereo: {path.stat().st_size / 1e6:.0f} MB WAV, "
              f"{decoded_mb:.0f} MB decoded (float32)")
        for name in ("raw", "load", "stream"):
            got = audio_common.run_phase(__file__, name, "--file", str(path))
            print(f"{name:>6}: {got['seconds']:6.1f} s, peak RSS {got['peak_rss_mb']:6.0f} MB = "
                  f"{got['peak_rss_mb'] / decoded_mb:.2f}x decoded size")


if __name__ == "__main__":
    main()
