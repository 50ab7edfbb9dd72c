"""Written as a Klio user would, against Klio's import paths only."""

import apache_beam as beam
from apache_beam import pvalue
from klio.transforms import decorators


class Tag(beam.DoFn):
    @decorators._handle_klio
    def process(self, item):
        number = int(item.element.decode().split("-")[1])
        self._klio.logger.debug("tagging %s", item.element.decode())
        if number % 2 == 0:
            yield pvalue.TaggedOutput("even", item)
        else:
            yield item


@decorators.handle_klio
def greet(ctx, item):
    ctx.logger.info("greeting with %s", ctx.config.job_config.custom_greeting)
    return f"{ctx.config.job_config.custom_greeting} {item.element.decode()}"
