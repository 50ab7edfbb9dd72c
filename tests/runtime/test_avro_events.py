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
    assert sorted(p.name for p in out.iterdir()) == ["dead-letter", "plays-00000-of-00001"]


def _write_events(out: Path, elements: list[str], **options: Any) -> list[str]:
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from klio_runtime.config import AvroEventOutput
    from klio_runtime.io.avro_events import WriteEventAvro
    from klio_runtime.message import new_message, serialize

    conf = AvroEventOutput(location=str(out), file_path_prefix="ev", **options)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        messages = p | beam.Create([serialize(new_message(e)) for e in elements])
        _ = messages | WriteEventAvro(conf)
    return sorted(path.name for path in out.iterdir())


def test_avro_event_files_as_write_to_avro_names_and_fills_them(tmp_path: Path) -> None:
    assert _write_events(tmp_path / "a", ["t1", "t2"], file_name_suffix=".avro") == [
        "ev-00000-of-00001.avro"
    ]
    with (tmp_path / "a" / "ev-00000-of-00001.avro").open("rb") as handle:
        reader = fastavro.reader(handle)
        assert reader.codec == "deflate"
        assert sorted(record["element"] for record in reader) == [b"t1", b"t2"]
    # nothing to write: one file with the schema and no record
    assert _write_events(tmp_path / "none", []) == ["ev-00000-of-00001"]
    assert _read_avro("ev-*", tmp_path / "none")[1] == []
    # a shard count of the config's own: WriteToAvro writes it
    names = _write_events(tmp_path / "two", ["t1", "t2", "t3"], num_shards=2, codec="null")
    assert names == ["ev-00000-of-00002", "ev-00001-of-00002"]
    assert sorted(r["element"] for r in _read_avro("ev-*", tmp_path / "two")[1]) == [
        b"t1",
        b"t2",
        b"t3",
    ]


def test_a_record_without_element_is_its_json() -> None:
    assert element_of_record({"element": "text-id"}) == b"text-id"
    # in the record's own field order, as Klio's json.dumps(record)
    assert element_of_record({"b": b"\xff", "a": 1}) == b'{"b": "\\\\xff", "a": 1}'
