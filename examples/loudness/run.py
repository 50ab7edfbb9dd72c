"""Pipeline of loudness: RMS/peak dBFS and duration of each track (see transforms.py)."""

import apache_beam as beam
import transforms
from klio_runtime.config import KlioConfig


def run(input_pcol: beam.PCollection, config: KlioConfig) -> beam.PCollection:
    return input_pcol | "MeasureLoudness" >> beam.ParDo(transforms.MeasureLoudness())
