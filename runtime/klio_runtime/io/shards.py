"""Bounded event outputs as files in Beam's shard names, without Beam's file sinks.

``WriteToText`` and ``WriteToAvro`` cost ~0.07 s of stages per run, and FnApiRunner does not fuse
their writing step with the steps before it (~10 us per element: each one is encoded, buffered
and decoded again). Here each bundle writes its own file in a hidden directory of the run, and
one last step names the files ``<prefix>-00000-of-00002<suffix>``… as those sinks do (one empty
file when there is nothing to write), then removes the directory with whatever failed bundle
attempts left in it. The directory is named when the run starts, as Beam's sinks name theirs:
two runs of one built pipeline (a Dataflow template launched twice) each write and clean up
their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from klio_runtime.io.gcs import ready_for


class RecordWriter(Protocol):
    def write(self, value: Any) -> None: ...

    def flush(self) -> None: ...


class FileFormat(Protocol):
    """How one file holds values: a writer over an open handle, and the file's MIME type."""

    @property
    def mime_type(self) -> str: ...

    def writer(self, handle: BinaryIO) -> RecordWriter: ...


class _LineWriter:
    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def write(self, value: Any) -> None:
        self._handle.write(value.encode("utf-8") + b"\n")

    def flush(self) -> None:
        pass


class TextLines:
    """One text line per value, as ``WriteToText`` writes them."""

    mime_type = "text/plain"

    def writer(self, handle: BinaryIO) -> RecordWriter:
        return _LineWriter(handle)


@dataclass(frozen=True)
class _Shards:
    prefix: str
    suffix: str
    file_format: FileFormat

    def create(self, path: str) -> BinaryIO:
        ready_for(path)
        return FileSystems.create(
            path,
            mime_type=self.file_format.mime_type,
            compression_type=CompressionTypes.UNCOMPRESSED,
        )


class WriteShardedFiles(beam.PTransform):
    """A bounded PCollection → files ``<prefix>-SSSSS-of-NNNNN<suffix>`` in ``file_format``;
    outputs their names."""

    def __init__(self, prefix: str, file_format: FileFormat, suffix: str = "") -> None:
        super().__init__()
        self.prefix = prefix
        self.file_format = file_format
        self.suffix = suffix

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        if not pcoll.is_bounded:
            raise ValueError(f"{self.label}: an unbounded input never ends its last shard")
        if not pcoll.windowing.is_default():
            # every window's values go to the same files, as Beam's file sinks write them
            pcoll = pcoll | "Global window" >> beam.WindowInto(GlobalWindows())
        shards = _Shards(self.prefix, self.suffix, self.file_format)
        once = pcoll.pipeline | "Once" >> beam.Create([None])
        # a side input to both steps: each reads the one value the run made
        temporary = pvalue.AsSingleton(
            once | "Temporary directory" >> beam.Map(_temporary_directory, self.prefix)
        )
        written = pcoll | "Write" >> beam.ParDo(_WriteBundleFile(shards), temporary)
        return once | "Name shards" >> beam.FlatMap(
            _name_shards, shards, temporary, pvalue.AsList(written)
        )


def _temporary_directory(_: None, prefix: str) -> str:
    """A hidden directory beside the shards, new for each run."""
    directory, slash, name = prefix.rpartition("/")
    return f"{directory}{slash}.{name}-{uuid.uuid4().hex[:12]}.tmp/"


class _WriteBundleFile(beam.DoFn):
    """Values → one file per bundle that has any, in the run's temporary directory; its path is
    output when the bundle ends (only a bundle that completed is seen by the naming step)."""

    def __init__(self, shards: _Shards) -> None:
        self.shards = shards
        self._handle: BinaryIO | None = None

    def start_bundle(self) -> None:
        self._close_abandoned()
        self._writer: RecordWriter | None = None
        self._path = ""

    def process(self, value: Any, temporary: str) -> None:
        if self._writer is None:
            self._path = f"{temporary}{uuid.uuid4().hex[:12]}"
            self._handle = self.shards.create(self._path)
            self._writer = self.shards.file_format.writer(self._handle)
        self._writer.write(value)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._writer is not None and self._handle is not None:
            self._writer.flush()
            self._handle.close()
            self._handle = self._writer = None
            yield GlobalWindows.windowed_value(self._path)

    def teardown(self) -> None:
        self._close_abandoned()

    def _close_abandoned(self) -> None:
        """Close and remove the file of a bundle that failed (the naming step never sees it),
        rather than leave the handle to the garbage collector. The run's directory goes too when
        nothing else is in it: a run stopped by Ctrl-C or a failure leaves no hidden directory
        (one holding other bundles' files stays, for their naming step)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with contextlib.suppress(Exception):
            handle.close()
        with contextlib.suppress(Exception):
            FileSystems.delete([self._path])
        if "://" not in self._path:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self._path))  # only when empty


def _remove(directory: str) -> None:
    """The run's temporary directory, with what failed bundle attempts left in it."""
    if "://" in directory:
        with contextlib.suppress(BeamIOError):
            FileSystems.delete([directory])  # every object under the prefix
    else:
        shutil.rmtree(directory, ignore_errors=True)  # no glob: a "[" in the path is a "["


def _name_shards(_: None, shards: _Shards, temporary: str, written: list[str]) -> list[str]:
    """Give the bundles' files the shard names (one empty file for none), then remove the
    temporary directory. A retry of this step skips the files an earlier attempt renamed."""
    count = max(len(written), 1)
    finals = [f"{shards.prefix}-{i:05d}-of-{count:05d}{shards.suffix}" for i in range(count)]
    if not written:
        with shards.create(finals[0]) as handle:
            shards.file_format.writer(handle).flush()
    try:
        if written:
            FileSystems.rename(sorted(written), finals)
    except BeamIOError:
        # a retry of this step: what an earlier attempt renamed is in place already
        pending = [
            (source, final)
            for source, final in zip(sorted(written), finals, strict=False)
            if FileSystems.exists(source) or not FileSystems.exists(final)
        ]
        if pending:
            FileSystems.rename([source for source, _ in pending], [final for _, final in pending])
    _remove(temporary)
    return finals


__all__ = ["FileFormat", "RecordWriter", "TextLines", "WriteShardedFiles"]
