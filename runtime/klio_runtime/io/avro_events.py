"""Avro event files, as Klio reads and writes them.

Reading: each record is an event for anyone; its ``element`` field (bytes or text) is the element
id, and a record without one becomes its own JSON as the element. Writing: one record
``{"element": <bytes>}`` per output message, in Klio's schema (record ``KlioMessage`` of namespace
``klio.avro``), so Klio's jobs and ours read each other's files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam import pvalue
from fastavro import parse_schema
from fastavro.write import Writer

from klio_runtime import message as kmessage
from klio_runtime.config import AvroEventInput, AvroEventOutput
from klio_runtime.io.events import DEAD_LETTER_TAG, DeadLetter
from klio_runtime.io.gcs import ready_for
from klio_runtime.io.shards import WriteShardedFiles

AVRO_MAGIC = b"Obj\x01"  # how every Avro container file starts

KLIO_AVRO_SCHEMA: dict[str, Any] = {
    "namespace": "klio.avro",
    "type": "record",
    "name": "KlioMessage",
    "fields": [{"name": "element", "type": "bytes"}],
}


def _json_value(value: Any) -> Any:
    """What JSON cannot hold as it is: bytes as text, anything else as its ``str``."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def element_of_record(record: Mapping[str, Any]) -> bytes:
    """A record's element id: its ``element`` field, else the record as JSON (Klio's json.dumps)."""
    element = record.get("element") if isinstance(record, Mapping) else None
    if isinstance(element, bytes | bytearray):
        return bytes(element)
    if isinstance(element, str):
        return element.encode("utf-8")
    return json.dumps(record, default=_json_value).encode("utf-8")  # record order, as Klio


def _record_message(record: Mapping[str, Any], where: str) -> list[object]:
    element = element_of_record(record)
    try:
        msg = kmessage.new_message(element)
    except kmessage.InvalidElementId as err:
        letter = DeadLetter("malformed_record", where, str(err), repr(record)[:80])
        return [pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)]
    return [kmessage.carry(msg)]  # made here: the router takes it without parsing


def _element_record(data: bytes) -> dict[str, bytes]:
    return {"element": bytes(kmessage.own_message(data).data.element)}


class ReadEventAvro(beam.PTransform):
    """Avro files → serialized KlioMessages (see the module docstring); tag ``dead_letter`` for
    a record whose element cannot be an id (an empty one)."""

    def __init__(self, conf: AvroEventInput) -> None:
        super().__init__()
        self.conf = conf

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        pattern = self.conf.pattern
        ready_for(pattern)  # Beam's reader looks at the files here
        return (
            pbegin
            | "Read" >> beam.io.ReadFromAvro(
                pattern, min_bundle_size=self.conf.min_bundle_size, validate=self.conf.validate_
            )
            | "Message"
            >> beam.FlatMap(_record_message, pattern).with_outputs(DEAD_LETTER_TAG, main="events")
        )


@dataclass(frozen=True)
class AvroRecords:
    """Avro records in one container file per shard (what ``WriteToAvro`` writes)."""

    schema: Any
    codec: str
    mime_type: str = "application/x-avro"

    def writer(self, handle: BinaryIO) -> Writer:
        return Writer(handle, self.schema, self.codec)


class WriteEventAvro(beam.PTransform):
    """Serialized KlioMessages → Avro records ``{"element": bytes}`` under the output's prefix.

    Beam's shard names, as ``WriteToAvro`` gives them; it writes only for a ``num_shards`` or a
    ``shard_name_template`` of the config's own (otherwise
    :class:`klio_runtime.io.shards.WriteShardedFiles`, which costs less)."""

    def __init__(self, conf: AvroEventOutput) -> None:
        super().__init__()
        self.conf = conf

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        conf = self.conf
        ready_for(conf.prefix)
        schema = parse_schema(KLIO_AVRO_SCHEMA)
        records = pcoll | "Record" >> beam.Map(_element_record)
        if conf.num_shards or conf.shard_name_template is not None or not pcoll.is_bounded:
            return records | "Write" >> beam.io.WriteToAvro(
                conf.prefix,
                schema=schema,
                codec=conf.codec,
                file_name_suffix=conf.file_name_suffix,
                num_shards=conf.num_shards,
                shard_name_template=conf.shard_name_template,
                mime_type=conf.mime_type,
            )
        file_format = AvroRecords(schema, conf.codec, conf.mime_type)
        return records | "Write" >> WriteShardedFiles(
            conf.prefix, file_format, suffix=conf.file_name_suffix
        )
