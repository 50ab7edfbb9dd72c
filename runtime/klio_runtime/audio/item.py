"""The element audio steps pass to each other, and klio-audio's payload conventions.

Between Klio's audio transforms every payload went through ``np.save``/``np.load`` or pickle. Here a
step hands the next one an :class:`AudioItem`: the KlioMessage plus the payload as a Python object,
so a chain of audio steps in one process never re-encodes an array. The encoding happens only
when something needs bytes: ``bytes(item)`` gives the KlioMessage with its payload encoded as the
step that made it would have in klio-audio (``np.save`` for arrays, pickle for the rest, as-is for
PNG/bytes). Beam pickles items only between stages (pickle protocol 5 copies arrays once).
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import Any, Literal

import apache_beam as beam
import numpy as np
from apache_beam.coders import coder_impl

from klio_runtime import message as kmessage
from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError
from klio_runtime.proto.klio_pb2 import KlioMessage

Encoding = Literal["numpy", "pickle", "raw"]
NUMPY_MAGIC = b"\x93NUMPY"
_PICKLE_PROTOCOLS = frozenset(range(2, 6))


class AudioItem:
    """A KlioMessage in flight between audio steps, its payload kept as an object.

    It holds nothing the message's bytes do not: a step computes the same from either (a job's
    test hands its steps bytes where ``klio job run`` hands them items).
    """

    __slots__ = ("encoding", "message", "payload")

    def __init__(
        self, message: KlioMessage, payload: Any, encoding: Encoding = "pickle"
    ) -> None:
        self.message = message
        self.payload = payload
        self.encoding: Encoding = encoding

    @property
    def element(self) -> str:
        return kmessage.element_id(self.message)

    def replace(self, payload: Any, encoding: Encoding = "numpy") -> AudioItem:
        """The same message with a new payload; the message is shared."""
        return AudioItem(self.message, payload, encoding)

    def bare_message(self) -> KlioMessage | None:
        """A copy of the message, its payload empty, for a step that reads the array itself and
        sets a payload of its own (``handle_klio`` over ``handle_binary``); None when the payload
        must reach it encoded, as in klio-audio: it is not an array encoded with numpy (whose
        round trip a copy gives exactly), it holds Python objects (a copy would share them), or
        the message is not V2 (its payload passes on as it was)."""
        payload = self.payload
        if (
            type(payload) is not np.ndarray
            or self.encoding != "numpy"
            or payload.dtype.hasobject
            or self.message.version != kmessage.V2
        ):
            return None
        out = KlioMessage()
        out.CopyFrom(self.message)  # an item's message holds no payload (see as_item)
        return out

    def to_message(self) -> KlioMessage:
        """A KlioMessage with the payload encoded (klio-audio's convention for this payload)."""
        out = KlioMessage()
        out.CopyFrom(self.message)
        out.data.payload = encode_payload(self.payload, self.encoding)
        return out

    def __bytes__(self) -> bytes:
        # The decorators of klio_runtime call bytes() on what they receive: an AudioItem becomes
        # the serialized KlioMessage a Klio job's own DoFn expects.
        return kmessage.serialize(self.to_message())

    def __reduce__(self) -> tuple[Any, ...]:
        stripped = KlioMessage()
        stripped.CopyFrom(self.message)
        stripped.data.payload = b""
        return (_restore, (stripped.SerializeToString(), self.payload, self.encoding))

    def __repr__(self) -> str:
        shown = (f"ndarray{self.payload.shape}" if isinstance(self.payload, np.ndarray)
                 else type(self.payload).__name__)
        return f"AudioItem(element={self.element!r}, payload={shown})"


def _restore(message: bytes, payload: Any, encoding: Encoding) -> AudioItem:
    return AudioItem(KlioMessage.FromString(message), payload, encoding)


def estimated_size(value: Any) -> int:
    """Bytes an element will take, without encoding it (Beam samples sizes of elements)."""
    if isinstance(value, AudioItem):
        payload = value.payload
        size = payload.nbytes if isinstance(payload, np.ndarray) else 0
        if isinstance(payload, bytes | bytearray):
            size = len(payload)
        elif isinstance(payload, io.BytesIO):
            size = payload.getbuffer().nbytes
        return size + value.message.ByteSize() + 64
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class AudioItemCoder(beam.coders.Coder):
    """Pickles AudioItems between Beam stages; estimates their size without encoding them.

    Beam's operation counters sample element sizes by encoding elements with the PCollection's
    coder; for arrays of audio that would be the very re-encoding AudioItem avoids.
    """

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def _create_impl(self) -> coder_impl.CoderImpl:
        return coder_impl.CallbackCoderImpl(self.encode, self.decode, estimated_size)

    def to_type_hint(self) -> Any:
        return AudioItem

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(AudioItem, AudioItemCoder)


def encode_payload(payload: Any, encoding: Encoding) -> bytes:
    """klio-audio's payload bytes: ``np.save`` (numpy), ``pickle.dumps`` (pickle) or as-is (raw)."""
    if encoding == "numpy":
        out = io.BytesIO()
        np.save(out, payload, allow_pickle=True)
        return out.getvalue()
    if encoding == "raw":
        if isinstance(payload, bytes | bytearray | memoryview):
            return bytes(payload)
        if isinstance(payload, str):
            return payload.encode("utf-8")
        if isinstance(payload, io.BytesIO):
            return payload.getvalue()
        raise TypeError(f"raw payload must be bytes or str, not {type(payload).__name__}")
    out = io.BytesIO()
    _PayloadPickler(out).dump(payload)  # the default protocol, as klio-audio's: readable anywhere
    return out.getvalue()


class _PayloadPickler(pickle.Pickler):
    """pickle.dumps, but a matplotlib Figure is pickled as pyplot's own figures are: unpickled
    anywhere, it becomes pyplot's current figure, so a job's ``plt.savefig`` saves it, as with
    klio-audio's plots (drawn with pyplot; ours are drawn without its global state)."""

    def reducer_override(self, obj: Any) -> Any:
        figure = sys.modules.get("matplotlib.figure")
        if figure is None or not isinstance(obj, figure.Figure):
            return NotImplemented
        func, args, state, *rest = obj.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
        return (func, args, {**state, "_restore_to_pylab": True}, *rest)


def decode_payload(data: bytes, *, element: str, numpy: bool | None = None) -> Any:
    """Read a payload written by :func:`encode_payload` or by klio-audio.

    ``numpy`` True/False asks for ``np.load``/``pickle.loads`` as klio-audio's ``load_with_numpy``
    did; either way a payload that is plainly the other kind (numpy's magic bytes, a pickle
    header) is read as what it is, so a producer's choice never breaks its consumer. None: sniff.
    Bytes that are neither are returned unchanged. As klio-audio's, it unpickles what it is
    given: a step that reads a payload from outside the job trusts its publisher.
    """
    is_numpy = data[:6] == NUMPY_MAGIC
    is_pickle = len(data) > 2 and data[0] == 0x80 and data[1] in _PICKLE_PROTOCOLS
    try:
        if is_numpy or (numpy and not is_pickle):
            return np.load(io.BytesIO(data), allow_pickle=True)
        if is_pickle or numpy is False:
            return pickle.loads(data)
    except Exception as err:
        kind = "np.load" if is_numpy or numpy else "pickle.loads"
        raise AudioError(
            element, errors.BAD_PAYLOAD, f"{kind} failed on a {len(data)}-byte payload: {err}"
        ) from err
    return data


def as_item(incoming: Any, *, numpy: bool | None = None, decode: bool = True) -> AudioItem:
    """An AudioItem from what a step received: an AudioItem, or serialized KlioMessage bytes.

    Raises AudioError (reason ``bad_payload``) for bytes that are not a KlioMessage or a payload
    that cannot be decoded.
    """
    if isinstance(incoming, AudioItem):
        return incoming
    if not isinstance(incoming, bytes | bytearray):
        raise AudioError(
            repr(incoming)[:60], errors.BAD_PAYLOAD,
            f"expected a KlioMessage (bytes) or an AudioItem, got {type(incoming).__name__}",
        )
    try:
        msg = kmessage.parse(bytes(incoming))
    except kmessage.MessageDecodeError as err:
        raise AudioError(repr(bytes(incoming[:40])), errors.BAD_PAYLOAD, str(err)) from err
    raw = msg.data.payload
    msg.data.payload = b""
    element = kmessage.element_id(msg)
    payload = decode_payload(raw, element=element, numpy=numpy) if decode else raw
    encoding: Encoding = (
        "numpy" if isinstance(payload, np.ndarray)
        else "raw" if isinstance(payload, bytes) else "pickle"
    )
    return AudioItem(msg, payload, encoding)
