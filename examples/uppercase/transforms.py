"""The uppercase job's transform, written against Klio's public API."""

import apache_beam as beam
from klio.transforms import decorators
from klio_runtime.io.storage import read_bytes, write_bytes


class UppercaseText(beam.DoFn):
    """Reads <data input>/<element>.txt, writes its upper-cased text to <data
    output>/<element>.txt."""

    @decorators.handle_klio
    def process(self, item):
        element = item.element.decode("utf-8")
        data = self._klio.config.job_config.data
        text = read_bytes(data.inputs[0].path_for(element))
        write_bytes(data.outputs[0].path_for(element), text.upper())
        self._klio.logger.debug("upper-cased %d bytes", len(text))
        yield item
