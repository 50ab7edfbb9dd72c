"""Long files: streamed features hold a block, not the decoded file; StreamFeature in a pipeline."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from klio_runtime import message as kmessage
from klio_runtime.audio import features
from klio_runtime.audio.io import StreamFeature
from klio_runtime.audio.plots import figure_bytes
from klio_runtime.audio.transforms import MelSpecToPlot

from tests.audio import signals
from tests.audio.test_transforms import run

SR = 16000


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 minutes of 16 kHz stereo noise and a tone changing every 30 s, written in blocks."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as out:
        for part in range(4):
            y = signals.noise(30, SR, seed=part) + signals.tone(440 * (part + 1), 30, SR)
            out.write(np.stack([y, y[::-1]], axis=1))
    return path


@pytest.mark.slow
def test_streamed_mel_of_a_long_file_stays_far_below_its_decoded_size(long_file: Path) -> None:
    decoded_bytes = sf.info(long_file).frames * 2 * 4  # float32 stereo
    tracemalloc.start()
    try:
        mel, sr = features.stream_feature(long_file, "mel", n_mels=64, block_frames=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sr == SR and mel.shape == (64, 1 + (2 * 60 * SR - 2048) // 512)
    # The result is 1 MB (64 x 3747 float32), twice while the blocks are joined; the rest is one
    # block's working set (samples, STFT, power), the same for a file of any length.
    shown = f"peak {peak / 1e6:.1f} MB vs {decoded_bytes / 1e6:.0f} MB decoded"
    assert peak < 0.5 * decoded_bytes, shown
    assert peak < 2 * mel.nbytes + 3_000_000, shown
    # And it is the right answer: the third 30 s (440 x 3 = 1320 Hz) peaks near 1320 Hz.
    third = mel[:, int(75 * SR / 512)]
    centres = librosa.mel_frequencies(n_mels=66, fmax=SR / 2)[1:-1]
    assert centres[np.argmax(third)] == pytest.approx(1320, rel=0.08)


def test_stream_feature_transform_reads_the_data_input_and_plots(long_file: Path) -> None:
    messages = [kmessage.serialize(kmessage.new_message(name)) for name in ("long", "absent")]
    outputs, drops, ids = run(
        lambda p: p
        | StreamFeature("mel", location=str(long_file.parent), file_suffix=".wav", n_mels=64)
        | MelSpecToPlot(),
        messages,
    )
    assert drops == {"io_error": 1} and ids["io_error"] == {"absent"}
    (plot,) = outputs
    assert figure_bytes(plot.payload)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="cannot be streamed"):
        StreamFeature("spectrogram_db")
