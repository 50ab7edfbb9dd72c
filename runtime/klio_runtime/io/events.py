"""Event files: one element id, or one base64 serialized KlioMessage, per line.

A line is taken as a serialized message when it is strict base64 whose bytes parse as a KlioMessage
carrying an element (opening with one of its fields), otherwise as an element id. Blank lines are
skipped. A line that is not UTF-8 goes to the dead-letter place with its file and line number.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from klio_runtime import message as kmessage
from klio_runtime.io.gcs import ready_for
from klio_runtime.io.shards import TextLines, WriteShardedFiles

DEAD_LETTER_TAG = "dead_letter"


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not become a KlioMessage (or an element that cannot be handled at all)."""

    reason: str
    where: str
    detail: str
    element: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "element": self.element,
                "reason": self.reason,
                "where": self.where,
                "detail": self.detail,
            },
            sort_keys=True,
        )


_UTF8_BOM = b"\xef\xbb\xbf"
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def decode_line(raw: bytes) -> kmessage.KlioMessage | None:
    """The message one event line stands for; None for a blank line.

    Raises UnicodeDecodeError for a line that is neither base64 of a message nor UTF-8 text.
    """
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        return None
    stripped = line.strip()
    if _base64_shaped(stripped):
        try:
            msg = kmessage.parse(base64.b64decode(stripped, validate=True))
        except (binascii.Error, ValueError):
            msg = None
        if msg is not None and (msg.data.element or msg.data.entity_id):
            return msg
    return kmessage.new_message(line.decode("utf-8"))


def _base64_shaped(stripped: bytes) -> bool:
    # a character outside base64's alphabet (as in most ids: "-", "_", ".") rules it out at once
    return len(stripped) % 4 == 0 and len(stripped) >= 8 and not stripped.translate(None, _BASE64)


def encode_line(msg: kmessage.KlioMessage) -> str:
    """A message as a base64 event line (the form `decode_line` reads back with its metadata)."""
    return base64.b64encode(kmessage.serialize(msg)).decode("ascii")


def _expand_pattern(pattern: str) -> Iterator[str]:
    ready_for(pattern)
    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        raise FileNotFoundError(f"event input {pattern!r} matches no file")
    for meta in sorted(matched, key=lambda m: m.path):
        yield meta.path


def _read_lines(path: str) -> Iterator[tuple[str, int, bytes]]:
    # Beam opens a .gz/.bz2/... file decompressed (as ReadFromText reads it); that file object
    # has readline but is not iterable
    with FileSystems.open(path) as handle:
        for number, line in enumerate(iter(handle.readline, b""), start=1):
            if number == 1 and line.startswith(_UTF8_BOM):  # an editor's mark, not the id's
                line = line[len(_UTF8_BOM) :]
            yield path, number, line


def unreadable_inputs(
    locations: dict[str, str], header: bytes = b"", kind: str = ""
) -> list[str]:
    """``field: problem`` for each event file pattern (field → pattern) that matches no file; for a
    local one also a directory, a file that cannot be read, or (given its ``header``) one that does
    not start as a ``kind`` file does: what a run would otherwise fail on mid-way. Storage that
    cannot be looked at here (no credentials, unreachable) is left for the run to report."""
    problems = []
    for field, pattern in locations.items():
        remote = "://" in pattern
        try:
            paths = list(_expand_pattern(pattern))
        except FileNotFoundError:
            problems.append(f"{field}: {pattern!r} matches no file")
            continue
        except Exception:
            if not remote:
                raise
            continue  # the run says why it cannot be read, as it would have
        if remote:
            continue
        for path in paths:
            if os.path.isdir(path):
                problems.append(
                    f"{field}: {path!r} is a directory (name a file, or its files: {path}/*)"
                )
            elif not os.access(path, os.R_OK):
                problems.append(f"{field}: {path!r} cannot be read (permission denied)")
            elif header and not _starts_with(path, header):
                problems.append(f"{field}: {path!r} is not {kind}")
    return problems


def _starts_with(path: str, header: bytes) -> bool:
    """Whether the file starts with ``header``; an empty file is taken (Beam reads nothing)."""
    with open(path, "rb") as handle:
        start = handle.read(len(header))
    return not start or start == header


def unwritable_local_outputs(prefixes: dict[str, str]) -> list[str]:
    """``field: problem`` for each local output prefix (field → prefix) whose directory cannot be
    made or written: a file where a directory must be, or no permission. A run would otherwise do
    all its work and fail when it writes. Prefixes elsewhere (``gs://``) are left to the run."""
    problems = []
    for field, prefix in prefixes.items():
        if "://" in prefix:
            continue
        # the nearest part of the prefix's directory that exists: the run makes the rest
        existing = os.path.dirname(prefix) or "."
        while not os.path.exists(existing) and os.path.dirname(existing) not in ("", existing):
            existing = os.path.dirname(existing)
        if not os.path.exists(existing):
            existing = "."
        if not os.path.isdir(existing):
            problems.append(f"{field}: {existing!r} is a file, not a directory")
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"{field}: {existing!r} cannot be written (permission denied)")
    return problems


def count_lines(pattern: str) -> int:
    """Non-blank lines in the files of ``pattern`` (the progress bar's total)."""
    total = 0
    for path in _expand_pattern(pattern):
        for _, _, line in _read_lines(path):
            if line.strip():
                total += 1
    return total


class _DecodeLines(beam.DoFn):
    """(file, line number, line) → a serialized KlioMessage, or a dead letter naming the line."""

    def process(self, record: tuple[str, int, bytes]) -> list[object]:
        # A list, not a generator: this runs once per line and Beam iterates either.
        path, number, raw = record
        return _decoded(raw, f"{path}:{number}")


