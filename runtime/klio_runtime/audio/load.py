"""Decode audio to numpy: libsndfile (soundfile) first, ffmpeg for every other codec.

Arrays follow librosa's layout: ``(n,)`` for mono, ``(channels, n)`` otherwise. Every failure is an
AudioError naming the element and one of the reason codes in ``errors``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError

AudioSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]

# The options of Klio's LoadAudio (they were librosa.load's); anything else is refused up front.
LOAD_OPTIONS = frozenset({"sr", "mono", "offset", "duration", "dtype", "res_type"})
DEFAULT_SR = 22050

# A decoder may come up short by a frame or two at the end of a legitimate file; a truncated file
# loses far more. Shortfalls above both limits are truncation.
_SHORTFALL_FRAMES = 4096
_SHORTFALL_FRACTION = 0.01
_FFMPEG_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header only."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def check_load_options(options: dict[str, Any]) -> None:
    """Refuse options LoadAudio does not know, naming them (at construction, not per element)."""
    unknown = sorted(set(options) - LOAD_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown audio load option(s) {unknown}; expected some of {sorted(LOAD_OPTIONS)}"
        )


def load_audio(
    source: AudioSource,
    *,
    element: str = "",
    sr: float | None = DEFAULT_SR,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    dtype: Any = np.float32,
    res_type: str = "soxr_hq",
) -> tuple[np.ndarray, int]:
    """Decode ``source`` (bytes, a path, a ``file://`` URL or a binary file object).

    Same options and result as ``librosa.load``: ``sr=None`` keeps the native rate, ``mono``
    averages the channels, ``offset``/``duration`` are in seconds.
    Returns ``(samples, sample_rate)``.
    """
    name = element or _describe(source)
    if isinstance(source, str) and source.startswith("file://"):
        source = source[len("file://") :]
    if _is_empty(source):
        raise AudioError(name, errors.EMPTY, "the file is empty (0 bytes)")
    try:
        frames, native_sr, subtype = _decode_soundfile(source, name, offset, duration)
    except _NotForLibsndfile as err:
        frames, native_sr = _decode_ffmpeg(source, name, offset, duration, err.detail)
        subtype = "FLOAT"
    # Integer PCM and the lossy codecs decode to finite numbers; only float samples can be NaN.
    may_hold_nan = subtype in _FLOAT_SUBTYPES
    if frames.shape[1] == 0:
        raise AudioError(name, errors.NO_CHANNELS, "the file has 0 channels")
    if frames.shape[0] == 0:
        raise AudioError(
            name, errors.EMPTY, f"no samples to decode (offset {offset} s, duration {duration})"
        )
    y = downmix(frames) if mono else (frames[:, 0] if frames.shape[1] == 1 else frames.T)
    if may_hold_nan:
        errors.check_finite(y, name)
    out_sr = native_sr
    if sr is not None and int(sr) != native_sr:
        import librosa  # imported lazily: numba compiles on first import of its resampler paths

        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type=res_type)
        out_sr = int(sr)
    return y.astype(dtype, copy=False), out_sr


_SUMMED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def downmix(frames: np.ndarray) -> np.ndarray:
    """Mono ``(n,)`` from frames ``(n, channels)``: the channels' mean, as ``librosa.to_mono``.

    Summed a column at a time: numpy's ``mean(axis=1)`` over so short a last axis takes ~20 ms
    for 30 s of stereo, the column sums under 1 ms. The result is the same to the bit (numpy
    sums fewer than 8 values in order, then divides; from 8 on it sums pairwise). Other
    dtypes (integers, float16) and no channels at all get numpy's mean itself."""
    channels = frames.shape[1]
    if channels == 1:
        return frames[:, 0]
    if not 2 <= channels < 8 or frames.dtype not in _SUMMED_DTYPES:
        return frames.mean(axis=1)
    y = frames[:, 0] + frames[:, 1]
    for channel in range(2, channels):
        y += frames[:, channel]
    y /= frames.dtype.type(channels)
    return y


def audio_info(source: AudioSource, *, element: str = "") -> AudioInfo:
    """Header facts of a file libsndfile can read (AudioError otherwise)."""
    name = element or _describe(source)
    if _is_empty(source):
        raise AudioError(name, errors.EMPTY, "the file is empty (0 bytes)")
    try:
        with _open_input(source) as raw, sf.SoundFile(raw) as f:
            return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)
    except sf.LibsndfileError as err:
        raise AudioError(name, errors.NOT_AUDIO, f"libsndfile: {err.error_string}") from err


