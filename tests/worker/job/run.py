"""The worker tests' job: passes each message on, leaving traces the tests read.

Custom ``job_config`` keys: ``setup_log`` (a line per DoFn setup), ``processed_log`` (a line per
element run), ``sleep_seconds`` (per element, to hold a batch in flight), ``fail_element``
(raises for that element id), ``crash_element`` (a later step, not decorated, raises for it),
``big_element`` (its payload is made 11 MB: over what Pub/Sub takes), ``setup_fails_while`` (a
path: setup raises while it exists, as when a model store is down), ``bundle_needs_a_message``
(finish_bundle raises on a bundle of none, as a step flushing a batch it gathered may).
Each data output gets ``<element>`` written with the job's name.
"""

import os
import time

import apache_beam as beam
from klio_runtime.decorators import handle_klio
from klio_runtime.io.storage import write_bytes


def _append(path, line):
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class Work(beam.DoFn):
    def __init__(self, config):
        self.settings = dict(config.job_config.model_extra or {})
        self.outputs = list(config.job_config.data.outputs)
        self.job_name = config.job_name

    def setup(self):
        _append(self.settings.get("setup_log"), f"setup {os.getpid()}")
        down = self.settings.get("setup_fails_while")
        if down and os.path.exists(down):
            raise RuntimeError("model store unavailable")

    def start_bundle(self):
        self.in_bundle = 0

    def finish_bundle(self):
        if self.settings.get("bundle_needs_a_message") and not self.in_bundle:
            raise ValueError("max() arg is an empty sequence")

    @handle_klio
    def process(self, item):
        self.in_bundle += 1
        element = item.element.decode("utf-8")
        if element == self.settings.get("fail_element"):
            raise ValueError(f"cannot handle {element}")
        delay = float(self.settings.get("sleep_seconds") or 0)
        if delay:
            time.sleep(delay)
        for out in self.outputs:
            write_bytes(out.path_for(element), self.job_name.encode("utf-8"))
        _append(self.settings.get("processed_log"), element)
        if element == self.settings.get("big_element"):
            yield b"x" * 11_000_000  # bytes yielded: the payload (yielding item clears it)
            return
        yield item


def _crash_if(data, crash):
    # a step without handle_klio: its exception fails the whole bundle, not one element
    if crash in data:
        raise RuntimeError(f"crashed on {crash!r}")
    return data


def run(pcoll, config):
    if isinstance(pcoll, tuple):  # several event inputs: Klio's namedtuple, one field each
        pcoll = pcoll | "Inputs" >> beam.Flatten()
    out = pcoll | "Work" >> beam.ParDo(Work(config))
    crash = dict(config.job_config.model_extra or {}).get("crash_element")
    if crash:
        out = out | "Crash" >> beam.Map(_crash_if, crash.encode("utf-8"))
    return out
