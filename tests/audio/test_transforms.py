"""The audio transforms in Beam pipelines (FnApiRunner): results, drops by reason, payloads."""

from __future__ import annotations

import io
import logging
import pickle
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apache_beam as beam
import librosa
import numpy as np
import pytest
import soundfile as sf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from klio_runtime import context as kcontext
from klio_runtime import message as kmessage
from klio_runtime.audio import errors, item
from klio_runtime.audio.decorators import handle_binary
from klio_runtime.audio.io import GcsLoadBinary, GcsUploadPlot, UploadData
from klio_runtime.audio.item import AudioItem, as_item, decode_payload
from klio_runtime.audio.plots import figure_bytes
from klio_runtime.audio.steps import DROP_TAG
from klio_runtime.audio.transforms import (
    GetMelSpec,
    GetMFCC,
    GetSpec,
    GetSTFT,
    LoadAudio,
    MelSpecToPlot,
    MFCCToPlot,
    SpecToPlot,
    WaveformToPlot,
)
from klio_runtime.config import parse_config
from klio_runtime.decorators import handle_klio
from klio_runtime.metrics import batch_until_bundle_end, bundle_ended
from klio_runtime.pipeline import KlioJobTransform
from klio_runtime.proto.klio_pb2 import KlioMessage
from klio_runtime.transforms.handoff import hand_bytes_to_other_consumers
from PIL import Image

from tests.audio import signals

_COLLECTED: dict[str, list[Any]] = defaultdict(list)


def _collect(value: Any, key: str) -> None:
    _COLLECTED[key].append(value)


class _Collect(beam.DoFn):
    """Keeps what reaches it, taking AudioItems as a Klio job's output preparation does."""

    reads_klio_objects = True

    def __init__(self, key: str) -> None:
        self.key = key

    def process(self, value: Any) -> None:
        _collect(value, self.key)


class _AsInAJob(beam.DoFn):
    """Marks each bundle as a Klio job's router does, so the run-summary counters (drops by
    reason and id) reach Beam as in ``klio job run``; a bare pipeline records only Klio's own."""

    def start_bundle(self) -> None:
        batch_until_bundle_end()

    def process(self, element: Any) -> Any:
        yield element

    def finish_bundle(self) -> None:
        bundle_ended()


def run(build: Callable[[beam.PCollection], beam.PCollection], inputs: list[Any]) -> tuple[
    list[Any], dict[str, int], dict[str, set[str]]
]:
    """Run ``inputs | build`` on FnApiRunner as in a Klio job (its steps hand each other
    AudioItems); return outputs, drop counts and dropped ids."""
    key = uuid.uuid4().hex
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = build(pipeline | beam.Create(inputs, reshuffle=False) | beam.ParDo(_AsInAJob()))
    _ = out | beam.ParDo(_Collect(key))
    hand_bytes_to_other_consumers(pipeline)  # what KlioJobTransform does once run is applied
    result = pipeline.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter())
    drops = {
        r.key.metric.name.split("reason=")[1].rstrip("]"): r.committed
        for r in metrics["counters"] if r.key.metric.name.startswith("klio_messages_dropped[")
    }
    ids = {
        r.key.metric.name.split("reason=")[1].rstrip("]"): set(r.committed)
        for r in metrics["string_sets"] if r.key.metric.name.startswith("dropped_ids[")
    }
    return _COLLECTED.pop(key, []), drops, ids


def msg(element: str, payload: bytes = b"") -> bytes:
    return kmessage.serialize(kmessage.new_message(element, payload))


