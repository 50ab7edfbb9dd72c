"""Regenerate this example's input audio (small files, committed) and ids.txt.

    python examples/audio_mel/make_audio.py

Writes a sine sweep (FLAC), a chord with noise (OGG/Vorbis), a two-tone MP3 and, when espeak-ng
is installed, a spoken sentence (OGG). ids.txt lists every file in audio/.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
AUDIO = HERE / "audio"
SR = 16000


def _seconds(n: float) -> np.ndarray:
    return np.arange(int(n * SR)) / SR


def sweep() -> np.ndarray:
    t = _seconds(3.0)
    return 0.5 * np.sin(2 * np.pi * (100 * t + (4000 - 100) * t**2 / 6.0))


def chord() -> np.ndarray:
    t = _seconds(2.0)
    notes = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    rng = np.random.default_rng(7)
    return 0.2 * notes + 0.02 * rng.standard_normal(t.shape)


def two_tones() -> np.ndarray:
    t = _seconds(2.0)
    return 0.4 * np.where(t < 1.0, np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t))


def main() -> None:
    AUDIO.mkdir(exist_ok=True)
    sf.write(AUDIO / "sweep.flac", sweep().astype(np.float32), SR, subtype="PCM_16")
    sf.write(AUDIO / "chord.ogg", chord().astype(np.float32), SR, format="OGG")
    sf.write(AUDIO / "two-tones.mp3", two_tones().astype(np.float32), SR, format="MP3")
    espeak = shutil.which("espeak-ng")
    if espeak:
        wav = subprocess.run(
            [espeak, "--stdout", "Klio turns audio into pictures of sound."],
            check=True, capture_output=True,
        ).stdout
        speech, rate = sf.read(io.BytesIO(wav), dtype="float32")
        sf.write(AUDIO / "speech.ogg", speech, rate, format="OGG")
    ids = sorted(p.name for p in AUDIO.iterdir() if p.is_file())
    (HERE / "ids.txt").write_text("".join(f"{name}\n" for name in ids))
    print(f"wrote {len(ids)} files to {AUDIO}: {', '.join(ids)}")


if __name__ == "__main__":
    main()
