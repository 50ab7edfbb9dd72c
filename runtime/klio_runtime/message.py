"""The KlioMessage codec: bytes and JSON in and out, Klio's v1 → v2 upgrade, element ids.

Messages are the generated protobuf classes themselves (``KlioMessage``, ``KlioJob``), so
bytes stay wire-compatible with Spotify Klio. No Beam, no IO here.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from klio_runtime.proto.klio_pb2 import KlioJob, KlioJobAuditLogItem, KlioMessage, Version

if TYPE_CHECKING:
    from klio_runtime.routing import JobRef

__all__ = [
    "InvalidElementId",
    "KlioJob",
    "KlioJobAuditLogItem",
    "KlioMessage",
    "MessageDecodeError",
    "Version",
    "carry",
    "element_id",
    "from_json",
    "is_carried",
    "new_message",
    "own_message",
    "parse",
    "parse_exact",
    "parse_own",
    "serialize",
    "take_carried",
    "to_json",
    "upgrade",
    "validate_element_id",
]

# plain ints: attribute access on the generated enum wrapper is a slow Python __getattr__
V1: Version = Version.V1
V2: Version = Version.V2
_SHOWN_ELEMENT_CHARS = 80
_KNOWN_FIRST_TAGS = (b"\x0a", b"\x12", b"\x18")
"""The tags of metadata (1, length-delimited), data (2, length-delimited), version (3, varint)."""


class MessageDecodeError(ValueError):
    """Bytes or JSON that are not a KlioMessage; the text says why, in one line."""


class InvalidElementId(ValueError):
    """An element id that must not become part of a storage path."""


def parse_exact(data: bytes) -> KlioMessage:
    """Parse serialized KlioMessage bytes as they are, without Klio's v1 → v2 upgrade.

    Protobuf parsing is lenient: many random byte strings parse "successfully" into
    unknown fields. So bytes count as a KlioMessage only when they parse, open with one of
    its fields (``metadata``, ``data`` or ``version``, as every serializer writes it) and
    name an element (``data.element`` or the v1 ``data.entity_id``). A ``version`` this schema
    does not know is kept (:func:`upgrade` reads it as untagged, as Klio's serializer does).
    Fields this schema does not know after that opening (a newer producer's) are kept and
    written on, as protobuf and Klio keep them. Bytes starting with a
    printable ASCII character (any JSON text, any plain id) open with a field number of 4 or more,
    unknown to KlioMessage, so they are always refused; truncated messages fail to parse.
    Random bytes that happen to spell a valid message cannot be told apart.

    Raises:
        MessageDecodeError: with a one-line reason.
    """
    msg = KlioMessage()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        # protobuf's own text only repeats the type name, so say what it means.
        raise MessageDecodeError(
            "not a KlioMessage: not valid protobuf (truncated, or not protobuf at all)"
        ) from None
    known = KlioMessage()
    known.CopyFrom(msg)
    known.DiscardUnknownFields()  # in C, at every depth; sizes differ only if some were there
    if known.ByteSize() != msg.ByteSize() and data[:1] not in _KNOWN_FIRST_TAGS:
        unknown = _first_unknown_field(_parse_raw(data), "")
        raise MessageDecodeError(
            f"not a KlioMessage: unknown field number at {unknown} (not in klio.proto)"
        )
    if not msg.data.element and not msg.data.entity_id:
        raise MessageDecodeError(
            "not a KlioMessage: no element (data.element and data.entity_id are empty)"
        )
    return msg


def _parse_raw(data: bytes) -> KlioMessage:
    msg = KlioMessage()
    msg.ParseFromString(data)
    return msg


def upgrade(msg: KlioMessage) -> KlioMessage:
    """Apply Klio's v1 → v2 compatibility rules in place and return ``msg``.

    As Klio's serializer does: a V1 message (or an untagged one with only ``entity_id``)
    gets ``data.element`` = UTF-8 of ``entity_id``; an untagged message (version 0, or one
    Klio does not know) with only ``element`` is tagged V2, with neither it is tagged V1, with
    both it stays as it is (and is routed by V1 rules).
    """
    data = msg.data
    if msg.version == V2:
        return msg
    if msg.version == V1:
        if data.entity_id and not data.element:
            data.element = data.entity_id.encode("utf-8")
        return msg
    if data.entity_id and not data.element:
        msg.version = V1
        data.element = data.entity_id.encode("utf-8")
    elif not data.entity_id and not data.element:
        msg.version = V1
    elif data.element and not data.entity_id:
        msg.version = V2
    return msg


def parse(data: bytes, *, allow_non_klio: bool = False) -> KlioMessage:
    """Parse bytes read from an event input into a KlioMessage a job can route.

    The bytes must pass :func:`parse_exact`'s checks; then Klio's v1 → v2 upgrade is
    applied (:func:`upgrade`) and the message must have a ``data.element`` (a V2 message
    that names its element only in ``entity_id`` is refused rather than run with an
    empty id).

    With ``allow_non_klio``, bytes that are not a KlioMessage become the element of a new
    V2 message for anyone (Klio's ``allow_non_klio_messages``); nothing is dropped.

    Raises:
        MessageDecodeError: with a one-line reason, unless ``allow_non_klio``.
    """
    try:
        msg = KlioMessage.FromString(data)
    except DecodeError:
        pass  # parse_exact below says why
    else:
        # The common message, in short: what parse_exact and upgrade make of it, without their
        # copies. Opening with a field of KlioMessage, it passes parse_exact's checks with
        # whatever fields follow (a newer producer's are kept); a V2 message with an element is
        # one upgrade leaves as it is.
        if data[:1] in _KNOWN_FIRST_TAGS and msg.version == V2 and msg.data.element:
            return msg
    try:
        msg = upgrade(parse_exact(data))
        if not msg.data.element:
            raise MessageDecodeError(
                "not a KlioMessage: V2 message has no data.element (only data.entity_id)"
            )
    except MessageDecodeError:
        if not allow_non_klio:
            raise
        msg = KlioMessage(version=V2)
        msg.data.element = bytes(data)
        msg.metadata.intended_recipients.anyone.SetInParent()
    return msg


def serialize(msg: KlioMessage) -> bytes:
    """Serialize a KlioMessage to the bytes Klio reads."""
    return msg.SerializeToString()


def parse_own(data: bytes, *, allow_non_klio: bool = False) -> KlioMessage:
    """Parse bytes the job's own steps made: a well-formed V2 message with an element (what the
    router, the decorators and output preparation emit) is taken as it is; anything else gets
    :func:`parse`'s full checks, which bytes from an event input always get."""
    try:
        msg = KlioMessage.FromString(data)
    except DecodeError:
        msg = None
    if msg is not None and msg.version == V2 and msg.data.element:
        return msg
    return parse(data, allow_non_klio=allow_non_klio)


class _Carried(threading.local):
    """Per thread: serialized bytes (by identity) → the message they were made from."""

    def __init__(self) -> None:
        self.messages: dict[int, tuple[bytes, KlioMessage]] = {}


_carried = _Carried()
_MAX_CARRIED = 256  # messages nobody took (the next step was not ours) are forgotten past this


def carry(msg: KlioMessage) -> bytes:
    """``serialize(msg)``, remembering ``msg`` for the job's next step (:func:`take_carried`).

    Beam hands an element to the next step of a fused stage as the same object, so the next step
    finds the message by the bytes' identity and skips parsing; anywhere else the bytes are plain
    bytes. The caller must not change ``msg`` afterwards.
    """
    data = msg.SerializeToString()
    messages = _carried.messages
    if len(messages) >= _MAX_CARRIED:
        messages.clear()
    messages[id(data)] = (data, msg)  # holding `data` keeps its id from being reused
    return data


def is_carried(data: object) -> bool:
    """Whether ``data`` was made by :func:`carry` in this thread and not taken yet (it stays for
    the next step to take)."""
    found = _carried.messages.get(id(data))
    return found is not None and found[0] is data


def take_carried(data: object) -> KlioMessage | None:
    """The message ``data`` was made from by :func:`carry` in this thread, handed out once (the
    taker may change it; a second consumer of the same element parses the bytes instead)."""
    found = _carried.messages.pop(id(data), None)
    if found is None or found[0] is not data:
        return None
    return found[1]


def own_message(data: bytes) -> KlioMessage:
    """The message of bytes the job's own steps made, for an event writer: the carried message
    when its last step made it (no parse), else :func:`parse_own`."""
    msg = take_carried(data)
    return msg if msg is not None else parse_own(data)


def new_message(
    element: str | bytes,
    payload: bytes = b"",
    *,
    force: bool = False,
    ping: bool = False,
    recipients: Sequence[JobRef] | None = None,
    trigger_children_of: JobRef | None = None,
) -> KlioMessage:
    """Build a V2 KlioMessage for ``element`` (a ``str`` is UTF-8 encoded).

    ``recipients`` None means anyone (top-down); a sequence means only those jobs
    (bottom-up), and ``trigger_children_of`` names the job that turns the message back to
    anyone when it publishes.

    Raises:
        InvalidElementId: the element is empty.
        ValueError: ``trigger_children_of`` without ``recipients``.
    """
    element_bytes = element.encode("utf-8") if isinstance(element, str) else bytes(element)
    if not element_bytes:
        raise InvalidElementId("invalid element id '': it is empty")
    if not (payload or force or ping) and recipients is None and trigger_children_of is None:
        # the common message (an event file's plain id): parsing a template is a third of the
        # cost of setting each field
        msg = KlioMessage.FromString(_TOP_DOWN_TEMPLATE)
        msg.data.element = element_bytes
        return msg
    msg = KlioMessage(version=V2)
    msg.data.element = element_bytes
    msg.data.payload = payload
    msg.metadata.force = force
    msg.metadata.ping = ping
    intended = msg.metadata.intended_recipients
    if recipients is None:
        if trigger_children_of is not None:
            raise ValueError("trigger_children_of needs recipients (it only applies to limited)")
        intended.anyone.SetInParent()
    else:
        intended.limited.SetInParent()
        intended.limited.recipients.extend(job.to_proto() for job in recipients)
        if trigger_children_of is not None:
            intended.limited.trigger_children_of.CopyFrom(trigger_children_of.to_proto())
    return msg


_TOP_DOWN_TEMPLATE = KlioMessage(
    version=V2, metadata={"intended_recipients": {"anyone": {}}}
).SerializeToString()


def element_id(msg: KlioMessage) -> str:
    """The element id as text; bytes that are not UTF-8 show as ``\\xNN`` escapes."""
    return msg.data.element.decode("utf-8", errors="backslashreplace")


def to_json(msg: KlioMessage) -> str:
    """Proto3 JSON with the ``.proto`` field names (bytes base64, enums by name)."""
    return json_format.MessageToJson(msg, preserving_proto_field_name=True)


def from_json(text: str) -> KlioMessage:
    """Parse proto3 JSON (as :func:`to_json` writes it) into a KlioMessage, as written.

    Raises:
        MessageDecodeError: invalid JSON, an unknown field or a wrong type, named.
    """
    try:
        json.loads(text)
    except ValueError as exc:
        raise MessageDecodeError(f"not JSON: {exc}") from None
    except RecursionError:
        raise MessageDecodeError("not a KlioMessage in JSON: nested too deeply") from None
    try:
        return json_format.Parse(text, KlioMessage())
    except json_format.ParseError as exc:
        reason = " ".join(str(exc).split())
        raise MessageDecodeError(f"not a KlioMessage in JSON: {reason}") from None


# Characters that must never reach a path or object name.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# Unicode's Cc category: the C0 controls, DEL and the C1 controls (NUL among them).
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
_PATH_SEPARATOR = re.compile(r"[/\\]")


def validate_element_id(element: str | bytes) -> str:
    """Return ``element`` as text if it is safe inside a storage prefix, else raise.

    Element ids are data, joined under a configured prefix to find inputs and outputs.
    Refused: empty ids, bytes that are not UTF-8, NUL and other control characters,
    absolute paths (leading ``/`` or ``\\``, drive prefixes such as ``C:``), URLs
    (``gs://…``), ``..`` path segments (split on ``/`` and ``\\``), and ids made only of
    ``.`` segments, which name the prefix itself.

    Raises:
        InvalidElementId: naming the element (repr, truncated) and the reason.
    """
    if isinstance(element, bytes | bytearray):
        try:
            text = bytes(element).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidElementId(
                f"invalid element id {_shown(element)}: not UTF-8 ({exc.reason} at byte "
                f"{exc.start})"
            ) from None
    else:
        text = element
    reason = _unsafe_reason(text)
    if reason is not None:
        raise InvalidElementId(f"invalid element id {_shown(element)}: {reason}")
    return text


def _unsafe_reason(text: str) -> str | None:
    if not text:
        return "it is empty"
    control = _CONTROL_CHARACTER.search(text)
    if control is not None:
        index = control.start()
        if text[index] == "\0":
            return f"NUL character at index {index}"
        return f"control character U+{ord(text[index]):04X} at index {index}"
    if text[0] in "/\\":
        return "it is an absolute path"
    if _URL_SCHEME.match(text):
        return "it is a URL, not an id"
    if text[1:2] == ":":  # Windows reads any "X:" prefix as a drive
        return "it starts with a drive letter"
    segments = _PATH_SEPARATOR.split(text)
    if ".." in segments:
        return "it has a '..' path segment"
    if all(segment in ("", ".") for segment in segments):
        return "it names the prefix itself, not an element under it"
    return None


def _shown(element: str | bytes) -> str:
    if len(element) <= _SHOWN_ELEMENT_CHARS:
        return repr(element)
    return repr(element[:_SHOWN_ELEMENT_CHARS]) + f"… ({len(element)} long)"


def _first_unknown_field(msg: Message, path: str) -> str:
    """Where the first field unknown to the schema sits (``data.7``), or ``?``.

    Only message-typed fields are visited, so large bytes fields are never copied.
    """
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        return f"{path}{unknown[0].field_number}"
    for field in msg.DESCRIPTOR.fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        value = getattr(msg, field.name)
        if field.is_repeated:
            for index, item in enumerate(value):
                found = _first_unknown_field(item, f"{path}{field.name}[{index}].")
                if found != "?":
                    return found
        elif msg.HasField(field.name):
            found = _first_unknown_field(value, f"{path}{field.name}.")
            if found != "?":
                return found
    return "?"