def test_load_plot_upload_writes_pngs_and_drops_each_bad_file_by_reason(
    audio_dir: Path, bad_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="klio")
    signals.need("ffmpeg")
    for f in list(audio_dir.iterdir()) + list(bad_dir.iterdir()):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f.name).write_bytes(f.read_bytes())
    good = sorted(f.name for f in audio_dir.iterdir())
    bad = sorted(f.name for f in bad_dir.iterdir())
    elements = [*good, *bad, "missing.wav", "../escape.wav"]
    out_dir = tmp_path / "out"

    outputs, drops, ids = run(
        lambda p: p
        | GcsLoadBinary(location=str(tmp_path / "in"))
        | LoadAudio()
        | GetMelSpec()
        | MelSpecToPlot()
        | GcsUploadPlot(location=str(out_dir), file_suffix="png"),
        [msg(e) for e in elements],
    )

    written = sorted(kmessage.parse(o).data.payload.decode() for o in outputs)
    assert written == [str(out_dir / f"{name}.png") for name in good]
    for name in good:
        png = Image.open(out_dir / f"{name}.png")
        assert png.size == (640, 480)  # matplotlib's default figure, as klio-audio's
    assert drops == {"truncated": 4, "not_audio": 1, "empty": 1, "unsupported_codec": 1,
                     "io_error": 1, "invalid_element": 1}
    assert ids["truncated"] == {n for n in bad if n.startswith("truncated")}
    assert ids["io_error"] == {"missing.wav"}
    assert ids["empty"] == {"empty.wav"} and ids["unsupported_codec"] == {"codec.wav"}
    # klio-audio's DEBUG lines, word for word
    name = good[0]
    for line in (
        f"Downloading {name} from {tmp_path / 'in'}",
        f"Downloaded {name}",
        f"Loading {name} into memory as a numpy array.",
        f"Generating a Mel spectrogram for {name}",
        f"Generating plot 'Mel-frequency Spectrogram of {name}'",
        f"Saving plot as png for {name}",
        f"Saved plot to {out_dir / name}.png",
    ):
        assert line in caplog.messages, line


def test_features_through_transforms_equal_librosa(audio_dir: Path) -> None:
    path = audio_dir / "tone.flac"
    outputs, drops, _ = run(
        lambda p: p | LoadAudio(sr=None) | GetMFCC(n_mfcc=20), [msg("tone", str(path).encode())]
    )
    assert drops == {}
    (got,) = outputs
    assert isinstance(got, AudioItem)
    y, sr = sf.read(path, dtype="float32")
    # librosa's own defaults (sr 22050) unless given, as klio-audio passes its arguments on
    expected = librosa.feature.mfcc(y=y.mean(axis=1), n_mfcc=20)
    np.testing.assert_allclose(got.payload, expected, rtol=1e-4, atol=1e-3)
    outputs, _, _ = run(
        lambda p: p | LoadAudio(sr=None) | GetMelSpec(sr=44100), [msg("tone", str(path).encode())]
    )
    expected = librosa.feature.melspectrogram(y=y.mean(axis=1), sr=sr)
    np.testing.assert_allclose(outputs[0].payload, expected, rtol=1e-4, atol=1e-3)
    outputs, _, _ = run(
        lambda p: p | LoadAudio(sr=None) | GetMelSpec(), [msg("tone", str(path).encode())]
    )
    expected = librosa.feature.melspectrogram(y=y.mean(axis=1))  # klio-audio's numbers
    np.testing.assert_allclose(outputs[0].payload, expected, rtol=1e-4, atol=1e-3)

    outputs, _, _ = run(
        lambda p: p | LoadAudio(sr=22050, mono=False) | GetSTFT(n_fft=4096) | GetSpec(),
        [msg("tone", str(path).encode())],
    )
    spec = outputs[0].payload  # (channels, bins, frames): left 440 Hz, right 880 Hz
    assert spec.shape[:2] == (2, 2049)
    assert np.argmax(spec[0].mean(axis=1)) == round(440 * 4096 / 22050)
    assert np.argmax(spec[1].mean(axis=1)) == round(880 * 4096 / 22050)


