"""Klio's event IO transforms by their Klio names, for jobs that read or write events themselves
(``skip_klio_read`` / ``skip_klio_write``): each is the transform a configured event input or
output of that type uses, counted under Klio's ``kmsg-read`` / ``kmsg-write`` (transform: its
class name).

Reads give serialized KlioMessages; writes take them. Klio's BigQuery transforms are refused with
a clear error, as running a ``bq`` event entry is.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from klio_runtime.config import AvroEventInput, AvroEventOutput, KlioConfig, joined_path
from klio_runtime.io.avro_events import ReadEventAvro, WriteEventAvro
from klio_runtime.io.events import (
    DEAD_LETTER_TAG,
    DecodeEventLines,
    ReadEventFile,
    WriteEventFile,
)
from klio_runtime.io.gcs import ready_for
from klio_runtime.io.pubsub_events import ReadEventPubSub, WriteEventPubSub


def _events_counting_dead_letters(read: Any) -> Any:
    """A reader's events; its dead letters (lines or records that are not events) are counted
    by reason, with where they came from, under the running job, as a configured input's are:
    not lost silently."""
    from klio_runtime.context import bound_context
    from klio_runtime.pipeline import CountDeadLetters

    _ = read[DEAD_LETTER_TAG] | "Count dead letters" >> beam.ParDo(
        CountDeadLetters(bound_context().config)
    )
    return read.events


def _counted(pcoll: Any, direction: str, transform: beam.PTransform) -> Any:
    """Klio's ``kmsg-read`` / ``kmsg-write`` count of an IO transform, under its class name."""
    from klio_runtime.context import bound_context
    from klio_runtime.transforms.helpers import KlioMessageCounter

    name = type(transform).__name__
    counter = KlioMessageCounter(direction, name, bound_context().config)
    return pcoll | f"{direction.title()} Counter" >> counter


class BaseKlioIOException(Exception):
    """Klio's base exception of its IO transforms."""


class KlioMissingConfiguration(BaseKlioIOException, ValueError):
    """An IO transform given neither a location nor a file name or pattern (Klio's error)."""


def _given(path: str, what: str) -> str:
    if not path:
        raise KlioMissingConfiguration(
            f"{what}: give location, or the file name or pattern, or both"
        )
    return path


class KlioReadFromText(beam.PTransform):
    """Event files: one element id (or base64 KlioMessage) per line → KlioMessages.

    As Klio's, it takes Beam's ``ReadFromText`` arguments (``skip_header_lines``,
    ``compression_type``, …); with any given, Beam's reader reads the lines. ``location``
    (keyword only, this runtime's) is joined before the pattern."""

    def __init__(
        self,
        file_pattern: str | None = None,
        *beam_args: Any,
        location: str | None = None,
        **beam_kwargs: Any,
    ) -> None:
        super().__init__()
        self.pattern = _given(joined_path(location, file_pattern), "KlioReadFromText")
        self.beam_args = beam_args
        self.beam_kwargs = beam_kwargs

    def expand(self, pbegin: Any) -> Any:
        if self.beam_args or self.beam_kwargs:
            ready_for(self.pattern)  # Beam's reader looks at the files here
            lines = pbegin | "ReadFromText" >> beam.io.ReadFromText(
                self.pattern, *self.beam_args, **self.beam_kwargs
            )
            read = lines | "Decode" >> DecodeEventLines()
        else:
            read = pbegin | "Read" >> ReadEventFile(self.pattern)
        return _counted(_events_counting_dead_letters(read), "read", self)


class KlioWriteToText(beam.PTransform):
    """KlioMessages → one element id per line under the prefix (Beam's shard naming).

    As Klio's, it takes Beam's ``WriteToText`` arguments (``file_name_suffix``, ``num_shards``,
    ``shard_name_template``, ``header``, …). ``location`` (keyword only, this runtime's) is joined
    before the prefix."""

    def __init__(
        self,
        file_path_prefix: str | None = None,
        *beam_args: Any,
        location: str | None = None,
        **beam_kwargs: Any,
    ) -> None:
        super().__init__()
        self.prefix = _given(joined_path(location, file_path_prefix), "KlioWriteToText")
        self.beam_args = beam_args
        self.beam_kwargs = beam_kwargs

    def expand(self, pcoll: Any) -> Any:
        writer = WriteEventFile(self.prefix, *self.beam_args, **self.beam_kwargs)
        return _counted(pcoll, "write", self) | "Write" >> writer


