import logging

import apache_beam as beam
import transforms

logging.getLogger("klio").setLevel(logging.INFO)


def run(input_pcol, config):
    return input_pcol | beam.ParDo(transforms.LogKlioMessage())
