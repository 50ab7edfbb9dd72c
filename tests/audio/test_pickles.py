"""A payload from outside the job (an event input's message) is never unpickled into code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from klio_runtime import message as kmessage
from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError
from klio_runtime.audio.io import GcsLoadBinary
from klio_runtime.audio.item import decode_payload, encode_payload
from klio_runtime.audio.transforms import LoadAudio

from tests.audio.test_transforms import run


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


def _hostile(tmp_path: Path) -> tuple[bytes, Path]:
    marker = tmp_path / "ran.txt"
    return pickle.dumps(_Marker(str(marker))), marker


def test_a_pickle_from_outside_is_read_as_data_alone(tmp_path: Path) -> None:
    payload, marker = _hostile(tmp_path)
    with pytest.raises(AudioError, match=r"pickles pathlib\.Path") as caught:
        decode_payload(payload, element="evil")
    assert caught.value.reason == errors.BAD_PAYLOAD and caught.value.element == "evil"
    assert not marker.exists()
    # what klio-audio's own steps pickle is data, and is read wherever it was made
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(decode_payload(pickle.dumps(array), element="a"), array)
    downloaded = decode_payload(pickle.dumps(io.BytesIO(b"RIFF")), element="f")
    assert isinstance(downloaded, io.BytesIO) and downloaded.read() == b"RIFF"
    plain = {"rate": 22050, "tags": ("a", "b"), "raw": b"\x00\x01", "set": {1, 2}}
    assert decode_payload(pickle.dumps(plain), element="d") == plain
    # an array of Python objects carries a pickle inside its .npy
    objects = io.BytesIO()
    np.save(objects, np.array([_Marker(str(marker))], dtype=object), allow_pickle=True)
    with pytest.raises(AudioError) as caught:
        decode_payload(objects.getvalue(), element="evil-npy")
    assert caught.value.reason == errors.BAD_PAYLOAD and not marker.exists()


def test_what_a_step_of_the_job_pickled_is_read_in_full() -> None:
    own = decode_payload(encode_payload(_JobsOwn(7), "pickle"), element="own")
    assert isinstance(own, _JobsOwn) and own.value == 7
    array = np.array([_JobsOwn(1), None], dtype=object)
    loaded = decode_payload(encode_payload(array, "numpy"), element="own-npy")
    assert loaded[0].value == 1 and loaded[1] is None


def test_audio_steps_never_run_an_incoming_payloads_code(
    audio_dir: Path, tmp_path: Path
) -> None:
    payload, marker = _hostile(tmp_path)
    message = kmessage.serialize(kmessage.new_message("tone", payload))
    # GcsLoadBinary reads the element's file, not the payload it receives (klio-audio's
    # skip_load); LoadAudio given such a payload drops the element, naming it.
    outputs, drops, _ = run(
        lambda p: p | GcsLoadBinary(location=str(audio_dir), file_suffix=".wav") | LoadAudio(),
        [message],
    )
    assert len(outputs) == 1 and drops == {}
    outputs, drops, ids = run(lambda p: p | LoadAudio(), [message])
    assert outputs == [] and drops == {errors.BAD_PAYLOAD: 1}
    assert ids[errors.BAD_PAYLOAD] == {"tone"}
    assert not marker.exists()
