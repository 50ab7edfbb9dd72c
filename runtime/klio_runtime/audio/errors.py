"""Errors for audio that cannot be used, each naming the element and a short reason code.

The reason code is what drop counters are labelled with; the message is what a person reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Reason codes (also the `reason` label of drop counters).
EMPTY = "empty"
TRUNCATED = "truncated"
NOT_AUDIO = "not_audio"
UNSUPPORTED_CODEC = "unsupported_codec"
NO_CHANNELS = "no_channels"
NON_FINITE = "non_finite"
BAD_ARRAY = "bad_array"
BAD_PAYLOAD = "bad_payload"
IO_ERROR = "io_error"


class AudioError(ValueError):
    """Audio (a file or an array) that cannot be processed, for one element."""

    def __init__(self, element: str, reason: str, detail: str) -> None:
        self.element = element
        self.reason = reason
        self.detail = detail
        super().__init__(f"element {element!r}: {reason}: {detail}")


def storage_ready_for(element: str, path: str) -> None:
    """:func:`klio_runtime.io.gcs.ready_for`, its refusal an ``io_error`` of the element."""
    from klio_runtime.io.gcs import StorageUnreachable, ready_for

    try:
        ready_for(path)
    except StorageUnreachable as err:
        raise AudioError(element, IO_ERROR, str(err)) from err


def check_waveform(y: Any, element: str) -> np.ndarray:
    """Return ``y`` if it is a usable waveform (librosa's layout: ``(n,)`` or ``(channels, n)``).

    Raises AudioError for anything librosa would choke on later with a less helpful message: not an
    array, not floating point, no channels, no samples, NaN or infinite samples.
    """
    if not isinstance(y, np.ndarray):
        raise AudioError(element, BAD_ARRAY, f"expected a numpy array, got {type(y).__name__}")
    if y.ndim not in (1, 2):
        raise AudioError(element, BAD_ARRAY, f"expected 1 or 2 dimensions, got shape {y.shape}")
    if y.ndim == 2 and y.shape[0] == 0:
        raise AudioError(element, NO_CHANNELS, f"array of shape {y.shape} has 0 channels")
    if y.shape[-1] == 0:
        raise AudioError(element, EMPTY, f"array of shape {y.shape} has no samples")
    check_finite(y, element)
    if not np.issubdtype(y.dtype, np.floating):
        raise AudioError(element, BAD_ARRAY, f"expected floating-point samples, got {y.dtype}")
    return y


def check_finite(a: np.ndarray, element: str) -> None:
    """Raise AudioError if ``a`` holds a NaN or an infinity, naming the first one's position."""
    if not np.issubdtype(a.dtype, np.inexact):
        return
    # One reduction without a temporary mask: any NaN/inf makes the sum non-finite. Audio-range
    # values cannot overflow a float64 sum.
    if np.isfinite(a.sum(dtype=np.float64 if a.dtype.kind == "f" else None)):
        return
    bad = np.argwhere(~np.isfinite(a))
    count = len(bad)
    where = tuple(int(i) for i in bad[0])
    raise AudioError(
        element, NON_FINITE, f"{count} NaN or infinite value(s) in array of shape {a.shape}, "
        f"first at index {where}"
    )
