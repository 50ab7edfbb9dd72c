"""Klio job vs raw Beam: the same trivial function (upper-case) over N elements, same runner.

    python bench/runtime_uppercase.py [--elements 100000] [--repeat 3]

Raw: ``Create(ids) | Map(upper)``. Klio: ``Create(serialized KlioMessages) | KlioJobTransform``
(the messages an event input delivers), where ``run`` maps a ``@handle_klio`` function that
upper-cases the element into the payload. So the Klio side pays for what a job does per message:
parse, route (recipients, audit log, ping; no data IO configured here), the decorator's
parse/serialize and metrics, and output preparation. Both run on Beam's in-process FnApiRunner,
interleaved so both see the same machine load. Prints both times (best of --repeat), the ratio
raw/klio (goal >= 0.8) and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from klio_runtime.config import KlioConfig, parse_config
from klio_runtime.decorators import handle_klio
from klio_runtime.message import new_message, serialize
from klio_runtime.pipeline import KlioJobTransform


@handle_klio
def upper(ctx: Any, item: Any) -> bytes:
    return bytes(item.element.upper())


def klio_run(pcoll: Any, config: KlioConfig) -> Any:
    return pcoll | "Upper" >> beam.Map(upper)


def to_message(element: str) -> bytes:
    return serialize(new_message(element))


def raw_pipeline(ids: list[str]) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create(ids) | beam.Map(str.upper) | beam.combiners.Count.Globally()


def klio_pipeline(messages: list[bytes], config: KlioConfig) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(messages) | KlioJobTransform(config, klio_run)
        _ = out["output"] | beam.combiners.Count.Globally()


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ids = [f"track-{i:06d}" for i in range(args.elements)]
    config = parse_config({"job_name": "bench-uppercase", "pipeline_options": {"streaming": False}})
    messages = [to_message(element) for element in ids]  # what an event input delivers
    raws, klios = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        raws.append(timed(lambda: raw_pipeline(ids)))
        klios.append(timed(lambda: klio_pipeline(messages, config)))
    raw, klio = min(raws), min(klios)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"elements        {args.elements}")
    print(f"raw Beam        {raw:.2f} s  ({args.elements / raw:,.0f} elements/s)")
    print(f"Klio job        {klio:.2f} s  ({args.elements / klio:,.0f} elements/s)")
    print(f"ratio raw/klio  {raw / klio:.2f}x  (goal >= 0.8x)")
    print(f"peak RSS        {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
