"""Alias of ``klio_audio.transforms.audio``."""

from klio_runtime.audio.transforms import (
    GetMelSpec,
    GetMFCC,
    GetSpec,
    GetSTFT,
    LoadAudio,
    MelSpecToPlot,
    MFCCToPlot,
    SpecToPlot,
    WaveformToPlot,
)

__all__ = [
    "GetMFCC",
    "GetMelSpec",
    "GetSTFT",
    "GetSpec",
    "LoadAudio",
    "MFCCToPlot",
    "MelSpecToPlot",
    "SpecToPlot",
    "WaveformToPlot",
]
