"""Pipeline of track-report: an HTML page per track once both parents' outputs exist.

On a cluster the job has one event input per parent (the operator subscribes it to both), and
Klio hands ``run`` a named tuple of their PCollections: either parent's message may complete the
pair, so both are merged. Writing a page is idempotent, so a track heard from both is harmless.
"""

import apache_beam as beam
import transforms
from klio_runtime.config import KlioConfig


def run(input_pcol: beam.PCollection, config: KlioConfig) -> beam.PCollection:
    if isinstance(input_pcol, tuple):
        input_pcol = input_pcol | "MergeParents" >> beam.Flatten()
    return input_pcol | "WriteReport" >> beam.ParDo(transforms.WriteReport())
