"""Decoding: every common format, resampling, channels, offsets, and each kind of bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError, check_waveform
from klio_runtime.audio.load import (
    audio_info,
    check_load_options,
    downmix,
    iter_blocks,
    load_audio,
)

from tests.audio import signals


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_soundfile_formats_native_rate_and_channels(audio_dir: Path, ext: str) -> None:
    y, sr = load_audio(audio_dir / f"tone.{ext}", sr=None, mono=False)
    assert sr == 44100
    assert y.shape[0] == 2 and y.dtype == np.float32
    # MP3 encoders add up to two frames of padding; the others are exact.
    assert abs(y.shape[1] - 88200) <= (2 * 1152 + 529 if ext == "mp3" else 0)
    mid = slice(4410, 4410 + 44100)  # 1 s away from the edges
    assert signals.peak_hz(y[0, mid], sr) == pytest.approx(440, abs=2)
    assert signals.peak_hz(y[1, mid], sr) == pytest.approx(880, abs=2)


@pytest.mark.parametrize("target", [22050, 16000, 8000])
def test_resampling_gives_the_asked_rate_and_same_duration(audio_dir: Path, target: int) -> None:
    y, sr = load_audio(audio_dir / "tone.flac", sr=target)
    assert sr == target
    assert y.ndim == 1
    assert y.shape[0] == 2 * target
    # mono of 440 Hz + 880 Hz at equal level: the peak is one of the two, nothing else
    peak = signals.peak_hz(y, sr)
    assert min(abs(peak - 440), abs(peak - 880)) <= 2


def test_mono_is_the_channel_mean(audio_dir: Path) -> None:
    stereo, _ = load_audio(audio_dir / "tone.wav", sr=None, mono=False)
    mono, _ = load_audio(audio_dir / "tone.wav", sr=None)
    np.testing.assert_allclose(mono, stereo.mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("channels", range(1, 10))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_downmix_is_the_channel_mean_to_the_bit(channels: int, dtype: type) -> None:
    frames = np.random.default_rng(channels).standard_normal((4001, channels)).astype(dtype)
    mono = downmix(frames)
    assert mono.dtype == dtype and mono.shape == (4001,)
    assert np.array_equal(mono, frames.mean(axis=1))
    if 1 < channels < 8:  # what librosa.load's to_mono gives, as Klio's LoadAudio did
        import librosa

        assert np.array_equal(mono, librosa.to_mono(np.ascontiguousarray(frames.T)))


@pytest.mark.parametrize("dtype", [np.int16, np.float16])
def test_downmix_of_other_dtypes_is_numpys_mean(dtype: type) -> None:
    frames = (np.arange(20).reshape(10, 2) * 3).astype(dtype)
    assert np.array_equal(downmix(frames), frames.mean(axis=1))


def test_offset_and_duration_select_the_right_samples(tmp_path: Path) -> None:
    sr = 16000
    y = np.concatenate([signals.tone(300, 1.0, sr), signals.tone(1200, 1.0, sr)])
    path = signals.write(tmp_path / "two.wav", y, sr)
    part, got_sr = load_audio(path, sr=None, offset=1.25, duration=0.5)
    assert got_sr == sr and part.shape == (8000,)
    assert signals.peak_hz(part, sr) == pytest.approx(1200, abs=3)
    head, _ = load_audio(path, sr=8000, duration=0.5)
    assert head.shape == (4000,)
    assert signals.peak_hz(head, 8000) == pytest.approx(300, abs=3)


def test_bytes_file_objects_and_file_urls_decode_alike(audio_dir: Path) -> None:
    path = audio_dir / "tone.ogg"
    expected, _ = load_audio(path)
    for source in (path.read_bytes(), io.BytesIO(path.read_bytes()), f"file://{path}", str(path)):
        got, sr = load_audio(source, element="x")
        assert sr == 22050
        np.testing.assert_array_equal(got, expected)


def test_other_codecs_go_through_ffmpeg(audio_dir: Path, tmp_path: Path) -> None:
    m4a = signals.ffmpeg_convert(audio_dir / "tone.wav", tmp_path / "tone.m4a", "-c:a", "aac")
    y, sr = load_audio(m4a, sr=None, mono=False)
    assert sr == 44100 and y.shape[0] == 2
    assert y.shape[1] == pytest.approx(88200, abs=2048)  # AAC priming/padding
    assert signals.peak_hz(y[0, 4410:48510], sr) == pytest.approx(440, abs=2)
    # From bytes too (decoded from a temporary file: MP4 needs to seek), with an offset.
    z, sr2 = load_audio(m4a.read_bytes(), element="tone-m4a", sr=16000, offset=0.5, duration=1.0)
    assert sr2 == 16000 and z.shape == (16000,)


def test_speech_survives_format_conversion(tmp_path: Path) -> None:
    wav = signals.speech(tmp_path / "speech.wav")
    flac = tmp_path / "speech-8k.flac"
    import subprocess

    subprocess.run([signals.need("sox"), str(wav), "-r", "8000", str(flac)], check=True)
    original, sr = load_audio(wav, sr=None)
    converted, sr8 = load_audio(flac, sr=None)
    assert sr8 == 8000
    assert converted.shape[0] / sr8 == pytest.approx(original.shape[0] / sr, abs=0.01)
    assert float(np.sqrt(np.mean(converted**2))) > 0.01  # not silence
    info = audio_info(flac)
    assert (info.sample_rate, info.channels, info.format) == (8000, 1, "FLAC")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated-wav.wav", errors.TRUNCATED),
        ("truncated-flac.flac", errors.TRUNCATED),
        ("truncated-ogg.ogg", errors.TRUNCATED),
        ("truncated-mp3.mp3", errors.TRUNCATED),
        ("text.wav", errors.NOT_AUDIO),
        ("empty.wav", errors.EMPTY),
        ("codec.wav", errors.UNSUPPORTED_CODEC),
    ],
)
def test_bad_files_raise_a_reason_naming_the_element(bad_dir: Path, name: str, reason: str) -> None:
    if reason in (errors.NOT_AUDIO, errors.UNSUPPORTED_CODEC) or name.endswith(".ogg"):
        signals.need("ffmpeg")  # the verdict comes from the fallback decoder
    for source in (bad_dir / name, (bad_dir / name).read_bytes()):
        with pytest.raises(AudioError) as caught:
            load_audio(source, element=f"id-{name}")
        assert caught.value.reason == reason
        assert caught.value.element == f"id-{name}"
        assert f"id-{name}" in str(caught.value)


def test_a_wav_of_unknown_length_loads_whole(audio_dir: Path, tmp_path: Path) -> None:
    # A writer that cannot seek back (ffmpeg to a pipe, a live recorder) leaves 0xFFFFFFFF as
    # the RIFF and data sizes: the data runs to the end of the file, as librosa reads it.
    data = bytearray((audio_dir / "tone.wav").read_bytes())
    at = data.index(b"data")
    data[4:8] = data[at + 4 : at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    whole, sr = load_audio(audio_dir / "tone.wav", sr=None, mono=False)
    for source in (streamed, bytes(data), io.BytesIO(bytes(data))):
        y, sr2 = load_audio(source, sr=None, mono=False)
        assert sr2 == sr
        np.testing.assert_array_equal(y, whole)


def test_loading_a_file_object_leaves_it_where_it_was(audio_dir: Path) -> None:
    # One downloaded file object may reach LoadAudio and a job's own step; neither may find the
    # other's reading position.
    for at in (0, 100):
        source = io.BytesIO((audio_dir / "tone.flac").read_bytes())
        source.seek(at)
        load_audio(source, sr=None)
        assert source.tell() == at


def test_arrays_without_channels_or_with_nan_are_refused() -> None:
    with pytest.raises(AudioError, match="0 channels") as caught:
        check_waveform(np.zeros((0, 100), dtype=np.float32), "silent-0ch")
    assert caught.value.reason == errors.NO_CHANNELS and caught.value.element == "silent-0ch"
    y = np.zeros(1000, dtype=np.float32)
    y[[10, 500]] = np.nan
    with pytest.raises(AudioError, match=r"2 NaN or infinite.*index \(10,\)") as caught:
        check_waveform(y, "nan-el")
    assert caught.value.reason == errors.NON_FINITE
    with pytest.raises(AudioError) as caught:
        check_waveform(np.zeros(0, dtype=np.float32), "empty-el")
    assert caught.value.reason == errors.EMPTY
    with pytest.raises(AudioError) as caught:
        check_waveform(np.zeros(10, dtype=np.int16), "int-el")
    assert caught.value.reason == errors.BAD_ARRAY
    ok = np.zeros((2, 10), dtype=np.float32)
    assert check_waveform(ok, "fine") is ok


def test_nan_samples_in_a_file_are_refused(tmp_path: Path) -> None:
    y = signals.tone(440, 0.5, 8000)
    y[100] = np.nan
    path = tmp_path / "nan.wav"
    import soundfile as sf

    sf.write(path, y, 8000, subtype="FLOAT")
    with pytest.raises(AudioError) as caught:
        load_audio(path, element="nan-file", sr=None)
    assert caught.value.reason == errors.NON_FINITE


def test_blocks_cover_the_file_without_loading_it_whole(audio_dir: Path) -> None:
    blocks = list(iter_blocks(audio_dir / "tone.flac", block_frames=10000, overlap=0))
    assert sum(b.shape[0] for b, _ in blocks) == 88200
    assert all(sr == 44100 and b.ndim == 1 for b, sr in blocks)
    assert max(b.shape[0] for b, _ in blocks) == 10000


def test_unknown_load_options_are_named() -> None:
    check_load_options({"sr": 8000, "mono": False})
    with pytest.raises(TypeError, match="samplerate"):
        check_load_options({"samplerate": 8000})
