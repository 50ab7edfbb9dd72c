"""Objects that stand for a message (audio's AudioItem): run may end on them, handle_klio takes
them without a serialize-and-parse round trip."""

from __future__ import annotations

import functools
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from klio_runtime import message as kmessage
from klio_runtime.audio.decorators import handle_binary
from klio_runtime.audio.item import AudioItem, decode_payload, encode_payload
from klio_runtime.decorators import handle_klio
from klio_runtime.message import KlioMessage, new_message, parse
from klio_runtime.pipeline import KlioJobTransform

from tests.runtime.helpers import bound, make_config, msg_bytes


class _Unconvertible:
    def __bytes__(self) -> bytes:
        raise ValueError("cannot encode this one")


def _to_audio_item(data: bytes) -> AudioItem:
    return AudioItem(parse(data), np.arange(3, dtype=np.float32), "numpy")


def _element_and_array(data: bytes) -> tuple[str, list[float]]:
    msg = parse(data)
    array = decode_payload(msg.data.payload, element="x", numpy=True)
    return msg.data.element.decode(), [float(v) for v in array]


def test_run_ending_on_an_audio_item_writes_its_message() -> None:
    config = make_config()

    def run(pcoll: Any, cfg: Any) -> Any:
        return pcoll | beam.Map(_to_audio_item)  # no Map(bytes) at the end

    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([msg_bytes("a"), msg_bytes("b")]) | KlioJobTransform(config, run)
        assert_that(
            out["output"] | beam.Map(_element_and_array),
            equal_to([("a", [0.0, 1.0, 2.0]), ("b", [0.0, 1.0, 2.0])]),
        )
        assert_that(out["dead_letter"], equal_to([]), label="no dead letters")


def test_bytes_conversion_that_fails_is_a_dead_letter_naming_the_type() -> None:
    config = make_config({"events": {"outputs": [{"type": "file", "location": "/never/written"}]}})

    def run(pcoll: Any, cfg: Any) -> Any:
        return pcoll | beam.Map(lambda _: _Unconvertible())

    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([msg_bytes("a")]) | KlioJobTransform(config, run)
        assert_that(
            out["dead_letter"] | beam.Map(lambda d: (d.reason, "_Unconvertible" in d.detail)),
            equal_to([("bad_output", True)]),
        )
        assert_that(out["output"], equal_to([]), label="nothing written")


def test_handle_klio_takes_an_audio_items_message_without_bytes() -> None:
    bound(make_config())
    seen: list[tuple[bytes, list[float]]] = []

    @handle_klio
    def step(ctx: Any, data: Any) -> Any:
        array = decode_payload(data.payload, element="x", numpy=True)
        seen.append((data.element, [float(v) for v in array]))
        return data

    class _NoBytes(AudioItem):
        __slots__ = ()

        def __bytes__(self) -> bytes:  # the round trip the decorator must not take
            raise AssertionError("handle_klio serialized the item")

    item = _NoBytes(new_message("e1"), np.ones(2, dtype=np.float32), "numpy")
    out = step(item)
    assert seen == [(b"e1", [1.0, 1.0])]
    assert parse(out).data.element == b"e1" and parse(out).data.payload == b""
    assert isinstance(item.message, KlioMessage) and item.message.data.payload == b""


class _NotEncoded(AudioItem):
    """An item whose payload must reach the step as it is."""

    __slots__ = ()

    def to_message(self) -> KlioMessage:
        raise AssertionError("the payload was encoded")

    def __bytes__(self) -> bytes:
        raise AssertionError("the item was serialized")


def test_handle_binary_under_handle_klio_reads_an_audio_items_array_without_encoding() -> None:
    """Klio's audio steps stack handle_klio over handle_binary: after an audio step the array
    reaches them copied (each call its own, as decoding gave) instead of encoded and decoded;
    the message leaves with their result as its payload, klio-audio's way (pickle by default)."""
    bound(make_config())
    array = np.arange(4, dtype=np.float32)
    seen: list[tuple[bytes, Any]] = []

    @handle_klio
    @handle_binary
    def double(ctx: Any, item: Any) -> Any:
        seen.append((item.element, item.payload))
        payload = item.payload
        payload *= 2  # in place: its own copy
        return payload

    class Halve(beam.DoFn):
        @handle_klio
        @handle_binary(save_with_numpy=True)
        def process(self, item: Any) -> Any:
            seen.append((item.element, item.payload))
            yield item.payload / 2

    message = new_message("e1", force=True)
    item = _NotEncoded(message, array, "numpy")
    doubled = [parse(double(item)) for _ in range(2)]  # read twice (a retry, a second step)
    (halved,) = [parse(out) for out in Halve().process(item)]
    assert [element for element, _ in seen] == [b"e1", b"e1", b"e1"]
    assert all(payload is not array for _, payload in seen)
    np.testing.assert_array_equal(array, np.arange(4))  # the item's array, left as it was
    for out, expected in ((doubled[0], array * 2), (doubled[1], array * 2), (halved, array / 2)):
        assert out.data.element == b"e1" and out.metadata.force  # the item's message, kept
        np.testing.assert_array_equal(decode_payload(out.data.payload, element="e1"), expected)
    assert item.message.data.payload == b""  # the item's own message is left as it was


