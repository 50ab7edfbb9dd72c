"""Who gets objects and who gets message bytes (transforms.handoff): decided from the graph."""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
import klio_runtime.decorators as decorators
import pytest
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from klio_runtime.decorators import handle_klio
from klio_runtime.message import KlioMessage, new_message, parse
from klio_runtime.pipeline import KlioJobTransform
from klio_runtime.transforms.handoff import _leaves, hand_bytes_to_other_consumers
from klio_runtime.transforms.route import RouteMessages

from tests.runtime.helpers import make_config, msg_bytes


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



@handle_klio
def _upper(ctx: Any, item: Any) -> bytes:
    return bytes(item.element.upper())


def _one_step(pcoll: Any, config: Any) -> Any:
    return pcoll | beam.Map(_upper)


def _two_steps_on_one_input(pcoll: Any, config: Any) -> Any:
    return (pcoll | "A" >> beam.Map(_upper), pcoll | "B" >> beam.Map(_upper)) | beam.Flatten()


def _filtered_first(pcoll: Any, config: Any) -> Any:
    return pcoll | beam.Filter(_upper) | "then" >> beam.Map(_upper)


def _routed(run: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Any]:
    """Run a Klio job over messages a and b; what the decorated steps received (type names),
    and the job's router. Checks the job's output: each element upper-cased, once per step."""
    seen: list[str] = []
    real = decorators._run_one

    def spy(ctx: Any, func: Any, call_args: Any, kwargs: Any, incoming: Any, *rest: Any) -> Any:
        seen.append(type(incoming).__name__)
        return real(ctx, func, call_args, kwargs, incoming, *rest)

    monkeypatch.setattr(decorators, "_run_one", spy)
    per_step = [b"A", b"B"]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        messages = p | beam.Create([msg_bytes("a"), msg_bytes("b")])
        out = messages | KlioJobTransform(make_config(), run)
        payloads = out["output"] | beam.Map(lambda data: parse(data).data.payload)
        steps = 2 if run is _two_steps_on_one_input else 1
        assert_that(payloads, equal_to(per_step * steps))
        leaves = list(_leaves(p.transforms_stack[0]))
    route = next(leaf.transform.fn for leaf in leaves if isinstance(
        getattr(leaf.transform, "fn", None), RouteMessages))
    return seen, route


def test_the_router_hands_its_message_object_to_a_sole_decorated_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen, route = _routed(_one_step, monkeypatch)
    assert seen == ["KlioMessage", "KlioMessage"] and not route.hand_on_bytes


def test_the_router_hands_bytes_to_two_readers_and_past_a_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # two readers would share one message object that each fills in: each parses bytes instead
    seen, route = _routed(_two_steps_on_one_input, monkeypatch)
    assert seen == ["bytes"] * 4 and route.hand_on_bytes
    # Filter hands on what it received, to steps that may want bytes
    seen, route = _routed(_filtered_first, monkeypatch)
    assert route.hand_on_bytes and set(seen) == {"bytes"}


def test_a_klio_message_pickles_as_its_bytes() -> None:
    # Beam's fallback coder pickles an element between stages, and when it samples sizes
    msg = new_message("e1", b"payload")
    assert pickle.loads(pickle.dumps(msg)) == msg
    coder = FastPrimitivesCoder()
    decoded = coder.decode(coder.encode(msg))
    assert type(decoded) is KlioMessage and decoded == msg