class KlioReadFromAvro(beam.PTransform):
    """Avro records (their ``element``, or the record as JSON) → KlioMessages."""

    def __init__(self, file_pattern: str | None = None, location: str | None = None, **kwargs: Any):
        super().__init__()
        _given(joined_path(location, file_pattern), "KlioReadFromAvro")
        self.conf = AvroEventInput(file_pattern=file_pattern, location=location, **kwargs)

    def expand(self, pbegin: Any) -> Any:
        return _counted(
            _events_counting_dead_letters(pbegin | "Read" >> ReadEventAvro(self.conf)),
            "read",
            self,
        )


class KlioWriteToAvro(beam.PTransform):
    """KlioMessages → Avro records ``{"element": bytes}`` in Klio's schema."""

    def __init__(
        self, file_path_prefix: str | None = None, location: str | None = None, **kwargs: Any
    ):
        super().__init__()
        kwargs.pop("schema", None)  # Klio's records have one schema: its own
        _given(joined_path(location, file_path_prefix), "KlioWriteToAvro")
        self.conf = AvroEventOutput(file_path_prefix=file_path_prefix, location=location, **kwargs)

    def expand(self, pcoll: Any) -> Any:
        return _counted(pcoll, "write", self) | "Write" >> WriteEventAvro(self.conf)


class KlioReadFromPubSub(beam.PTransform):
    """A subscription (or a topic) → the KlioMessages published to it (Beam's Pub/Sub source;
    Beam's other arguments, ``id_label``, ``with_attributes``, ``timestamp_attribute``, passed
    on as Klio passes them)."""

    def __init__(
        self, topic: str | None = None, subscription: str | None = None, **beam_options: Any
    ):
        super().__init__()
        self.read = (
            ReadEventPubSub(subscription=subscription, **beam_options)
            if subscription
            else ReadEventPubSub(topic=topic, **beam_options)
        )

    def expand(self, pbegin: Any) -> Any:
        return _counted(pbegin | "Read" >> self.read, "read", self)


class KlioWriteToPubSub(beam.PTransform):
    """KlioMessages → published to the topic (Beam's Pub/Sub sink; Beam's other arguments,
    ``with_attributes``, ``id_label``, ``timestamp_attribute``, passed on as Klio passes them)."""

    def __init__(self, topic: str, **beam_options: Any):
        super().__init__()
        self.topic = topic
        self.beam_options = beam_options

    def expand(self, pcoll: Any) -> Any:
        return _counted(pcoll, "write", self) | "Write" >> WriteEventPubSub(
            self.topic, **self.beam_options
        )


class _BigQueryRefused(beam.PTransform):
    instead = ""
    """What to use instead, said in the error."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise NotImplementedError(
            f"{type(self).__name__}: Klio's BigQuery event IO is not supported (there is no"
            f" BigQuery to test it against): {self.instead}"
        )


class KlioReadFromBigQuery(_BigQueryRefused):
    """Not supported: raises NotImplementedError saying what to use instead."""

    instead = (
        "read the rows with Beam's ReadFromBigQuery and make messages with"
        " klio_runtime.io.events.DecodeEventLines"
    )


class KlioWriteToBigQuery(_BigQueryRefused):
    """Not supported: raises NotImplementedError saying what to use instead."""

    instead = "make rows of the messages and write them with Beam's WriteToBigQuery"


READERS: dict[str, type[beam.PTransform]] = {
    "file": KlioReadFromText,
    "avro": KlioReadFromAvro,
    "pubsub": KlioReadFromPubSub,
}
WRITERS: dict[str, type[beam.PTransform]] = {
    "file": KlioWriteToText,
    "avro": KlioWriteToAvro,
    "pubsub": KlioWriteToPubSub,
}


def reader_name(kind: str | None) -> str | None:
    """Klio's name of the transform reading an event input of this type (its ``kmsg-read``)."""
    reader = READERS.get(kind or "")
    return reader.__name__ if reader is not None else None


def writer_names(config: KlioConfig) -> tuple[str, ...]:
    """Klio's names of the transforms writing the job's event outputs (their ``kmsg-write``)."""
    return tuple(
        WRITERS[out.type].__name__
        for out in config.job_config.events.outputs
        if not out.skip_klio_write and out.type in WRITERS
    )
