"""Pipeline of track-ingest: each track id becomes a normalised FLAC (see transforms.py)."""

import apache_beam as beam
import transforms


def run(input_pcol, config):
    return input_pcol | "IngestTrack" >> beam.ParDo(transforms.IngestTrack())
