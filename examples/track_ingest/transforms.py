"""track-ingest: one normalised FLAC per track id.

A track's source is ``<data input>/<id><suffix>`` when the job has a data input and the file exists
(any format libsndfile or ffmpeg decodes): it is mixed to mono, resampled to 22.05 kHz and
peak-normalised to -1 dBFS. Without a source the job synthesises a deterministic tone from the id
(see ``tone_frequency``), so the DAG runs with no audio at hand.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import soundfile as sf
from klio.transforms import decorators
from klio_runtime.audio.load import load_audio
from klio_runtime.context import KlioContext
from klio_runtime.io.storage import DataStore

SAMPLE_RATE = 22050
TONE_SECONDS = 2.0
TONE_AMPLITUDE = 0.5  # a peak of -6.02 dBFS, an RMS of -9.03 dBFS
PEAK_DBFS = -1.0  # what sources are normalised to


def tone_frequency(element: str) -> float:
    """The id's pitch: one of the 24 semitones from A3 (220 Hz), chosen by a hash of the id."""
    step = int.from_bytes(hashlib.sha256(element.encode("utf-8")).digest()[:4], "big") % 24
    return float(220.0 * 2 ** (step / 12))


def synthesise(element: str, seconds: float = TONE_SECONDS) -> np.ndarray:
    """A sine at ``tone_frequency(element)`` of amplitude TONE_AMPLITUDE, mono, SAMPLE_RATE."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (TONE_AMPLITUDE * np.sin(2 * np.pi * tone_frequency(element) * t)).astype(np.float32)


def normalise(samples: np.ndarray, element: str) -> np.ndarray:
    """Scale mono ``samples`` so their peak is PEAK_DBFS; silence cannot be normalised."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak == 0.0:
        raise ValueError(f"track {element!r}: the source is silent (peak 0), nothing to normalise")
    return (samples * (10 ** (PEAK_DBFS / 20) / peak)).astype(np.float32)


def encode_flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


class IngestTrack(beam.DoFn):
    """Writes ``<data output>/<id>.flac`` from the id's source file, or a tone when it has none."""

    _klio: KlioContext  # set by handle_klio

    def setup(self) -> None:
        self._store = DataStore()

    @decorators.handle_klio
    def process(self, item: Any) -> Iterator[Any]:
        element = item.element.decode("utf-8")
        data = self._klio.config.job_config.data
        source = data.inputs[0].path_for(element) if data.inputs else None
        if source is not None and self._store.exists(source):
            mono, _ = load_audio(self._store.read_bytes(source), element=element, sr=SAMPLE_RATE)
            audio, origin = normalise(mono, element), source
        else:
            audio, origin = synthesise(element), f"a {tone_frequency(element):.1f} Hz tone"
        self._store.write_bytes(data.outputs[0].path_for(element), encode_flac(audio))
        self._klio.logger.info("ingested %s from %s", element, origin)
        yield item