class _NotForLibsndfile(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@contextmanager
def _open_input(source: AudioSource) -> Iterator[Any]:
    """Something soundfile can open: a path, or a file object positioned at the start."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        yield os.fspath(source)
    else:
        with _read_from_start(source) as raw:
            yield raw


@contextmanager
def _read_from_start(source: Any) -> Iterator[Any]:
    """``source`` at its start, put back where it was once read: one payload object may go to
    several steps (a job's own step beside LoadAudio), and each expects to read it all, as each
    of Klio's steps unpickles a copy of its own."""
    if not source.seekable():
        yield source
        return
    position = source.tell()
    source.seek(0)
    try:
        yield source
    finally:
        source.seek(position)


def _decode_soundfile(
    source: AudioSource, name: str, offset: float, duration: float | None
) -> tuple[np.ndarray, int, str]:
    """Frames ``(n, channels)`` float32, native rate, subtype; _NotForLibsndfile to try ffmpeg."""
    try:
        with _open_input(source) as raw, sf.SoundFile(raw) as f:
            native_sr, subtype = f.samplerate, f.subtype
            if f.frames <= 0:
                # A cut-off Ogg opens with no length; let ffmpeg give the verdict.
                raise _NotForLibsndfile("libsndfile found no frames")
            start = int(offset * native_sr)
            available = max(f.frames - start, 0)
            wanted = available if duration is None else min(int(duration * native_sr), available)
            if start and f.seekable():
                f.seek(min(start, f.frames))
            try:
                frames = f.read(frames=wanted, dtype="float32", always_2d=True)
            except sf.LibsndfileError as err:
                raise AudioError(
                    name, errors.TRUNCATED, f"decoding stopped: libsndfile: {err.error_string}"
                ) from err
            if f.format == "WAV" and _wav_data_cut_short(f.extra_info):
                raise AudioError(
                    name, errors.TRUNCATED,
                    "the WAV header promises more sample data than the file holds",
                )
    except sf.LibsndfileError as err:
        raise _NotForLibsndfile(err.error_string) from err
    shortfall = wanted - frames.shape[0]
    if shortfall > _SHORTFALL_FRAMES and shortfall > _SHORTFALL_FRACTION * wanted:
        raise AudioError(
            name, errors.TRUNCATED,
            f"decoded {frames.shape[0]} of the {wanted} frames the header announces",
        )
    return frames, native_sr, subtype


_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be", re.MULTILINE)
_WAV_UNKNOWN_SIZE = 0xFFFFFFFF
"""The data size a WAV writer that cannot seek back (ffmpeg to a pipe, a live recorder) leaves
in the header: the data runs to the end of the file, as libsndfile (and so librosa) reads it."""


def _wav_data_cut_short(extra_info: str) -> bool:
    """Whether libsndfile found less sample data than the WAV header announces."""
    found = _WAV_DATA_SIZE.search(extra_info)
    return found is not None and int(found.group(1)) != _WAV_UNKNOWN_SIZE

# ffmpeg's messages, most specific first: (pattern, reason).
_FFMPEG_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Decoder \(codec [^)]*\) not found|Unknown (?:decoder|codec)|unsupported codec"
                r"|could not find codec parameters", re.I), errors.UNSUPPORTED_CODEC),
    (re.compile(r"End of file|moov atom not found|Truncat|partial file|Invalid frame", re.I),
     errors.TRUNCATED),
    (re.compile(r"Invalid data found|does not contain any stream|no streams", re.I),
     errors.NOT_AUDIO),
)


