"""Payloads from outside the job are checked once, where they come in: pickles hold data only.

klio-audio's ``handle_binary`` and audio steps unpickle the payload a step receives, and
unpickling runs whatever code the pickle names. A payload from the job's event input is written
by whoever may publish to it, so the router looks at each one as it comes in: one that is a
pickle (or a ``.npy`` of Python objects) naming anything but data (numpy arrays, file objects,
Python's plain types) is dead-lettered, never unpickled. Past the router every pickle is either
such data or one the job's own steps made, in whichever process, and is unpickled in full.
"""

from __future__ import annotations

import ast
import io
import pickle
from typing import Any

FIRST_BYTES = frozenset({0x80, 0x93})
"""A pickle's protocol opcode, and the first byte of numpy's ``.npy`` magic: a payload starting
otherwise is not looked at further (a check of one byte in the router's path)."""

_PICKLE_PROTOCOLS = frozenset(range(2, 6))
_NUMPY_MAGIC = b"\x93NUMPY"

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
        *(("builtins", name) for name in ("complex", "frozenset", "range", "set", "slice")),
    }
)


class _NotData(pickle.UnpicklingError):
    pass


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATA_ONLY:
            return super().find_class(module, name)
        raise _NotData(f"{module}.{name}")


def refusal(payload: bytes) -> str | None:
    """Why ``payload``, come from outside, must not reach a step that unpickles it; None when
    it is no pickle, or one of data alone."""
    pickled: bytes | None = None
    if payload[:1] == b"\x80" and len(payload) > 2 and payload[1] in _PICKLE_PROTOCOLS:
        pickled = payload
    elif payload.startswith(_NUMPY_MAGIC):
        pickled = _objects_of_npy(payload)
    if pickled is None:
        return None
    try:
        _DataUnpickler(io.BytesIO(pickled)).load()
    except _NotData as err:
        return (
            f"the payload pickles {err}: a payload from outside the job may pickle numpy"
            " arrays, file objects and plain data only"
        )
    except Exception:
        return None  # not a whole pickle: a step unpickling it fails before anything it names
    return None


def _objects_of_npy(payload: bytes) -> bytes | None:
    """The pickle inside a ``.npy`` of Python objects (None for any other array, or a header
    that cannot be read: ``np.load`` then refuses it as it is)."""
    try:
        major = payload[6]
        size_bytes = 2 if major == 1 else 4
        start = 8 + size_bytes
        header_size = int.from_bytes(payload[8:start], "little")
        header = ast.literal_eval(payload[start : start + header_size].decode("latin1"))
        descr = header["descr"]
    except Exception:
        return None
    if descr != "|O" and "O" not in str(descr):
        return None
    return payload[start + header_size :]
