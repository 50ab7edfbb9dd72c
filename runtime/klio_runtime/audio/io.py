"""Audio data in and out of a job's data locations (local paths or ``gs://``, via Beam filesystems).

``GcsLoadBinary`` reads ``<data input>/<element><file_suffix>`` into the payload; ``GcsUploadPlot``
and ``UploadData`` write the payload to ``<data output>/<prefix><element><suffix><file_suffix>``
and pass on the KlioMessage with the written path as its payload, as Klio's GcsUploadPlot did.
Locations come from ``job_config.data`` (exactly one input / output) unless given.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from apache_beam.io.filesystems import CompressionTypes, FileSystems

from klio_runtime import message as kmessage
from klio_runtime.audio import errors, features
from klio_runtime.audio.errors import AudioError
from klio_runtime.audio.item import AudioItem, encode_payload
from klio_runtime.audio.steps import AudioDoFn, AudioStep
from klio_runtime.config import KlioConfig
from klio_runtime.io.gcs import ensure_emulator_credentials

INVALID_ELEMENT = "invalid_element"


def _suffix(file_suffix: str) -> str:
    return file_suffix if not file_suffix or file_suffix.startswith(".") else "." + file_suffix


def _join(location: str, name: str) -> str:
    return location.rstrip("/") + "/" + name


def _safe_element(item: AudioItem) -> str:
    try:
        return kmessage.validate_element_id(item.message.data.element)
    except kmessage.InvalidElementId as err:
        raise AudioError(item.element, INVALID_ELEMENT, str(err)) from err


class _DataLocationFn(AudioDoFn):
    """Resolves one data input or output location (explicit, else the job config's only one)."""

    direction = "inputs"

    def __init__(
        self, location: str | None, file_suffix: str | None, config: KlioConfig | None
    ) -> None:
        super().__init__(config)
        self.location = location
        self.file_suffix = file_suffix

    def setup(self) -> None:
        super().setup()
        if self.location is None:
            self.location, configured_suffix = self._configured()
            if self.file_suffix is None:
                self.file_suffix = configured_suffix
        self.file_suffix = _suffix(self.file_suffix or "")
        if self.location.startswith("gs://"):
            ensure_emulator_credentials()  # no-op unless STORAGE_EMULATOR_HOST is set

    def _configured(self) -> tuple[str, str]:
        field = f"job_config.data.{self.direction}"
        config = self.step_runtime().config
        if config is None:
            raise ValueError(f"{self.step}: give location=..., or run in a Klio job with {field}")
        places = getattr(config.job_config.data, self.direction)
        if len(places) != 1:
            raise ValueError(
                f"{self.step} needs exactly one entry in {field} (found {len(places)}), "
                "or location=... in its constructor"
            )
        if places[0].location is None:
            raise ValueError(
                f"{self.step}: {field}[0] has no location; give it one or location=..."
            )
        return places[0].location, places[0].file_suffix


class _LoadBinaryFn(_DataLocationFn):
    step = "GcsLoadBinary"
    reads_payload = False  # as klio-audio's (skip_load): it reads the file, not the payload

    def apply(self, item: AudioItem) -> AudioItem:
        assert self.location is not None
        filename = _safe_element(item) + (self.file_suffix or "")
        path = _join(self.location, filename)
        log = self.step_runtime().logger
        log.debug("Downloading %s from %s", filename, self.location)  # klio-audio's lines
        errors.storage_ready_for(item.element, path)
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
        except Exception as err:  # Beam wraps not-found and permission errors alike
            raise AudioError(item.element, errors.IO_ERROR, f"cannot read {path}: {err}") from err
        log.debug("Downloaded %s", filename)
        # klio-audio's GcsLoadBinary handed on a BytesIO (pickled); the decoder reads it in place.
        return item.replace(io.BytesIO(data), "pickle")


class GcsLoadBinary(AudioStep):
    """Read each element's file from the data input (``gs://`` or local) into the payload."""

    def __init__(
        self, *_: Any, location: str | None = None, file_suffix: str | None = None,
        config: KlioConfig | None = None,
    ) -> None:
        super().__init__(_LoadBinaryFn(location, file_suffix, config))


class _UploadFn(_DataLocationFn):
    step = "UploadData"
    direction = "outputs"

    def __init__(
        self, location: str | None, file_suffix: str | None, prefix: str, suffix: str,
        file_format: str | None, savefig_kwargs: dict[str, Any], config: KlioConfig | None,
    ) -> None:
        super().__init__(location, file_suffix, config)
        self.prefix = prefix
        self.suffix = suffix
        self.file_format = file_format
        self.savefig_kwargs = savefig_kwargs

    def apply(self, item: AudioItem) -> bytes:
        assert self.location is not None
        name = self.prefix + _safe_element(item) + self.suffix + (self.file_suffix or "")
        path = _join(self.location, name)
        plot = self.step == "GcsUploadPlot"
        # as Klio's: the given format, else the output's file suffix, else PNG
        fmt = self.file_format or (self.file_suffix or "").lstrip(".") or "png"
        if plot:  # klio-audio's lines for a plot
            self.step_runtime().logger.debug("Saving plot as %s for %s", fmt, item.element)
        data = self._content(item, fmt)
        errors.storage_ready_for(item.element, path)
        try:
            with FileSystems.create(path) as out:
                out.write(data)
        except Exception as err:
            raise AudioError(item.element, errors.IO_ERROR, f"cannot write {path}: {err}") from err
        if plot:
            self.step_runtime().logger.debug("Saved plot to %s", path)
        else:
            self.step_runtime().logger.debug("Wrote %s (%d bytes)", path, len(data))
        msg = kmessage.KlioMessage()
        msg.CopyFrom(item.message)
        msg.data.payload = path.encode("utf-8")
        return kmessage.serialize(msg)

    def _content(self, item: AudioItem, fmt: str) -> bytes:
        payload = item.payload
        if hasattr(payload, "savefig"):  # a matplotlib Figure: a plot step's, or a user's step's
            from klio_runtime.audio.plots import release  # matplotlib is loaded: a Figure is here

            buf = io.BytesIO()
            try:
                payload.savefig(buf, format=fmt, **self.savefig_kwargs)
            finally:
                release(payload)  # the message carries the path from here on (or is dropped)
            return buf.getvalue()
        if isinstance(payload, np.ndarray):
            return encode_payload(payload, "numpy")  # a .npy file
        if isinstance(payload, bytes | bytearray | memoryview | str | io.BytesIO):
            return encode_payload(payload, "raw")
        raise AudioError(
            item.element, errors.BAD_PAYLOAD,
            f"cannot write a {type(payload).__name__} payload: expected an image, bytes or array",
        )


class UploadData(AudioStep):
    """Write each payload (image bytes, array as ``.npy``, bytes, Figure) to the data output."""

    def __init__(
        self, *_: Any, location: str | None = None, file_suffix: str | None = None,
        prefix: str = "", suffix: str = "", file_format: str | None = None,
        config: KlioConfig | None = None, **savefig_kwargs: Any,
    ) -> None:
        super().__init__(
            _UploadFn(location, file_suffix, prefix, suffix, file_format, savefig_kwargs, config),
            output_type=bytes,
        )


class GcsUploadPlot(UploadData):
    """Klio's name for uploading plots: ``prefix``, ``suffix``, ``file_format``, savefig options."""

    def __init__(
        self, prefix: str = "", suffix: str = "", file_format: str | None = None,
        *, location: str | None = None, file_suffix: str | None = None,
        config: KlioConfig | None = None, **savefig_kwargs: Any,
    ) -> None:
        super().__init__(
            location=location, file_suffix=file_suffix, prefix=prefix, suffix=suffix,
            file_format=file_format, config=config, **savefig_kwargs,
        )
        self.fn.step = "GcsUploadPlot"


class _StreamFeatureFn(_DataLocationFn):
    step = "StreamFeature"
    reads_payload = False

    def __init__(
        self, feature: str, location: str | None, file_suffix: str | None,
        librosa_kwargs: dict[str, Any], config: KlioConfig | None,
    ) -> None:
        super().__init__(location, file_suffix, config)
        if feature not in features.STREAMABLE:
            raise ValueError(
                f"StreamFeature: {feature!r} cannot be streamed; choose one of "
                f"{sorted(features.STREAMABLE)}"
            )
        self.feature = feature
        self.librosa_kwargs = librosa_kwargs

    def warm_up(self) -> None:
        features.warm_up()

    def apply(self, item: AudioItem) -> AudioItem:
        assert self.location is not None
        path = _join(self.location, _safe_element(item) + (self.file_suffix or ""))
        if "://" in path and not path.startswith("file://"):
            errors.storage_ready_for(item.element, path)
            source: Any = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        else:
            source = path.removeprefix("file://")
            if not FileSystems.exists(source):
                raise AudioError(item.element, errors.IO_ERROR, f"cannot read {path}: not found")
        try:
            result, _ = features.stream_feature(
                source, self.feature, element=item.element, **self.librosa_kwargs
            )
        finally:
            if hasattr(source, "close"):
                source.close()
        return item.replace(result, "numpy")


class StreamFeature(AudioStep):
    """A frame-local feature of each element's file, computed block by block from the data input.

    For long files: memory is the feature plus one block of audio, never the decoded file.
    ``feature``: "mel", "mfcc" or "stft_magnitude"; at the file's native rate, mono, without
    centring (``librosa.stream``'s convention); ``n_fft``, ``hop_length``, ``block_frames`` and
    the feature's librosa keyword arguments pass through. Plot transforms take its output; as
    any plot, they label it at librosa's rate and hop unless told (``MelSpecToPlot(sr=44100)``).
    """

    def __init__(
        self, feature: str = "mel", *, location: str | None = None,
        file_suffix: str | None = None, config: KlioConfig | None = None,
        **librosa_kwargs: Any,
    ) -> None:
        super().__init__(
            _StreamFeatureFn(feature, location, file_suffix, librosa_kwargs, config)
        )