def test_get_spec_takes_the_waveform_as_klios_docstring_applies_it(audio_dir: Path) -> None:
    # klio-audio's GetSpec example: LoadAudio() | GetSpec(), no STFT between
    path = audio_dir / "tone.wav"
    source = msg("tone", str(path).encode())
    outputs, drops, _ = run(lambda p: p | LoadAudio() | GetSpec(), [source])
    assert drops == {}
    (loaded,), _, _ = run(lambda p: p | LoadAudio(), [source])
    expected = librosa.amplitude_to_db(np.abs(loaded.payload), ref=np.max)
    np.testing.assert_allclose(outputs[0].payload, expected, rtol=1e-5, atol=1e-4)


def test_every_plot_transform_makes_a_figure(audio_dir: Path) -> None:
    source = msg("tone", str(audio_dir / "tone.wav").encode())

    def plots(p: beam.PCollection) -> beam.PCollection:
        audio = p | LoadAudio()
        return (
            audio | "w" >> WaveformToPlot(),
            audio | GetSTFT() | SpecToPlot(y_axis="log"),
            audio | "mel" >> GetMelSpec() | MelSpecToPlot(),
            audio | "mel2" >> GetMelSpec() | GetMFCC() | MFCCToPlot(title="{element} mfcc"),
        ) | beam.Flatten()

    outputs, drops, _ = run(plots, [source])
    assert drops == {} and len(outputs) == 4
    # klio-audio's default titles
    assert sorted(out.payload.get_suptitle() for out in outputs) == [
        "Mel-frequency Spectrogram of tone",
        "Spectrogram of tone",
        "Waveplot of tone",
        "tone mfcc",
    ]
    for out in outputs:
        # the Figure, as Klio's plot steps hand it on; pickled (handle_binary's default) in the
        # serialized message a user's own step gets
        assert pickle.loads(kmessage.parse(bytes(out)).data.payload).axes
        image = Image.open(io.BytesIO(figure_bytes(out.payload)))
        assert image.size == (640, 480)
        assert len(np.unique(np.asarray(image.convert("L")))) > 20


def test_a_plots_size_follows_the_jobs_matplotlib_settings(audio_dir: Path) -> None:
    # klio-audio draws with plt.figure(): a job sets the size with matplotlib's rcParams
    import matplotlib

    source = msg("tone", str(audio_dir / "tone.wav").encode())
    with matplotlib.rc_context({"figure.figsize": (4.0, 2.0), "figure.dpi": 50}):
        outputs, drops, _ = run(lambda p: p | LoadAudio() | WaveformToPlot(), [source])
    assert drops == {}
    assert Image.open(io.BytesIO(figure_bytes(outputs[0].payload))).size == (200, 100)


@handle_klio
@handle_binary(skip_dump=True)
def _save_plot(ctx: Any, item: Any) -> Any:
    """As klio-audio's handle_binary docstring's save_plt_as_png: a user's step after a plot."""
    output = f"{ctx.config.job_config.model_extra['plots']}/{item.element.decode()}.png"
    item.payload.savefig(output, format="png")
    return output


@handle_klio
@handle_binary(skip_dump=True)
def _save_plt_as_png(ctx: Any, item: Any) -> Any:
    """klio-audio's handle_binary docstring, as written: pyplot's current figure is the plot."""
    import matplotlib.pyplot as plt

    output = f"{ctx.config.job_config.model_extra['plots']}/{item.element.decode()}-plt.png"
    plt.savefig(output, format="png", transparent=True, pad_inches=0)
    plt.close(item.payload)
    return output


def test_klio_audios_save_plt_as_png_example_saves_the_plot(
    audio_dir: Path, tmp_path: Path
) -> None:
    source = msg("tone", str(audio_dir / "tone.wav").encode())
    config = parse_config({"job_name": "plt-savefig", "job_config": {"plots": str(tmp_path)}})
    kcontext.bind_context(kcontext.KlioContext(config))
    # the Figure handed on as it is, or pickled in the message (a step of the job's between)
    for last in (beam.Map(_save_plt_as_png), beam.Map(lambda b: b) | beam.Map(_save_plt_as_png)):
        saved, drops, _ = run(
            lambda p, last=last: p | LoadAudio() | GetMelSpec() | MelSpecToPlot() | last,
            [source],
        )
        assert drops == {} and len(saved) == 1
        image = Image.open(tmp_path / "tone-plt.png")
        assert len(np.unique(np.asarray(image.convert("RGBA")).reshape(-1, 4), axis=0)) > 20


