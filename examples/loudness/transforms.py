"""loudness: RMS and peak level (dBFS) and duration of each track, as JSON.

Levels are ``20·log10`` of the linear value over all samples of the mono mix, so a full-scale
sine reads 0.0 dBFS peak and -3.01 dBFS RMS; digital silence reads ``null`` (minus infinity).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from klio.transforms import decorators
from klio_runtime.audio.load import load_audio
from klio_runtime.context import KlioContext
from klio_runtime.io.storage import DataStore


def dbfs(linear: float) -> float | None:
    return round(20 * math.log10(linear), 2) if linear > 0 else None


def measure(samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Loudness facts of mono ``samples``."""
    as_float = samples.astype(np.float64)
    rms = float(np.sqrt(np.mean(as_float**2))) if as_float.size else 0.0
    peak = float(np.max(np.abs(as_float))) if as_float.size else 0.0
    return {
        "rms_dbfs": dbfs(rms),
        "peak_dbfs": dbfs(peak),
        "duration_seconds": round(as_float.size / sample_rate, 3),
        "sample_rate": sample_rate,
    }


class MeasureLoudness(beam.DoFn):
    """Reads ``<data input>/<id>.flac``, writes ``<data output>/<id>.json``."""

    _klio: KlioContext  # set by handle_klio

    def setup(self) -> None:
        self._store = DataStore()

    @decorators.handle_klio
    def process(self, item: Any) -> Iterator[Any]:
        element = item.element.decode("utf-8")
        data = self._klio.config.job_config.data
        audio = self._store.read_bytes(data.inputs[0].path_for(element))
        samples, rate = load_audio(audio, element=element, sr=None)
        facts = {"track": element, **measure(samples, rate)}
        self._store.write_bytes(
            data.outputs[0].path_for(element), json.dumps(facts, indent=2).encode("utf-8")
        )
        self._klio.logger.info("loudness of %s: %s", element, facts)
        yield item
