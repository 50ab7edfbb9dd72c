import logging

import apache_beam as beam
import transforms

logging.getLogger("klio").setLevel(logging.DEBUG)


def run(input_pcol, config):
    both = (input_pcol.file0, input_pcol.file1) | beam.Flatten()
    tagged = both | beam.ParDo(transforms.Tag()).with_outputs("even", main="odd")
    greeted = tagged.even | beam.Map(transforms.greet)
    return (greeted, tagged.odd) | "Merge" >> beam.Flatten()
