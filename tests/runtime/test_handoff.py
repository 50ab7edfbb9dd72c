"""Who gets objects and who gets message bytes (transforms.handoff): decided from the graph."""

from __future__ import annotations

import functools
from typing import Any

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from klio_runtime.decorators import handle_klio
from klio_runtime.transforms.handoff import hand_bytes_to_other_consumers


class _Emitter(beam.DoFn):
    """Stands for an audio step: emits bytes unless told it may hand on objects."""

    emits_klio_objects = True
    reads_klio_objects = True
    hand_on_bytes = True

    def process(self, element: Any) -> Any:
        yield element


class _DecoratedDoFn(beam.DoFn):
    @handle_klio
    def process(self, item: Any) -> Any:
        yield item


@handle_klio
def _decorated(ctx: Any, item: Any) -> Any:
    return item


def _undecorated(data: bytes) -> bytes:
    return data


def _emitter(p: beam.Pipeline, label: str) -> tuple[beam.PCollection, _Emitter]:
    out = p | f"{label} source" >> beam.Create([b""]) | label >> beam.ParDo(_Emitter())
    return out, out.producer.transform.fn


def test_objects_go_on_only_where_every_reader_takes_them() -> None:
    p = beam.Pipeline(runner=FnApiRunner())
    chained, chained_fn = _emitter(p, "to another step")
    _ = chained | "next" >> beam.ParDo(_Emitter())
    decorated, decorated_fn = _emitter(p, "to decorated steps")
    _ = decorated | "Map" >> beam.Map(_decorated)
    _ = decorated | "FlatMap" >> beam.FlatMap(lambda item: [item])  # an undecorated lambda
    _ = decorated | "DoFn" >> beam.ParDo(_DecoratedDoFn())
    merged, merged_fn = _emitter(p, "through a Flatten")
    other, _ = _emitter(p, "other")
    _ = (merged, other) | beam.Flatten() | "after Flatten" >> beam.Map(_undecorated)
    side, side_fn = _emitter(p, "as a side input")
    _ = other | "with side" >> beam.Map(_decorated, beam.pvalue.AsList(side))
    grouped, grouped_fn = _emitter(p, "to a GroupByKey")
    _ = grouped | beam.Map(lambda x: (1, x)) | beam.GroupByKey()
    _, quiet_fn = _emitter(p, "read by no one")

    hand_bytes_to_other_consumers(p)

    assert not chained_fn.hand_on_bytes and not quiet_fn.hand_on_bytes
    # FlatMap(lambda) is not decorated: bytes for all three readers of that output
    assert decorated_fn.hand_on_bytes
    assert merged_fn.hand_on_bytes and side_fn.hand_on_bytes and grouped_fn.hand_on_bytes


def test_decorated_readers_alone_keep_the_objects() -> None:
    p = beam.Pipeline(runner=FnApiRunner())
    out, fn = _emitter(p, "emit")
    _ = out | "Map" >> beam.Map(_decorated)
    _ = out | "DoFn" >> beam.ParDo(_DecoratedDoFn())
    hand_bytes_to_other_consumers(p)
    assert not fn.hand_on_bytes


def _own_wrapper_around(step: Any) -> Any:
    @functools.wraps(step)
    def sized(data: bytes) -> Any:
        return step(data) if len(data) < 1_000_000 else None  # looks at the bytes

    return sized


def test_objects_go_only_to_what_calls_a_decorated_step_on_the_element() -> None:
    # Only Map(f), FlatMap(f) and a decorated process take objects; a function of the user's
    # that holds a decorated step (a closure, a functools.wraps wrapper) or a Filter that hands
    # on what it got may look at the bytes.
    @handle_klio
    def step(ctx: Any, item: Any) -> Any:
        return item

    def maybe(data: bytes) -> list[Any]:  # holds the step in its closure
        return [] if data.startswith(b"skip") else [step(data)]

    cases = {
        "Map": beam.Map(_decorated),
        "FlatMap": beam.FlatMap(_decorated),
        "closure": beam.FlatMap(maybe),
        "wraps": beam.Map(_own_wrapper_around(_decorated)),
        "Filter": beam.Filter(_decorated),
    }
    p = beam.Pipeline(runner=FnApiRunner())
    fns = {}
    for label, reader in cases.items():
        out, fns[label] = _emitter(p, label)
        _ = out | f"read by {label}" >> reader
    hand_bytes_to_other_consumers(p)
    assert {label: fn.hand_on_bytes for label, fn in fns.items()} == {
        "Map": False,
        "FlatMap": False,
        "closure": True,
        "wraps": True,
        "Filter": True,
    }
