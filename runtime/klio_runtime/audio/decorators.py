"""``handle_binary``: klio-audio's decorator that (de)serializes a payload around a job's function.

Stack it under ``@handle_klio``, which hands the function ``data`` (element, payload bytes)::

    class MelSpectrogram(beam.DoFn):
        @handle_klio
        @handle_binary(load_with_numpy=True)
        def process(self, item):
            yield librosa.feature.melspectrogram(y=item.payload, sr=22050)

The function receives ``item`` with ``item.element`` (bytes) and ``item.payload`` (the loaded
object); what it returns (or yields) is dumped back to payload bytes. Conventions as klio-audio:
pickle by default, ``np.load``/``np.save`` with ``load_with_numpy``/``save_with_numpy``,
``skip_load``/``skip_dump`` to pass the raw ``data`` in / the return value out unchanged.
Unlike klio-audio, a payload that is plainly numpy (or plainly a pickle) is read as what it is
whatever the flag says, so a producer's choice of encoding never breaks a consumer.
"""

from __future__ import annotations

import collections
import functools
import io
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from apache_beam import pvalue
from matplotlib.figure import Figure

from klio_runtime.audio.item import AudioItem, decode_payload, encode_payload
from klio_runtime.audio.plots import make_current
from klio_runtime.transforms.handoff import READS_PAYLOAD_OBJECTS_MARK

FakeKlioMsg = collections.namedtuple("FakeKlioMsg", ["element", "payload"])


class BinarySerializer:
    """Loads the payload before the function and dumps its result after, per the flags."""

    def __init__(
        self, skip_load: bool = False, skip_dump: bool = False, load_with_numpy: bool = False,
        save_with_numpy: bool = False,
    ) -> None:
        self.skip_load = skip_load
        self.skip_dump = skip_dump
        self.load_with_numpy = load_with_numpy
        self.save_with_numpy = save_with_numpy

    def load(self, data: Any) -> Any:
        if self.skip_load:
            return data
        if isinstance(data, AudioItem):  # already an object: nothing to decode
            element, payload = data.message.data.element, data.payload
            if type(payload) is np.ndarray:
                # a copy of its own each call, laid out as decoding gave (C order unless it is
                # Fortran-contiguous): the function may change it in place, and a retry or
                # another step reads the item again
                payload = payload.copy(order="A")
            elif isinstance(payload, io.BytesIO):
                # a file object of its own, at its start, as each of Klio's steps unpickles one:
                # a step beside LoadAudio reads the whole file whichever of them runs first
                payload = io.BytesIO(payload.getvalue())
        else:
            element = bytes(data.element)
            payload = decode_payload(
                bytes(data.payload), element=element.decode("utf-8", "backslashreplace"),
                numpy=self.load_with_numpy,
            )
        if isinstance(payload, Figure):
            make_current(payload)  # as unpickling Klio's pyplot-drawn plot makes it
        return FakeKlioMsg(element=element, payload=payload)

    def dump(self, result: Any) -> Any:
        if self.skip_dump:
            return result
        if isinstance(result, pvalue.TaggedOutput):
            return pvalue.TaggedOutput(result.tag, self.dump(result.value))
        return encode_payload(result, "numpy" if self.save_with_numpy else "pickle")


def handle_binary(*args: Any, **kwargs: Any) -> Any:
    """Decorate a ``@handle_klio`` function or DoFn method; with or without parentheses.

    Keyword arguments: ``skip_load``, ``skip_dump``, ``load_with_numpy``, ``save_with_numpy``
    (all False by default).
    """
    known = {"skip_load", "skip_dump", "load_with_numpy", "save_with_numpy"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        # klio-audio reads the four it knows and ignores the rest: a job with a stray (or
        # misspelt) one runs there, so it runs here, told what is ignored
        warnings.warn(
            f"handle_binary: option(s) {unknown} ignored (known: {sorted(known)})",
            stacklevel=2,
        )
    serializer = BinarySerializer(**{k: v for k, v in kwargs.items() if k in known})

    def inner(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(first: Any, data: Any, *rest: Any, **kw: Any) -> Any:
            result = func(first, serializer.load(data), *rest, **kw)
            if isinstance(result, types.GeneratorType):
                return _dump_each(serializer, result)
            return serializer.dump(result)

        if not serializer.skip_load:
            # It reads an AudioItem's array itself: handle_klio may hand it the item (the array
            # is then copied, not encoded and decoded). Marked with itself: a user's
            # functools.wraps wrapper copies the mark, and is not this wrapper.
            setattr(wrapper, READS_PAYLOAD_OBJECTS_MARK, wrapper)

        return wrapper

    if args and callable(args[0]):
        return inner(args[0])
    return inner


def _dump_each(serializer: BinarySerializer, results: Iterator[Any]) -> Iterator[Any]:
    for result in results:
        yield serializer.dump(result)
