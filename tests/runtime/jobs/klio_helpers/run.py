import logging

import apache_beam as beam
from klio.transforms import decorators, helpers

logging.getLogger("klio").setLevel(logging.DEBUG)


class Work(beam.DoFn):
    @decorators.handle_klio
    def process(self, item):
        self._klio.logger.info("working")
        yield item


def run(input_pcol, config):
    outputs = input_pcol | "Output" >> helpers.KlioGcsCheckOutputExists()
    forced = outputs.found | helpers.KlioFilterForce()
    to_check = (outputs.not_found, forced.process) | beam.Flatten()
    inputs = to_check | helpers.KlioGcsCheckInputExists()
    _ = inputs.not_found | helpers.KlioDrop()
    pinged = inputs.found | helpers.KlioFilterPing()
    return pinged.process | beam.ParDo(Work())
