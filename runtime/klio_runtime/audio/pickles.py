"""Which pickled payloads are unpickled in full: only those a step of this process pickled.

klio-audio pickles payloads (file objects, figures, a job's own objects) and unpickles whatever
payload reaches a step. A payload can come from outside, though: anyone who may publish to a
job's input topic writes its first step's payload, and unpickling runs code. So a payload is
unpickled in full only when this process made it (:func:`made_here` notes each one, by digest);
any other is loaded as data alone: numpy arrays, file objects (``BytesIO``) and Python's plain
types, never a callable that could act.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

_REMEMBERED = 4096
"""Digests kept: a payload is read soon after it is made (the next step, or the next stage)."""

_made: OrderedDict[bytes, None] = OrderedDict()
_lock = threading.Lock()

_DATA_ONLY: frozenset[tuple[str, str]] = frozenset(
    {
        # numpy arrays, masked arrays, scalars and dtypes, pickled by any numpy release
        *(
            (module, name)
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.ma.core", "_mareconstruct"),
        ("numpy.ma.core", "MaskedArray"),
        ("numpy.ma", "MaskedArray"),
        # a downloaded file, as klio-audio's GcsLoadBinary hands it on
        ("_io", "BytesIO"),
        ("io", "BytesIO"),
        # plain data (protocol 2 writes bytes through _codecs.encode)
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
        *(("builtins", name) for name in ("bytearray", "complex", "frozenset", "range", "set",
                                          "slice")),
    }
)


class NotMadeHere(pickle.UnpicklingError):
    """A payload from outside names something other than data; it was not unpickled."""


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def made_here(data: bytes) -> bytes:
    """Note ``data`` as a payload this process made (it may be unpickled in full); return it."""
    key = _digest(data)
    with _lock:
        _made[key] = None
        _made.move_to_end(key)
        while len(_made) > _REMEMBERED:
            _made.popitem(last=False)
    return data


def _was_made_here(data: bytes) -> bool:
    with _lock:
        return _digest(data) in _made


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATA_ONLY:
            return super().find_class(module, name)
        raise NotMadeHere(
            f"it pickles {module}.{name}: a payload no step of this job made here is read as"
            " arrays, file objects and plain data only"
        )


def load_pickle(data: bytes) -> Any:
    """``pickle.loads``, in full for a payload made here, else as data alone."""
    if _was_made_here(data):
        return pickle.loads(data)
    return _DataUnpickler(io.BytesIO(data)).load()


def load_numpy(data: bytes) -> Any:
    """``np.load`` of a ``.npy`` payload; an array of Python objects (pickled inside) only when
    made here."""
    return np.load(io.BytesIO(data), allow_pickle=_was_made_here(data))
