"""Features checked against numbers: a tone's STFT bin, librosa's own MFCC, streamed = whole."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from klio_runtime.audio import errors, features
from klio_runtime.audio.errors import AudioError

from tests.audio import signals

SR = 22050


def test_a_440_hz_tone_peaks_at_its_stft_bin() -> None:
    y = signals.tone(440, 1.0, SR)
    s = features.stft(y, n_fft=2048, hop_length=512)
    assert s.shape == (1025, 1 + len(y) // 512) and np.iscomplexobj(s)
    expected_bin = round(440 * 2048 / SR)  # 41 (40.87)
    assert np.argmax(np.abs(s).mean(axis=1)) == expected_bin
    db = features.spectrogram_db(s)
    assert db.max() == pytest.approx(0.0)  # Klio's GetSpec: relative to the peak
    assert np.argmax(db.mean(axis=1)) == expected_bin
    assert db.min() >= -80.0 - 1e-3  # librosa's top_db


def test_mel_peak_follows_a_sweep() -> None:
    y = signals.sweep(200, 4000, 2.0, SR)
    mel = features.mel_spectrogram(y, sr=SR, n_mels=64)
    frames = np.arange(5, mel.shape[1] - 5)
    peaks = np.argmax(mel[:, frames], axis=0)
    # The sweep's frequency at each frame's centre, in mel bands: the peak is within one band.
    hz_now = 200 + (4000 - 200) * (frames * 512 / SR) / 2.0
    band_centres = librosa.mel_frequencies(n_mels=64 + 2, fmax=SR / 2)[1:-1]
    expected = np.abs(band_centres[None, :] - hz_now[:, None]).argmin(axis=1)
    assert np.abs(peaks - expected).max() <= 1


def test_mfcc_of_a_waveform_equals_librosa_directly() -> None:
    y = signals.noise(1.5, SR) + signals.tone(660, 1.5, SR)
    got = features.mfcc(y, sr=SR, n_mfcc=20)
    np.testing.assert_allclose(got, librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20), rtol=1e-5)
    assert got.shape == (20, 1 + len(y) // 512)


def test_mfcc_of_a_mel_spectrogram_is_klios_convention() -> None:
    y = signals.sweep(100, 3000, 1.0, SR)
    mel = features.mel_spectrogram(y, sr=SR)
    expected = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=np.max), n_mfcc=13)
    np.testing.assert_allclose(features.mfcc(mel, n_mfcc=13), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="'spectrum'"):
        features.mfcc(mel, source="spectrum")


@pytest.mark.parametrize("feature", ["mel", "mfcc", "stft_magnitude"])
def test_streamed_features_equal_the_whole_file(tmp_path: Path, feature: str) -> None:
    y = signals.sweep(100, 5000, 3.0, SR) + signals.noise(3.0, SR)
    path = signals.write(tmp_path / "long.flac", y, SR)
    whole_y, _ = sf.read(path, dtype="float32")
    streamed, sr = features.stream_feature(path, feature, block_frames=37)
    direct = {
        "mel": lambda: librosa.feature.melspectrogram(y=whole_y, sr=SR, center=False),
        "mfcc": lambda: librosa.feature.mfcc(y=whole_y, sr=SR, center=False),
        "stft_magnitude": lambda: np.abs(librosa.stft(whole_y, center=False)),
    }[feature]()
    assert sr == SR and streamed.shape == direct.shape
    np.testing.assert_allclose(streamed, direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())


def test_streaming_refuses_features_that_need_the_whole_signal(tmp_path: Path) -> None:
    path = signals.write(tmp_path / "x.wav", signals.tone(440, 0.2, SR), SR)
    with pytest.raises(ValueError, match="cannot be streamed"):
        features.stream_feature(path, "spectrogram_db")
    with pytest.raises(AudioError) as caught:
        features.stream_feature(path, "mel", element="short", n_fft=8192)
    assert caught.value.reason == errors.EMPTY


def test_feature_inputs_are_checked_naming_the_element() -> None:
    with pytest.raises(AudioError) as caught:
        features.stft(np.zeros((0, 512), dtype=np.float32), element="zero-ch")
    assert caught.value.reason == errors.NO_CHANNELS and "zero-ch" in str(caught.value)
    nan = np.full(4096, np.nan, dtype=np.float32)
    with pytest.raises(AudioError) as caught:
        features.mel_spectrogram(nan, element="nan-el")
    assert caught.value.reason == errors.NON_FINITE
    with pytest.raises(AudioError) as caught:
        features.spectrogram_db(np.float32(1.0), element="scalar")  # a 1-D waveform is taken
    assert caught.value.reason == errors.BAD_ARRAY
    with pytest.raises(AudioError) as caught:
        features.mfcc(np.zeros(10), element="flat", source="mel")
    assert caught.value.reason == errors.BAD_ARRAY
