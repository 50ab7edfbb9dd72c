"""Pipeline of the uppercase job: Klio calls run() with the messages to process."""

import apache_beam as beam
import transforms


def run(input_pcol, config):
    """Upper-case each element's input file into its output file."""
    return input_pcol | "Uppercase" >> beam.ParDo(transforms.UppercaseText())