def _decode_ffmpeg(
    source: AudioSource, name: str, offset: float, duration: float | None, sndfile_error: str
) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            name, errors.UNSUPPORTED_CODEC,
            f"libsndfile cannot read it ({sndfile_error}) and ffmpeg is not installed",
        )
    with _as_path(source) as path:
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error"]
        if offset:
            cmd += ["-ss", repr(float(offset))]
        cmd += ["-i", path]
        if duration is not None:
            cmd += ["-t", repr(float(duration))]
        # 32-bit float WAV on stdout keeps full precision and tells us rate and channels.
        cmd += ["-vn", "-f", "wav", "-c:a", "pcm_f32le", "pipe:1"]
        proc = subprocess.run(cmd, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not proc.stdout:
        reason = next((r for p, r in _FFMPEG_REASONS if p.search(stderr)), errors.NOT_AUDIO)
        last = stderr.splitlines()[-1] if stderr else f"exit code {proc.returncode}"
        raise AudioError(
            name, reason, f"libsndfile: {sndfile_error}; ffmpeg: {last.replace(path, '<input>')}"
        )
    with sf.SoundFile(io.BytesIO(proc.stdout)) as f:
        return f.read(dtype="float32", always_2d=True), f.samplerate


@contextmanager
def _as_path(source: AudioSource) -> Iterator[str]:
    """A file path ffmpeg can seek in (MP4's index may sit at the end, so no pipe)."""
    if isinstance(source, str | os.PathLike):
        yield os.fspath(source)
        return
    with tempfile.NamedTemporaryFile(prefix="klio-audio-", suffix=".bin") as tmp:
        if isinstance(source, bytes | bytearray | memoryview):
            tmp.write(source)
        else:
            with _read_from_start(source) as raw:
                shutil.copyfileobj(raw, tmp)
        tmp.flush()
        yield tmp.name


def _is_empty(source: AudioSource) -> bool:
    if isinstance(source, bytes | bytearray | memoryview):
        return len(source) == 0
    if isinstance(source, str | os.PathLike):
        try:
            return Path(source).stat().st_size == 0
        except OSError as err:
            raise AudioError(os.fspath(source), errors.IO_ERROR, str(err)) from err
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes == 0
    return False


def _describe(source: AudioSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else f"<{type(source).__name__}>"


def iter_blocks(
    source: AudioSource, *, element: str = "", block_frames: int, overlap: int = 0,
) -> Iterator[tuple[np.ndarray, int]]:
    """Stream ``(block, sample_rate)`` through libsndfile without decoding the whole file.

    Blocks are mono float32 ``(n,)``, ``block_frames`` long (the last may be shorter), each starting
    ``block_frames - overlap`` frames after the previous one.
    """
    name = element or _describe(source)
    if _is_empty(source):
        raise AudioError(name, errors.EMPTY, "the file is empty (0 bytes)")
    try:
        with _open_input(source) as raw, sf.SoundFile(raw) as f:
            native_sr = f.samplerate
            if f.channels == 0:
                raise AudioError(name, errors.NO_CHANNELS, "the file has 0 channels")
            for block in f.blocks(blocksize=block_frames, overlap=overlap, dtype="float32",
                                  always_2d=True):
                mono = downmix(block)
                errors.check_finite(mono, name)
                yield mono, native_sr
    except sf.LibsndfileError as err:
        raise AudioError(name, errors.NOT_AUDIO, f"libsndfile cannot stream it: {err}") from err


def warm_up(resample: bool = True) -> None:
    """Run the decoder (and the resampler) once so their set-up happens now, not per element."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(2048, dtype=np.float32), 8000, format="WAV")
    load_audio(buf.getvalue(), element="<warm-up>", sr=DEFAULT_SR if resample else None)


__all__ = [
    "LOAD_OPTIONS",
    "AudioInfo",
    "AudioSource",
    "audio_info",
    "check_load_options",
    "downmix",
    "iter_blocks",
    "load_audio",
    "warm_up",
]
