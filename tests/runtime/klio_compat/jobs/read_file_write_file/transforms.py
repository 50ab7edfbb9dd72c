import apache_beam as beam
from klio.transforms import decorators


class LogKlioMessage(beam.DoFn):
    @decorators.handle_klio
    def process(self, item):
        self._klio.logger.info("Hello, Klio!")
        self._klio.logger.info(f"Received element {item.element}")
        self._klio.logger.info(f"Received payload {item.payload}")
        yield item