class _DecodeEventLines(beam.DoFn):
    """A line (str or bytes) → a serialized KlioMessage, or a dead letter naming the line."""

    def process(self, line: str | bytes) -> list[object]:
        raw = line.encode("utf-8") if isinstance(line, str) else bytes(line)
        return _decoded(raw, repr(raw[:60]))


def _decoded(raw: bytes, where: str) -> list[object]:
    try:
        msg = decode_line(raw)
    except UnicodeDecodeError as err:
        letter = DeadLetter(
            "malformed_line",
            where,
            f"not UTF-8 text: {err.reason}",
            element=raw[:60].decode("utf-8", "replace"),
        )
        return [pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)]
    if msg is None:
        return []
    return [kmessage.carry(msg)]  # decoded and checked here: the router need not parse again


class DecodeEventLines(beam.PTransform):
    """Event lines from any source (str or bytes: an element id, or a base64 KlioMessage) →
    serialized KlioMessages, as a file event input reads its lines; tag ``dead_letter``.

    For jobs whose ids come from elsewhere (a query, a list): ``ids | DecodeEventLines() |
    KlioJobTransform(...)``.
    """

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return pcoll | "Decode" >> beam.ParDo(_DecodeEventLines()).with_outputs(
            DEAD_LETTER_TAG, main="events"
        )


class ReadEventFile(beam.PTransform):
    """``pattern`` (local or gs://, globs allowed) → serialized KlioMessages; tag
    ``dead_letter``."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        if not pattern:
            raise ValueError("ReadEventFile: the file pattern is empty")
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Pattern" >> beam.Create([self.pattern])
            | "MatchFiles" >> beam.FlatMap(_expand_pattern)
            | "ReadLines" >> beam.FlatMap(_read_lines)
            | "Decode" >> beam.ParDo(_DecodeLines()).with_outputs(DEAD_LETTER_TAG, main="events")
        )


def _element_line(data: bytes) -> str:
    """The element's id as its line (Klio writes ``data.element``), or, when that line would not
    read back as the same id (not UTF-8, a line break, blank, a leading byte-order mark, base64 of
    a message), a new message for it, base64-encoded: the reader takes either as that element."""
    msg = kmessage.own_message(data)
    element = msg.data.element or msg.data.entity_id.encode("utf-8")
    text = _plain_line(element)
    return text if text is not None else encode_line(kmessage.new_message(element))


def _plain_line(element: bytes) -> str | None:
    """``element`` as a line that reads back as itself, or None."""
    stripped = element.strip()
    if b"\n" in element or b"\r" in element or not stripped or element.startswith(_UTF8_BOM):
        return None
    try:
        text = element.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _base64_shaped(stripped):  # most such ids read back as themselves ("track123")
        read_back = decode_line(element)
        if read_back is None or read_back.data.element != element:
            return None
    return text


class WriteEventFile(beam.PTransform):
    """Serialized KlioMessages → one element id per line under ``prefix``, in Beam's shard names
    (``<prefix>-00000-of-00002``…; one empty shard when there is nothing to write, as Beam's
    ``WriteToText``). Further arguments are ``WriteToText``'s (``file_name_suffix``,
    ``num_shards``, …); with any, or on an unbounded input, ``WriteToText`` itself writes
    (otherwise :class:`klio_runtime.io.shards.WriteShardedFiles`, which costs less)."""

    def __init__(self, prefix: str, *text_args: Any, **text_kwargs: Any) -> None:
        super().__init__()
        self.prefix = prefix
        self.text_args = text_args
        self.text_kwargs = text_kwargs

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        ready_for(self.prefix)
        lines = pcoll | "ElementId" >> beam.Map(_element_line)
        if self.text_args or self.text_kwargs or not pcoll.is_bounded:
            return lines | "Write" >> beam.io.WriteToText(
                self.prefix, *self.text_args, **self.text_kwargs
            )
        return lines | "Write" >> WriteShardedFiles(self.prefix, TextLines())


class _WriteBundleLines(beam.DoFn):
    """Text lines → one file per bundle that has any, ``<prefix>-<UTC time>-<id><suffix>``.

    Written under a hidden temporary name and renamed when the bundle ends, so a reader of
    ``<prefix>-*`` never sees half a file (a bundle that fails leaves only the hidden one). Beam's
    ``WriteToText`` would cost several stages (~0.1 s) per run, even with nothing to write.
    """

    def __init__(self, prefix: str, suffix: str) -> None:
        self.prefix = prefix
        self.suffix = suffix

    def start_bundle(self) -> None:
        self._handle: Any = None
        self._id = ""

    def process(self, line: str) -> None:
        if self._handle is None:
            ready_for(self.prefix)
            self._id = uuid.uuid4().hex[:12]
            self._handle = FileSystems.create(
                self._temporary(), compression_type=CompressionTypes.UNCOMPRESSED
            )
        self._handle.write(line.encode("utf-8") + b"\n")

    def finish_bundle(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        final = f"{self.prefix}-{stamp}-{self._id}{self.suffix}"
        FileSystems.rename([self._temporary()], [final])

    def _temporary(self) -> str:
        directory, slash, name = self.prefix.rpartition("/")
        return f"{directory}{slash}.{name}-{self._id}.tmp"


class WriteDeadLetters(beam.PTransform):
    """DeadLetter records → JSON lines (element, reason, where, detail) in files named
    ``<prefix>-<UTC time>-<id>.jsonl``, one per bundle that has any: no dead letters, no file
    (a job directory is not littered with empty ones), and a run never replaces the letters of
    the run before."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        ready_for(self.prefix)
        return (
            pcoll
            | "Json" >> beam.Map(DeadLetter.to_json)
            | "Write" >> beam.ParDo(_WriteBundleLines(self.prefix, ".jsonl"))
        )
