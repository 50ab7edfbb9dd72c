import json
import os

import apache_beam as beam
from klio.transforms import decorators


class GutenTagKlio(beam.DoFn):
    @decorators.handle_klio
    def process(self, data):
        element = data.element.decode("utf-8")
        response = {"foo": element} if element.startswith("foo") else {}
        yield json.dumps(response).encode("utf-8")  # becomes the payload


@decorators.handle_klio
def filter_response(ctx, data):
    response = json.loads(data.payload.decode("utf-8"))
    if response.get("foo"):
        return json.dumps(response["foo"])
    ctx.logger.info("No 'foo' in the response for %s", data.element)
    # implicit None: as in Klio's code, the message goes on with its payload cleared


class PrivetKlio(beam.DoFn):
    @decorators.handle_klio
    def process(self, data):
        self._klio.logger.info("Privet got payload %s", data.payload)
        yield data  # clears the payload for the next transform


@decorators.handle_klio
def record_payload(ctx, data):
    where = ctx.config.job_config.data.outputs[0].location
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, data.element.decode("utf-8")), "wb") as handle:
        handle.write(b"payload=" + data.payload)
    return data.payload
