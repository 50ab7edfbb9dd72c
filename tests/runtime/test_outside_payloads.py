"""A payload from outside the job (an event input's message) is never unpickled into code: the
router dead-letters a pickle naming anything but data; past it, the job's own pickles are read
in full, in whichever process."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from klio_runtime import message as kmessage
from klio_runtime.decorators import handle_klio, timeout
from klio_runtime.outside_payloads import refusal
from klio_runtime.pipeline import KlioJobTransform

from tests.runtime.helpers import make_config


class _Marker:
    """Unpickling it writes a file: what a hostile payload's code would do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), "ran"))


class _JobsOwn:
    """An object a job's own step hands the next one as a pickled payload."""

    def __init__(self, value: int) -> None:
        self.value = value


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def test_a_pickle_naming_anything_but_data_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    hostile = pickle.dumps(_Marker(str(marker)))
    assert refusal(hostile) == (
        "the payload pickles pathlib.Path.write_text: a payload from outside the job may pickle"
        " numpy arrays, file objects and plain data only"
    )
    assert "pickles pathlib.Path" in str(refusal(_npy(np.array([_Marker("x"), None]))))
    assert not marker.exists()
    # what klio-audio's own steps pickle is data, and passes
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    for data in (
        pickle.dumps(array),
        pickle.dumps(array, protocol=2),
        pickle.dumps(io.BytesIO(b"RIFF")),
        pickle.dumps({"rate": 22050, "tags": ("a", "b"), "raw": b"\x00", "set": {1, 2}}),
        _npy(array),
        _npy(np.array([1, "a", None], dtype=object)),
        hostile[:5],  # not a whole pickle: unpickling it fails before anything it names
        b"\x80 not a pickle at all",
        b"plain text",
    ):
        assert refusal(data) is None, data[:40]


def _pickle_own(ctx: Any, data: Any) -> bytes:
    return pickle.dumps(_JobsOwn(len(data.element)))


def _read_own(ctx: Any, data: Any) -> bytes:
    own = pickle.loads(data.payload)  # what klio-audio's handle_binary does
    return f"{own.value}:{type(own).__name__}".encode()


def test_the_router_dead_letters_an_unsafe_payload_and_the_jobs_own_pickles_pass(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran.txt"
    hostile = kmessage.new_message("evil", pickle.dumps(_Marker(str(marker))))
    data_only = kmessage.new_message("data", pickle.dumps(np.zeros(3)))

    def run(pcoll: Any, config: Any) -> Any:
        # the job's own pickle crosses a stage boundary and a step run in a child process
        # (Klio's @timeout), as it would cross processes on a distributed runner
        made = pcoll | "make" >> beam.Map(handle_klio(timeout(seconds=30)(_pickle_own)))
        return made | beam.Reshuffle() | "read" >> beam.Map(handle_klio(_read_own))

    with beam.Pipeline(runner=FnApiRunner()) as p:
        messages = [kmessage.serialize(m) for m in (hostile, data_only)]
        out = p | beam.Create(messages) | KlioJobTransform(make_config(), run)
        assert_that(
            out["output"] | beam.Map(lambda b: kmessage.parse(b).data.payload),
            equal_to([b"4:_JobsOwn"]),
        )
        assert_that(
            out["dead_letter"] | beam.Map(lambda d: (d.reason, d.element)),
            equal_to([("unsafe_payload", "evil")]),
            label="dead",
        )
    assert not marker.exists()
