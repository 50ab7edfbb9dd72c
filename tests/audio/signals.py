"""Audio the tests make themselves: tones, sweeps, noise, speech, files in every format."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}


def tone(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def sweep(f0: float, f1: float, seconds: float, sr: int) -> np.ndarray:
    """A linear sine sweep from f0 to f1 Hz."""
    t = np.arange(round(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def noise(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def write(path: Path, y: np.ndarray, sr: int) -> Path:
    """Write ``y`` (``(n,)`` or ``(channels, n)``) in the format its suffix names."""
    frames = y.T if y.ndim == 2 else y
    sf.write(path, frames, sr, format=SOUNDFILE_FORMATS[path.suffix.lstrip(".")])
    return path


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed (scripts/install-test-tools.sh installs it)")
    return found


def ffmpeg_convert(src: Path, dest: Path, *args: str) -> Path:
    subprocess.run(
        [need("ffmpeg"), "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dest)],
        check=True, timeout=60,
    )
    return dest


def speech(dest: Path, text: str = "Klio turns audio into features.") -> Path:
    subprocess.run([need("espeak-ng"), "-w", str(dest), text], check=True, timeout=60)
    return dest


def truncate(path: Path, dest: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def wav_with_unknown_codec(dest: Path) -> Path:
    """A well-formed RIFF/WAVE file whose format tag (0x1234) no decoder knows."""
    sr, data = 8000, b"\x00\x01" * 800
    fmt = struct.pack("<HHIIHH", 0x1234, 1, sr, sr * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    dest.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return dest


def peak_hz(y: np.ndarray, sr: int) -> float:
    """The strongest frequency of a mono signal (Hann-windowed FFT)."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * sr / len(y))
