"""Pipeline of track-ingest: each track id becomes a normalised FLAC (see transforms.py)."""

import apache_beam as beam
import transforms
from klio_runtime.config import KlioConfig


def run(input_pcol: beam.PCollection, config: KlioConfig) -> beam.PCollection:
    return input_pcol | "IngestTrack" >> beam.ParDo(transforms.IngestTrack())
