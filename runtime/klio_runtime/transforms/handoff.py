"""Steps that hand the next step an object in place of KlioMessage bytes, and where they must not.

Audio steps pass an ``AudioItem`` (the message, its payload still an array) to each other, so a
chain of them in one process never re-encodes an array. Every other consumer gets what Klio gives
it: serialized KlioMessage bytes (a job's own undecorated ``Map`` that parses them, a
``GroupByKey``, a side input). :func:`hand_bytes_to_other_consumers` settles this once the job's
steps are applied, from who reads each output; until then (a plain Beam pipeline) the steps emit
bytes.

A DoFn opts in with two class attributes: ``emits_klio_objects`` (it may emit such objects, and
emits bytes once its ``hand_on_bytes`` is set) and ``reads_klio_objects`` (it takes them). A
function or method takes them when a Klio decorator that parses messages wrapped it
(:data:`READS_MESSAGES_MARK`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.pipeline import AppliedPTransform

READS_MESSAGES_MARK = "__klio_reads_messages__"
"""Set on the wrappers of ``handle_klio`` and ``serialize_klio_message``: they take the objects
(through ``to_message``) as well as bytes."""

READS_PAYLOAD_OBJECTS_MARK = "__klio_reads_payload_objects__"
"""Set to itself on a function that reads an object's payload itself (audio's ``handle_binary``
that loads the payload): ``handle_klio`` hands it the object (an ``AudioItem``) in place of the
message's ``data``, so its array is copied instead of encoded and decoded on the way."""


def reads_payload_objects(func: Any) -> bool:
    """Whether ``func`` (a function or a bound method) is such a reader itself, not a wrapper
    that copied its attributes (``functools.wraps``)."""
    func = getattr(func, "__func__", func)
    return getattr(func, READS_PAYLOAD_OBJECTS_MARK, None) is func


def _leaves(applied: AppliedPTransform) -> Iterator[AppliedPTransform]:
    if not applied.parts:
        yield applied
    for part in applied.parts:
        yield from _leaves(part)


def _marked(func: Any) -> bool:
    return bool(getattr(func, READS_MESSAGES_MARK, False))


def _decorators_own(func: Any) -> bool:
    """A wrapper a Klio decorator made. A user's ``functools.wraps`` wrapper around one copies
    its mark, yet may look at the bytes: its ``__wrapped__`` (ours keep none) gives it away."""
    return _marked(func) and not _marked(getattr(func, "__wrapped__", None))


def _contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not yet filled
        return None


def _called_by_map(wrapper: Any) -> Any:
    """What Beam's ``Map(f)`` calls on each element (``f``, the ``fn`` of its wrapper's
    closure); None for any other callable (a Filter's wrapper, a function of the user's that
    merely holds a decorated step and may hand on what it received)."""
    if not getattr(wrapper, "__qualname__", "").startswith("Map.<locals>."):
        return None
    code = getattr(wrapper, "__code__", None)
    names = code.co_freevars if code is not None else ()
    cells = getattr(wrapper, "__closure__", None) or ()
    return next(
        (_contents(cell) for name, cell in zip(names, cells, strict=False) if name == "fn"), None
    )


def reads_objects(applied: AppliedPTransform) -> bool:
    """Whether this primitive step takes the objects as it takes message bytes: a DoFn that says
    so, or one whose work is a decorated function (``Map(f)``, ``FlatMap(f)``) or method."""
    fn = getattr(applied.transform, "fn", None)
    if fn is None:
        return False
    if getattr(fn, "reads_klio_objects", False):
        return True
    called = getattr(fn, "_fn", None)  # Beam's CallableWrapperDoFn: FlatMap(f) or Map's wrapper
    if called is not None:
        return _decorators_own(called) or _decorators_own(_called_by_map(called))
    return _decorators_own(getattr(type(fn), "process", None))


def hand_bytes_to_other_consumers(pipeline: beam.Pipeline) -> None:
    """Set ``hand_on_bytes`` on each object-emitting DoFn of ``pipeline``: True when its main
    output reaches (through Flattens) any step that does not take the objects, else False (they
    emit bytes until this is called: what Klio's steps emit)."""
    leaves = list(_leaves(pipeline.transforms_stack[0]))
    readers: dict[int, list[tuple[AppliedPTransform, bool]]] = defaultdict(list)
    for leaf in leaves:
        for pcoll in leaf.inputs:
            readers[id(pcoll)].append((leaf, False))
        for side in leaf.side_inputs:
            readers[id(side.pvalue)].append((leaf, True))

    def needs_bytes(pcoll: Any) -> bool:
        for reader, as_side_input in readers.get(id(pcoll), []):
            if isinstance(reader.transform, beam.Flatten) and not as_side_input:
                if any(needs_bytes(out) for out in reader.outputs.values()):
                    return True
            elif as_side_input or not reads_objects(reader):
                return True
        return False

    for leaf in leaves:
        fn: Any = getattr(leaf.transform, "fn", None)
        if getattr(fn, "emits_klio_objects", False):
            fn.hand_on_bytes = needs_bytes(leaf.outputs.get(None))
