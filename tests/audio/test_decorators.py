"""handle_binary on its own: klio-audio's load/dump conventions, generators, tags, bad options."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pytest
from apache_beam import pvalue
from klio_runtime.audio.decorators import handle_binary
from klio_runtime.audio.errors import AudioError
from klio_runtime.proto.klio_pb2 import KlioMessage


def _data(payload: bytes, element: bytes = b"el") -> KlioMessage.Data:
    data = KlioMessage.Data()
    data.element, data.payload = element, payload
    return data


def _npy(a: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, a)
    return out.getvalue()


def test_pickle_by_default_without_parentheses() -> None:
    @handle_binary
    def double(ctx: Any, item: Any) -> Any:
        assert item.element == b"el"
        return item.payload * 2

    assert pickle.loads(double(None, _data(pickle.dumps([1, 2])))) == [1, 2, 1, 2]


def test_numpy_in_and_out_and_tagged_outputs_of_a_generator_method() -> None:
    class Step:
        @handle_binary(load_with_numpy=True, save_with_numpy=True)
        def process(self, item: Any) -> Any:
            yield item.payload + 1
            yield pvalue.TaggedOutput("half", item.payload / 2)

    out = list(Step().process(_data(_npy(np.arange(3.0)))))
    np.testing.assert_array_equal(np.load(io.BytesIO(out[0])), [1.0, 2.0, 3.0])
    assert isinstance(out[1], pvalue.TaggedOutput) and out[1].tag == "half"
    np.testing.assert_array_equal(np.load(io.BytesIO(out[1].value)), [0.0, 0.5, 1.0])


def test_skip_load_and_skip_dump_pass_things_through() -> None:
    @handle_binary(skip_load=True, skip_dump=True)
    def echo(ctx: Any, item: Any) -> Any:
        return item

    data = _data(b"raw bytes")
    assert echo(None, data) is data


def test_a_payload_that_is_not_what_it_claims_fails_naming_the_element() -> None:
    @handle_binary(load_with_numpy=True)
    def use(ctx: Any, item: Any) -> Any:
        return item.payload

    with pytest.raises(AudioError, match="'track-7'"):
        use(None, _data(b"\x93NUMPY garbage", element=b"track-7"))


def test_an_option_klio_audio_does_not_know_is_ignored_with_a_warning() -> None:
    # klio-audio reads only its four options: a job with a stray one imports and runs
    with pytest.warns(UserWarning, match=r"handle_binary: option\(s\) \['skip_lod'\] ignored"):

        @handle_binary(skip_lod=True, save_with_numpy=True)
        def same(ctx: Any, item: Any) -> Any:
            return item.payload

    assert np.load(io.BytesIO(same(None, _data(pickle.dumps([1, 2]))))).tolist() == [1, 2]