def _unpickle_and_savefig(data: bytes, where: str) -> bytes:
    """A job's own undecorated step, as Klio users write one: the payload is the pickled plot,
    and unpickling it makes it pyplot's current figure."""
    import matplotlib.pyplot as plt

    message = KlioMessage.FromString(data)
    figure = pickle.loads(message.data.payload)
    plt.savefig(f"{where}/{message.data.element.decode()}-own.png")
    plt.close(figure)
    return data


def test_a_pickled_plot_becomes_pyplots_current_figure_when_unpickled(
    audio_dir: Path, tmp_path: Path
) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()  # what other tests' own unpickling left
    saved, drops, _ = run(
        lambda p: p | LoadAudio() | GetMelSpec() | MelSpecToPlot()
        | beam.Map(_unpickle_and_savefig, str(tmp_path)),
        [msg("tone", str(audio_dir / "tone.wav").encode())],
    )
    assert drops == {} and len(saved) == 1
    image = Image.open(tmp_path / "tone-own.png")
    assert image.size == (640, 480)  # the plot, not an empty new figure
    assert len(np.unique(np.asarray(image.convert("RGBA")).reshape(-1, 4), axis=0)) > 20
    assert plt.get_fignums() == before  # the step closed what it unpickled
    # handed to the upload as bytes (a step of the job's own between): rendered, then let go
    out = tmp_path / "uploaded"
    _, drops, _ = run(
        lambda p: p | LoadAudio() | GetMelSpec() | MelSpecToPlot() | beam.Map(lambda b: b)
        | GcsUploadPlot(location=str(out), file_suffix=".png"),
        [msg("tone", str(audio_dir / "tone.wav").encode())],
    )
    assert drops == {} and Image.open(out / "tone.png").size == (640, 480)
    assert plt.get_fignums() == before


