"""Spectral features over waveforms, as Klio's audio transforms computed them, on librosa 0.11.

Keyword arguments go straight to librosa; the defaults are librosa's (sr 22050, n_fft 2048,
hop_length 512). ``stream_features`` computes frame-local features block by block so a long file
never has to be decoded whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError
from klio_runtime.audio.load import AudioSource, iter_blocks


def stft(y: np.ndarray, *, element: str = "", **librosa_kwargs: Any) -> np.ndarray:
    """Complex short-time Fourier transform (``librosa.stft``)."""
    import librosa

    return librosa.stft(y=errors.check_waveform(y, element), **librosa_kwargs)


def spectrogram_db(s: np.ndarray, *, element: str = "", **librosa_kwargs: Any) -> np.ndarray:
    """dB-scaled magnitude spectrogram of an STFT (or of a magnitude spectrogram).

    Klio's GetSpec: ``amplitude_to_db(|S|, ref=max|S|)``; ``ref`` and the rest may be overridden.
    Any array is taken, as Klio's docstring applies GetSpec straight to LoadAudio's waveform.
    """
    import librosa

    _check_matrix(s, element, min_ndim=1)
    librosa_kwargs.setdefault("ref", np.max)
    return librosa.amplitude_to_db(np.abs(s), **librosa_kwargs)


def mel_spectrogram(y: np.ndarray, *, element: str = "", **librosa_kwargs: Any) -> np.ndarray:
    """Mel power spectrogram (``librosa.feature.melspectrogram``)."""
    import librosa

    return librosa.feature.melspectrogram(y=errors.check_waveform(y, element), **librosa_kwargs)


def mfcc(
    data: np.ndarray, *, element: str = "", source: str = "auto", **librosa_kwargs: Any
) -> np.ndarray:
    """MFCCs of a waveform, or of a mel power spectrogram as Klio's GetMFCC took it.

    ``source``: ``"waveform"`` → ``librosa.feature.mfcc(y=...)`` exactly; ``"mel"`` → Klio's
    ``mfcc(S=power_to_db(mel, ref=np.max))``; ``"auto"`` (default) picks waveform for 1-D input
    and mel for 2-D input.
    """
    import librosa

    if source == "auto":
        source = "waveform" if getattr(data, "ndim", 0) == 1 else "mel"
    if source == "waveform":
        return librosa.feature.mfcc(y=errors.check_waveform(data, element), **librosa_kwargs)
    if source != "mel":
        raise ValueError(f"mfcc source must be 'auto', 'waveform' or 'mel', not {source!r}")
    _check_matrix(data, element)
    return librosa.feature.mfcc(S=librosa.power_to_db(data, ref=np.max), **librosa_kwargs)


def _check_matrix(s: Any, element: str, min_ndim: int = 2) -> None:
    if not isinstance(s, np.ndarray) or s.ndim < min_ndim:
        shape = getattr(s, "shape", type(s).__name__)
        wanted = "a 2-D spectrogram" if min_ndim == 2 else f"an array of {min_ndim}-D or more"
        raise AudioError(element, errors.BAD_ARRAY, f"expected {wanted}, got {shape}")
    if s.size == 0:
        raise AudioError(element, errors.EMPTY, f"spectrogram of shape {s.shape} is empty")
    errors.check_finite(s, element)


StreamFeature = Callable[..., np.ndarray]


def _frames_mel(y: np.ndarray, sr: int, **kw: Any) -> np.ndarray:
    import librosa

    return librosa.feature.melspectrogram(y=y, sr=sr, center=False, **kw)


def _frames_mfcc(y: np.ndarray, sr: int, **kw: Any) -> np.ndarray:
    import librosa

    return librosa.feature.mfcc(y=y, sr=sr, center=False, **kw)


def _frames_stft_magnitude(y: np.ndarray, sr: int, **kw: Any) -> np.ndarray:
    import librosa

    return np.abs(librosa.stft(y=y, center=False, **kw))


STREAMABLE: dict[str, StreamFeature] = {
    "mel": _frames_mel,
    "mfcc": _frames_mfcc,
    "stft_magnitude": _frames_stft_magnitude,
}


def iter_feature_blocks(
    source: AudioSource,
    feature: str,
    *,
    element: str = "",
    n_fft: int = 2048,
    hop_length: int = 512,
    block_frames: int = 1024,
    **librosa_kwargs: Any,
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(feature columns, sample_rate)`` for consecutive runs of ``block_frames`` frames.

    Frame-local features only (``STREAMABLE``), computed without centring (as
    ``librosa.stream`` requires), at the file's native rate, mono. Concatenating the blocks along
    the last axis equals the feature of the whole file with ``center=False``.
    """
    try:
        compute = STREAMABLE[feature]
    except KeyError:
        raise ValueError(
            f"feature {feature!r} cannot be streamed; streamable: {sorted(STREAMABLE)}"
        ) from None
    if n_fft <= 0 or hop_length <= 0 or block_frames <= 0:
        raise ValueError("n_fft, hop_length and block_frames must be positive")
    # Each block holds block_frames whole analysis frames; consecutive blocks overlap by
    # n_fft - hop_length samples so no frame is lost at a seam.
    block_samples = n_fft + (block_frames - 1) * hop_length
    overlap = n_fft - hop_length
    for block, sr in iter_blocks(
        source, element=element, block_frames=block_samples, overlap=overlap
    ):
        if block.shape[0] < n_fft:
            break  # a tail shorter than one frame: center=False drops it too
        yield compute(block, sr, n_fft=n_fft, hop_length=hop_length, **librosa_kwargs), sr


def stream_feature(
    source: AudioSource, feature: str, *, element: str = "", **kwargs: Any
) -> tuple[np.ndarray, int]:
    """The whole streamed feature as one array (memory: the feature plus one block of audio)."""
    parts: list[np.ndarray] = []
    sr = 0
    for part, block_sr in iter_feature_blocks(source, feature, element=element, **kwargs):
        parts.append(part)
        sr = block_sr
    if not parts:
        raise AudioError(element, errors.EMPTY, "shorter than one analysis frame")
    return np.concatenate(parts, axis=-1), sr


def warm_up() -> None:
    """Compile librosa's numba kernels once per process (seconds), before the first element."""
    y = np.sin(np.linspace(0, 2000, 8192, dtype=np.float32))
    mfcc(mel_spectrogram(y), source="mel")
    spectrogram_db(stft(y))
    mfcc(y, source="waveform")
