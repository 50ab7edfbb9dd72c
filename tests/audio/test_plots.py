"""Plots: PNG of the expected size, not blank, axes in seconds and Hz, a colour bar."""

from __future__ import annotations

import io

import numpy as np
import pytest
from klio_runtime.audio import errors, features, plots
from klio_runtime.audio.errors import AudioError
from PIL import Image

from tests.audio import signals

SR = 22050


def _image(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _assert_not_blank(pixels: np.ndarray) -> None:
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "a plot with this few colours is blank or nearly"
    # The plot area is not one flat colour: the middle of the image varies.
    h, w, _ = pixels.shape
    assert pixels[h // 4 : 3 * h // 4, w // 4 : w // 2].std() > 5


def _labels(fig: object) -> tuple[str, str]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return ax.get_xlabel(), ax.get_ylabel()


def test_spectrogram_png_has_size_axes_and_colour_bar() -> None:
    y = signals.sweep(200, 6000, 2.0, SR)
    fig = plots.spectrogram_figure(
        features.spectrogram_db(features.stft(y)), sr=SR, title="sweep", y_axis="log"
    )
    assert len(fig.axes) == 2  # the plot and its colour bar
    assert _labels(fig) == ("Time (s)", "Frequency (Hz)")
    assert "dB" in fig.axes[1].get_yticklabels()[0].get_text()
    # The time axis spans the signal's duration in seconds.
    assert fig.axes[0].get_xlim()[1] == pytest.approx(2.0, abs=0.05)
    pixels = _image(plots.figure_bytes(fig))
    assert pixels.shape == (480, 640, 3)
    _assert_not_blank(pixels)


def test_mel_mfcc_and_waveform_pngs() -> None:
    y = signals.tone(440, 1.0, SR) + signals.noise(1.0, SR)
    mel = features.mel_spectrogram(y, sr=SR)
    mel_fig = plots.mel_figure(mel, sr=SR, title="mel")
    assert _labels(mel_fig) == ("Time (s)", "Frequency (Hz)") and len(mel_fig.axes) == 2
    mfcc_fig = plots.mfcc_figure(features.mfcc(mel), sr=SR, title="mfcc")
    assert _labels(mfcc_fig) == ("Time (s)", "MFCC coefficient") and len(mfcc_fig.axes) == 2
    wave_fig = plots.waveform_figure(y, sr=SR, title="wave")
    assert _labels(wave_fig) == ("Time (s)", "Amplitude")
    for fig in (mel_fig, mfcc_fig, wave_fig):
        pixels = _image(plots.figure_bytes(fig))
        assert pixels.shape == (480, 640, 3)
        _assert_not_blank(pixels)


def test_plot_inputs_are_checked() -> None:
    with pytest.raises(AudioError) as caught:
        plots.spectrogram_figure(np.zeros(5), element="one-d")
    assert caught.value.reason == errors.BAD_ARRAY and "one-d" in str(caught.value)
    with pytest.raises(AudioError) as caught:
        plots.mel_figure(np.full((4, 4), np.inf), element="inf")
    assert caught.value.reason == errors.NON_FINITE
    with pytest.raises(TypeError, match="'ax'"):
        plots.waveform_figure(np.zeros(10, dtype=np.float32), ax=object())