def test_a_users_step_after_a_plot_gets_the_figure_and_uploads_honour_format_and_options(
    audio_dir: Path, tmp_path: Path
) -> None:
    source = msg("tone", str(audio_dir / "tone.wav").encode())
    config = parse_config(
        {"job_name": "plots-by-hand", "job_config": {"plots": str(tmp_path)}}
    )
    kcontext.bind_context(kcontext.KlioContext(config))
    saved, drops, _ = run(
        lambda p: p | LoadAudio() | GetMelSpec() | MelSpecToPlot() | beam.Map(_save_plot),
        [source],
    )
    assert drops == {} and len(saved) == 1
    assert (tmp_path / "tone.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "plots"
    for suffix in (".svg", ".png"):  # the output's format, and savefig's options (dpi)
        _, drops, _ = run(
            lambda p, suffix=suffix: p | LoadAudio() | GetMelSpec() | MelSpecToPlot()
            | GcsUploadPlot(location=str(out), file_suffix=suffix, dpi=30),
            [source],
        )
        assert drops == {}
    assert (out / "tone.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert Image.open(out / "tone.png").size == (192, 144)  # 6.4 x 4.8 inches at 30 dpi


def test_arrays_are_not_reencoded_between_steps(
    audio_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_encode, real_reduce = item.encode_payload, AudioItem.__reduce__
    monkeypatch.setattr(
        item, "encode_payload", lambda *a: calls.append("encode") or real_encode(*a)
    )
    monkeypatch.setattr(
        AudioItem, "__reduce__", lambda self: calls.append("pickle") or real_reduce(self)
    )
    outputs, _, _ = run(
        lambda p: p | LoadAudio() | GetMelSpec() | GetMFCC(),
        [msg("tone", str(audio_dir / "tone.mp3").encode())],
    )
    assert len(outputs) == 1 and calls == []


def _key_by_element(data: bytes) -> tuple[bytes, bytes]:
    """A job's own undecorated step that parses the message itself, as Klio's docs'
    ``create_key_from_element`` does (for a CoGroupByKey of two features of one file)."""
    msg = KlioMessage()
    msg.ParseFromString(data)
    return msg.data.element, data


def _collect_parsed(data: bytes, key: str) -> None:
    _collect(KlioMessage.FromString(data), key)  # a TypeError for anything but bytes


def test_in_a_plain_beam_pipeline_audio_steps_emit_klio_message_bytes(
    audio_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job's own Beam test (klio job test) builds no KlioJobTransform: Klio's steps emit
    # serialized KlioMessages, and a step that parses them works as it does with Klio's.
    from klio_runtime.audio import features, load

    warmed: list[str] = []
    monkeypatch.setattr(load, "warm_up", lambda **_: warmed.append("load"))
    monkeypatch.setattr(features, "warm_up", lambda: warmed.append("features"))
    key = uuid.uuid4().hex
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = (
        pipeline
        | beam.Create([msg("tone", str(audio_dir / "tone.wav").encode())])
        | LoadAudio()
        | GetMelSpec()
        | beam.Map(_collect_parsed, key)
    )
    # building the graph sets no step up (Beam reads each attribute of a DoFn as it builds)
    assert warmed == []
    pipeline.run().wait_until_finish()
    (parsed,) = _COLLECTED.pop(key)
    mel = decode_payload(parsed.data.payload, element="tone")
    assert parsed.data.element == b"tone" and mel.ndim == 2 and mel.shape[0] == 128


def test_a_jobs_own_undecorated_step_after_audio_steps_gets_message_bytes(
    audio_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_encode = item.encode_payload
    monkeypatch.setattr(
        item, "encode_payload", lambda *a: calls.append("encode") or real_encode(*a)
    )
    config = parse_config(
        {
            "job_name": "audio-keys",
            "job_config": {
                "data": {
                    "inputs": [
                        {"type": "file", "location": str(audio_dir), "file_suffix": ".wav"}
                    ]
                }
            },
        }
    )

    def run_fn(pcoll: Any, _: Any) -> Any:
        stft = pcoll | GcsLoadBinary() | LoadAudio() | GetSTFT()
        keyed = stft | beam.Map(_key_by_element) | beam.GroupByKey()
        return keyed | beam.MapTuple(lambda _, messages: messages[0])

    key = uuid.uuid4().hex
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        out = pipeline | beam.Create([msg("tone")]) | KlioJobTransform(config, run_fn)
        _ = out["output"] | beam.Map(_collect, key)
    (output,) = _COLLECTED.pop(key)
    stft = decode_payload(kmessage.parse(output).data.payload, element="tone")
    assert stft.shape[0] == 1025 and np.iscomplexobj(stft)
    # encoded once, for the job's own step; LoadAudio handed GetSTFT its array as it was
    assert calls == ["encode"]


def test_bad_arrays_are_dropped_naming_the_element() -> None:
    good = AudioItem(kmessage.new_message("ok"), signals.tone(440, 0.5, 22050), "numpy")
    nan = AudioItem(kmessage.new_message("nan"), np.full(8192, np.nan, dtype=np.float32), "numpy")
    no_channels = AudioItem(
        kmessage.new_message("no-ch"), np.zeros((0, 8192), dtype=np.float32), "numpy"
    )
    not_array = AudioItem(kmessage.new_message("text"), "hello", "pickle")
    outputs, drops, ids = run(
        lambda p: p | GetMelSpec(), [good, nan, no_channels, not_array, b"\xff\x00garbage"]
    )
    assert [o.element for o in outputs] == ["ok"]
    assert drops == {"non_finite": 1, "no_channels": 1, "bad_payload": 2}
    assert ids["non_finite"] == {"nan"} and ids["no_channels"] == {"no-ch"}
    assert "text" in ids["bad_payload"]


class _Halve(beam.DoFn):
    """A Klio job author's own step between audio transforms, in klio-audio's style."""

    @handle_klio
    @handle_binary(load_with_numpy=True, save_with_numpy=True)
    def process(self, item: Any) -> Any:
        assert isinstance(item.payload, np.ndarray)
        yield item.payload * 0.5


@handle_klio
@handle_binary(skip_dump=True)
def _describe(ctx: Any, item: Any) -> str:
    return f"{item.element.decode()}:{item.payload.shape[0]}"


def test_handle_binary_user_steps_interleave_with_audio_transforms(
    audio_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config({"job_name": "audio-test"})
    monkeypatch.setattr(kcontext, "_bound", None)
    kcontext.bind_context(kcontext.KlioContext(config))
    path = str(audio_dir / "tone.wav").encode()
    outputs, drops, _ = run(
        lambda p: p | LoadAudio(mono=False) | beam.ParDo(_Halve()) | GetSTFT(), [msg("t", path)]
    )
    assert drops == {}
    full, _, _ = run(lambda p: p | LoadAudio(mono=False) | GetSTFT(), [msg("t", path)])
    np.testing.assert_allclose(np.abs(outputs[0].payload), np.abs(full[0].payload) * 0.5,
                               rtol=1e-4, atol=1e-4)
    described, _, _ = run(lambda p: p | LoadAudio() | beam.Map(_describe), [msg("t", path)])
    assert kmessage.parse(described[0]).data.payload == b"t:44100"


@handle_klio
@handle_binary(skip_dump=True)
def _read_downloaded(ctx: Any, item: Any) -> str:
    """A job's own step reading the file object GcsLoadBinary downloaded."""
    return f"read {len(item.payload.read())}"


@pytest.mark.parametrize("user_step_first", [True, False])
def test_a_jobs_step_beside_load_audio_reads_the_whole_downloaded_file(
    audio_dir: Path, user_step_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As each of Klio's steps unpickles a file object of its own: whichever reads first, the
    # other still reads the whole file.
    monkeypatch.setattr(kcontext, "_bound", None)
    kcontext.bind_context(kcontext.KlioContext(parse_config({"job_name": "audio-test"})))
    size = (audio_dir / "tone.wav").stat().st_size

    def branches(p: beam.PCollection) -> beam.PCollection:
        downloaded = p | GcsLoadBinary(location=str(audio_dir), file_suffix=".wav")
        if user_step_first:
            read = downloaded | "user" >> beam.Map(_read_downloaded)
            loaded = downloaded | LoadAudio(sr=None)
        else:
            loaded = downloaded | LoadAudio(sr=None)
            read = downloaded | "user" >> beam.Map(_read_downloaded)
        return (read, loaded | beam.Map(_describe)) | beam.Flatten()

    outputs, drops, _ = run(branches, [msg("tone")])
    assert drops == {}
    payloads = sorted(kmessage.parse(bytes(out)).data.payload for out in outputs)
    assert payloads == [f"read {size}".encode(), b"tone:88200"]


def test_gcs_load_binary_never_reads_the_payload_it_receives(audio_dir: Path) -> None:
    # klio-audio's is skip_load: the file is read, whatever payload the message came with
    message = msg("tone", b"\x80\x04 no pickle of anything")
    outputs, drops, _ = run(
        lambda p: p | GcsLoadBinary(location=str(audio_dir), file_suffix=".wav") | LoadAudio(),
        [message],
    )
    assert drops == {} and len(outputs) == 1


def test_audio_transforms_are_pardos_with_a_drop_output(audio_dir: Path) -> None:
    # Klio's metaclass makes each audio transform a beam.ParDo: a job may ask for its drops.
    assert all(isinstance(t, beam.ParDo) for t in (LoadAudio(), GetSTFT(), SpecToPlot()))
    good, bad = msg("tone", str(audio_dir / "tone.wav").encode()), msg("bad", b"not audio")

    def with_drops(p: beam.PCollection) -> beam.PCollection:
        outs = p | LoadAudio().with_outputs(DROP_TAG, main="main")
        return (
            outs.main | "main" >> beam.Map(lambda b: ("main", kmessage.parse(b).data.element)),
            outs[DROP_TAG] | "drop" >> beam.Map(lambda b: ("drop", kmessage.parse(b).data.element)),
        ) | beam.Flatten()

    outputs, drops, _ = run(with_drops, [good, bad])
    assert sorted(outputs) == [("drop", b"bad"), ("main", b"tone")]
    assert sum(drops.values()) == 1


def test_the_drop_output_gives_message_bytes_after_an_object_handing_step(
    tmp_path: Path,
) -> None:
    # GcsLoadBinary hands LoadAudio an object; what LoadAudio drops leaves as the message bytes
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really audio")

    def dropped(p: beam.PCollection) -> beam.PCollection:
        loaded = p | GcsLoadBinary(location=str(tmp_path), file_suffix=".wav")
        outs = loaded | LoadAudio().with_outputs(DROP_TAG, main="main")
        return outs[DROP_TAG] | beam.Map(lambda b: kmessage.parse(b).data.element)

    outputs, _, _ = run(dropped, [msg("bad")])
    assert outputs == [b"bad"]


def test_plots_take_only_their_own_arguments_as_klios(audio_dir: Path) -> None:
    # Klio's plots pass specshow only their own arguments: after GetSTFT(hop_length=256) the
    # time axis is librosa's (hop 512, 22050 Hz), in a job's run as in its test, unless told.
    source = msg("tone", str(audio_dir / "tone.wav").encode())

    def plot(**plot_args: Any) -> Callable[[beam.PCollection], beam.PCollection]:
        return lambda p: p | LoadAudio() | GetSTFT(hop_length=256) | SpecToPlot(**plot_args)

    frames = 1 + 2 * 22050 // 256  # 2 s at 22050 Hz, centred frames
    (default,), _, _ = run(plot(), [source])
    assert default.payload.axes[0].get_xlim()[1] == pytest.approx(frames * 512 / 22050, rel=0.01)
    (told,), _, _ = run(plot(hop_length=256), [source])
    assert told.payload.axes[0].get_xlim()[1] == pytest.approx(2.0, rel=0.01)


def test_waveform_plot_draws_klios_5000_samples_unless_told(audio_dir: Path) -> None:
    source = msg("tone", str(audio_dir / "tone.wav").encode())
    (default,), _, _ = run(lambda p: p | LoadAudio() | WaveformToPlot(), [source])
    (whole,), _, _ = run(lambda p: p | LoadAudio() | WaveformToPlot(num_samples=None), [source])
    # each axis spans its samples plus the same 5% margin: 2 s at 22050 Hz against 5000 samples
    drawn = whole.payload.axes[0].get_xlim()[1] / default.payload.axes[0].get_xlim()[1]
    assert drawn == pytest.approx(2 * 22050 / 5000, rel=0.01)


def test_payload_conventions_match_klio_audio() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    numpy_item = AudioItem(kmessage.new_message("a"), array, "numpy")
    payload = kmessage.parse(bytes(numpy_item)).data.payload
    np.testing.assert_array_equal(np.load(io.BytesIO(payload)), array)  # klio-audio: np.load
    pickled = AudioItem(kmessage.new_message("b"), {"x": 1}, "pickle")
    assert pickle.loads(kmessage.parse(bytes(pickled)).data.payload) == {"x": 1}
    back = as_item(bytes(numpy_item))
    assert back.element == "a" and back.encoding == "numpy"
    np.testing.assert_array_equal(back.payload, array)
    # A consumer asking for pickle still reads a numpy payload, and the other way round.
    np.testing.assert_array_equal(decode_payload(payload, element="a", numpy=False), array)
    assert decode_payload(pickle.dumps([1]), element="b", numpy=True) == [1]
    with pytest.raises(errors.AudioError) as caught:
        decode_payload(b"\x93NUMPY broken", element="c")
    assert caught.value.reason == errors.BAD_PAYLOAD and "'c'" in str(caught.value)


def test_upload_data_writes_npy_and_refuses_unknown_payloads(tmp_path: Path) -> None:
    array = np.linspace(0, 1, 5, dtype=np.float32)
    items = [AudioItem(kmessage.new_message("vec"), array, "numpy"),
             AudioItem(kmessage.new_message("obj"), object(), "pickle")]
    outputs, drops, _ = run(
        lambda p: p | UploadData(location=str(tmp_path / "npy"), file_suffix=".npy"), items
    )
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "vec.npy"), array)
    assert len(outputs) == 1 and drops == {"bad_payload": 1}


def test_klio_audio_import_paths() -> None:
    from klio_audio import decorators as kdec
    from klio_audio.transforms import audio as kaudio
    from klio_audio.transforms import io as kio

    assert kaudio.LoadAudio is LoadAudio and kaudio.MFCCToPlot is MFCCToPlot
    assert kio.GcsLoadBinary is GcsLoadBinary and kio.GcsUploadPlot is GcsUploadPlot
    assert kdec.handle_binary is handle_binary
    with pytest.raises(TypeError, match="samplerate"):
        kaudio.LoadAudio(samplerate=8000)


def test_load_audio_without_a_payload_says_what_to_do() -> None:
    outputs, drops, ids = run(lambda p: p | LoadAudio(), [msg("no-payload")])
    assert outputs == [] and drops == {"bad_payload": 1} and ids["bad_payload"] == {"no-payload"}


def test_audio_steps_count_and_log_as_klios(
    audio_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As klio-audio's DoFns, each under @_handle_klio: kmsg-received/-success/-drop-error/-timer,
    # named after the method decorated (the spectrogram plots share their base class's), and
    # its drop line
    (tmp_path / "bad.wav").write_text("not audio")
    config = parse_config({"job_name": "audio-metrics", "pipeline_options": {"streaming": False}})

    def run_fn(pcoll: Any, _config: Any) -> Any:
        return pcoll | LoadAudio() | GetMelSpec() | MelSpecToPlot()

    sources = [msg(name, str(path).encode()) for name, path in
               (("tone", audio_dir / "tone.wav"), ("bad", tmp_path / "bad.wav"))]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = pipeline | beam.Create(sources) | KlioJobTransform(config, run_fn)
    result = pipeline.run()
    result.wait_until_finish()
    counted = {
        (r.key.metric.namespace, r.key.metric.name): r.committed
        for r in result.metrics().query(MetricsFilter())["counters"]
        if r.key.metric.name.startswith("kmsg-")
    }
    assert counted[("LoadAudio.process", "kmsg-received")] == 2
    assert counted[("LoadAudio.process", "kmsg-success")] == 1
    assert counted[("LoadAudio.process", "kmsg-drop-error")] == 1
    assert counted[("GetMelSpec.process", "kmsg-success")] == 1
    assert counted[("KlioPlotBaseDoFn.process", "kmsg-success")] == 1
    timers = result.metrics().query(MetricsFilter().with_namespace("LoadAudio.process"))
    assert [d.committed.count for d in timers["distributions"]] == [2]
    (dropped,) = [r for r in caplog.records if r.getMessage().startswith("Dropping")]
    assert dropped.getMessage().startswith(
        "Dropping KlioMessage - exception occurred when calling 'LoadAudio.process' with '"
    )
    assert "\nError: element 'bad': not_audio: " in dropped.getMessage()
    assert "payload" not in dropped.getMessage()  # the file's path, not shown

