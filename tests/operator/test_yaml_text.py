"""The operator's YAML writer: whatever it writes, PyYAML reads back as the data it was given."""

from __future__ import annotations

import datetime
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from klio_operator import yaml_text
from klio_operator.models import parse_spec
from klio_operator.planning import ClusterFacts, Owner, plan_job

# Strings YAML could read as something else, or must escape: booleans and nulls of YAML 1.1,
# numbers, dates, indicators, line breaks and characters a YAML reader refuses raw.
TRICKY = st.sampled_from(
    [
        "",
        "yes",
        "No",
        "ON",
        "off",
        "y",
        "NULL",
        "~",
        "true",
        "1",
        "0x1F",
        "1_000",
        "1:20",
        "1e3",
        ".inf",
        ".NaN",
        "2024-01-01",
        "- a",
        "a: b",
        "a:",
        "#x",
        "&a",
        "*a",
        "!x",
        "|",
        ">",
        "@x",
        "%x",
        "'q'",
        '"q"',
        "a #b",
        " lead",
        "trail ",
        "line\nbreak",
        "tab\there",
        "nel\x85",
        "ls\u2028ps\u2029",
        "del\x7f",
        "c1\x9b",
        "bom\ufeff",
        "gs://bucket/key",
        "projects/p/topics/t",
        "<<",
        "=",
        "?",
        "ü",
        "😀",
    ]
)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | TRICKY
)
KEYS = st.text() | TRICKY
DATA = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, DATA, max_size=6))
def test_any_plain_data_reads_back_as_it_was(data: dict[str, Any]) -> None:
    assert yaml.safe_load(yaml_text.dump(data)) == data


@given(st.floats(allow_nan=True))
def test_floats_read_back_as_floats(value: float) -> None:
    loaded = yaml.safe_load(yaml_text.dump({"x": value}))["x"]
    assert isinstance(loaded, float)
    assert loaded == value or (value != value and loaded != loaded)


def test_a_worker_config_reads_and_looks_as_pyyaml_writes_it() -> None:
    spec = parse_spec(
        {
            "image": "registry.example/klio/job:1",
            "eventInputs": [{"type": "file", "location": "gs://bucket/ids.txt"}],
            "dataOutputs": [{"location": "gs://bucket/out"}],
        }
    )
    config = plan_job(Owner("job", "ns"), spec, [], ClusterFacts("p")).worker_config
    written = yaml_text.dump(config)
    assert yaml.safe_load(written) == config
    assert written == yaml.safe_dump(config, sort_keys=False)  # the same text, plain where it can


def test_values_it_does_not_know_go_to_pyyaml() -> None:
    data = {"when": datetime.date(2026, 12, 4), "n": 1}
    assert yaml.safe_load(yaml_text.dump(data)) == data
