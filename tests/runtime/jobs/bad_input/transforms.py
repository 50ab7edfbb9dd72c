"""Fails on purpose by element name: raise-*, slow-* (runs past its timeout)."""

import time

import apache_beam as beam
from klio.transforms import decorators


class Misbehave(beam.DoFn):
    @decorators.handle_klio
    @decorators.timeout(seconds=1)
    def process(self, item):
        element = item.element.decode()
        if element.startswith("raise-"):
            raise ValueError(f"cannot handle {element}")
        if element.startswith("slow-"):
            time.sleep(120)
        yield item
