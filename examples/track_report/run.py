"""Pipeline of track-report: an HTML page per track once both parents' outputs exist."""

import apache_beam as beam
import transforms
from klio_runtime.config import KlioConfig


def run(input_pcol: beam.PCollection, config: KlioConfig) -> beam.PCollection:
    return input_pcol | "WriteReport" >> beam.ParDo(transforms.WriteReport())
