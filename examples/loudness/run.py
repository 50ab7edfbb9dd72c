"""Pipeline of loudness: RMS/peak dBFS and duration of each track (see transforms.py)."""

import apache_beam as beam
import transforms


def run(input_pcol, config):
    return input_pcol | "MeasureLoudness" >> beam.ParDo(transforms.MeasureLoudness())
