"""Avro event inputs and outputs, as Klio reads and writes them, through a whole batch run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
import fastavro
from klio_runtime.decorators import handle_klio
from klio_runtime.io.avro_events import KLIO_AVRO_SCHEMA, element_of_record
from klio_runtime.runner import run_job

from tests.runtime.helpers import make_config


@handle_klio
def _tag(ctx: Any, item: Any) -> bytes:
    return b"seen"


def _run(pcoll: Any, config: Any) -> Any:
    return pcoll | beam.Map(_tag)


def _write_avro(path: Path, schema: dict[str, Any], records: list[dict[str, Any]]) -> None:
    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records)


def _read_avro(pattern: str, directory: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    schemas, records = [], []
    for path in sorted(directory.glob(pattern)):
        with path.open("rb") as handle:
            reader = fastavro.reader(handle)
            schemas.append(reader.writer_schema)
            records.extend(reader)
    return schemas, records


def test_avro_events_in_and_out_in_klios_shape(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    # Klio's own schema (as a Klio job writes it), and any other record: its JSON is the element
    _write_avro(
        events / "a.avro",
        KLIO_AVRO_SCHEMA,
        [{"element": b"track-1"}, {"element": b"track-2"}, {"element": b""}],
    )
    other = {
        "type": "record",
        "name": "Play",
        "fields": [{"name": "track", "type": "string"}, {"name": "count", "type": "int"}],
    }
    _write_avro(events / "b.avro", other, [{"track": "t9", "count": 3}])
    out = tmp_path / "out"
    config = make_config(
        {
            "events": {
                "inputs": [{"type": "avro", "location": str(events), "file_pattern": "*.avro"}],
                "outputs": [{"type": "avro", "location": str(out), "file_path_prefix": "plays"}],
            }
        }
    )

    summary = run_job(config, _run)

    assert summary.received == 3 and summary.output == 3
    assert summary.dead_letter == {"malformed_record": 1}  # the empty element, not an id
    schemas, records = _read_avro("plays-*-of-*", out)
    klio_schema = {"name": "klio.avro.KlioMessage", "fields": KLIO_AVRO_SCHEMA["fields"]}
    assert schemas and all({k: s[k] for k in ("name", "fields")} == klio_schema for s in schemas)
    assert sorted(r["element"] for r in records) == sorted(
        [b"track-1", b"track-2", b'{"track": "t9", "count": 3}']  # the record's field order
    )
    letters = list((out / "dead-letter").glob("plays-*.jsonl"))
    assert letters and "malformed_record" in letters[0].read_text()


def test_a_record_without_element_is_its_json() -> None:
    assert element_of_record({"element": "text-id"}) == b"text-id"
    # in the record's own field order, as Klio's json.dumps(record)
    assert element_of_record({"b": b"\xff", "a": 1}) == b'{"b": "\\\\xff", "a": 1}'
