"""Pipeline of track-report: an HTML page per track once both parents' outputs exist."""

import apache_beam as beam
import transforms


def run(input_pcol, config):
    return input_pcol | "WriteReport" >> beam.ParDo(transforms.WriteReport())
