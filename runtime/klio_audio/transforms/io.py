"""Alias of ``klio_audio.transforms.io``."""

from klio_runtime.audio.io import GcsLoadBinary, GcsUploadPlot, UploadData

__all__ = ["GcsLoadBinary", "GcsUploadPlot", "UploadData"]
