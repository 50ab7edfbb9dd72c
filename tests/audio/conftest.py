"""Fixtures for the audio tests: librosa warmed once per session, a folder of mixed-format files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.audio import signals

SR = 22050


@pytest.fixture(scope="session", autouse=True)
def _librosa_warm() -> None:
    """numba compiles librosa's kernels on first use (~1.5 s per process): once, up front."""
    from klio_runtime.audio import features, load

    load.warm_up()
    features.warm_up()


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tone.{wav,flac,ogg,mp3}: 2 s, 44.1 kHz stereo, 440 Hz left / 880 Hz right."""
    root = tmp_path_factory.mktemp("audio")
    left, right = signals.tone(440, 2.0, 44100), signals.tone(880, 2.0, 44100)
    stereo = np.stack([left, right])
    for ext in signals.SOUNDFILE_FORMATS:
        signals.write(root / f"tone.{ext}", stereo, 44100)
    return root


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory: pytest.TempPathFactory, audio_dir: Path) -> Path:
    """One file per kind of bad input, named after the reason it must be dropped for."""
    root = tmp_path_factory.mktemp("bad")
    for ext in ("wav", "flac", "ogg", "mp3"):
        signals.truncate(audio_dir / f"tone.{ext}", root / f"truncated-{ext}.{ext}")
    (root / "text.wav").write_text("this is a text file, not audio\n" * 20)
    (root / "empty.wav").write_bytes(b"")
    signals.wav_with_unknown_codec(root / "codec.wav")
    return root