def test_the_array_copy_is_laid_out_as_decoding_lays_it_out() -> None:
    # a stereo mel spectrogram is a strided view (channels, mels, frames): the step gets what
    # np.load of its np.save gives, a C-ordered array (or a Fortran-ordered one)
    bound(make_config())
    layouts: list[tuple[bool, bool, tuple[int, ...]]] = []

    @handle_klio
    @handle_binary
    def look(ctx: Any, item: Any) -> bytes:
        flags = item.payload.flags
        layouts.append((flags.c_contiguous, flags.f_contiguous, item.payload.strides))
        return b""

    base = np.arange(2 * 3 * 4, dtype=np.float32)
    for array in (
        base.reshape(3, 2, 4).transpose(1, 0, 2),  # neither C- nor F-contiguous
        np.asfortranarray(base.reshape(4, 6)),
        np.arange(24.0).reshape(4, 6).T[::2],
    ):
        look(_NotEncoded(new_message("e"), array, "numpy"))
        decoded = decode_payload(encode_payload(array, "numpy"), element="e", numpy=True)
        flags = decoded.flags
        assert layouts[-1] == (flags.c_contiguous, flags.f_contiguous, decoded.strides)


def test_what_must_see_the_message_data_still_does() -> None:
    """A user's wrapper between the two decorators, a skipped load, a V1 message and a payload
    that is not an array get the message's data, its payload encoded, as in klio-audio."""
    bound(make_config())
    array = np.arange(3, dtype=np.float32)

    def logged(func: Any) -> Any:
        @functools.wraps(func)  # copies handle_binary's attributes
        def wrapper(ctx: Any, data: Any) -> Any:
            assert isinstance(data, KlioMessage.Data), type(data)
            return func(ctx, data)

        return wrapper

    @handle_klio
    @logged
    @handle_binary
    def first(ctx: Any, item: Any) -> Any:
        return item.payload[:1]

    out = parse(first(AudioItem(new_message("e1"), array, "numpy")))
    np.testing.assert_array_equal(decode_payload(out.data.payload, element="e1"), [0.0])

    @handle_klio
    @handle_binary(skip_load=True, skip_dump=True)
    def raw(ctx: Any, data: Any) -> bytes:
        return bytes(data.payload)

    encoded = parse(raw(AudioItem(new_message("e2"), array, "numpy"))).data.payload
    np.testing.assert_array_equal(decode_payload(encoded, element="e2", numpy=True), array)

    v1 = KlioMessage()
    v1.version = kmessage.V1
    v1.data.entity_id = "e4"

    @handle_klio
    @handle_binary
    def head(ctx: Any, item: Any) -> Any:
        return item.payload[:1]

    untagged = KlioMessage()  # both ids: Klio leaves it untagged
    untagged.data.entity_id = "e5"
    untagged.data.element = b"e5"
    for message in (v1, untagged):  # a V1 or untagged message's payload passes on
        out = parse(head(AudioItem(message, array, "numpy")))
        passed_on = decode_payload(out.data.payload, element=message.data.entity_id)
        assert isinstance(passed_on, np.ndarray)
        np.testing.assert_array_equal(passed_on, array)

    @handle_klio
    @handle_binary
    def listed(ctx: Any, item: Any) -> Any:
        return [*item.payload, 3]

    out = parse(listed(AudioItem(new_message("e3"), [1, 2], "pickle")))
    assert decode_payload(out.data.payload, element="e3") == [1, 2, 3]

    # an array of Python objects: a copy would share them, so it goes encoded
    @handle_klio
    @handle_binary
    def append(ctx: Any, item: Any) -> Any:
        item.payload[0].append(9)
        return item.payload

    ragged = np.empty(2, dtype=object)
    ragged[:] = [[1], [2, 3]]
    append(AudioItem(new_message("e5"), ragged, "numpy"))
    assert ragged[0] == [1]
