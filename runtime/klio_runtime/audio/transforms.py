"""Klio's audio transforms as PTransforms: load, features, plots.

``pcoll | LoadAudio() | GetMelSpec() | MelSpecToPlot()`` — each takes KlioMessages (bytes, or the
AudioItems the previous audio step made) and emits AudioItems; keyword arguments go to librosa
(see ``features``/``plots``). Payload conventions are klio-audio's (see ``item``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from klio_runtime.audio import errors, features, load, plots
from klio_runtime.audio.errors import AudioError
from klio_runtime.audio.item import AudioItem
from klio_runtime.audio.steps import AudioDoFn, AudioStep, check_array
from klio_runtime.config import KlioConfig


# -- load ---------------------------------------------------------------------------------------
class _LoadAudioFn(AudioDoFn):
    step = "LoadAudio"

    def __init__(self, options: dict[str, Any], config: KlioConfig | None) -> None:
        super().__init__(config)
        self.options = options

    def warm_up(self) -> None:
        load.warm_up(resample=self.options.get("sr", load.DEFAULT_SR) is not None)

    def apply(self, item: AudioItem) -> AudioItem:
        if isinstance(item.payload, bytes | str) and not item.payload:
            raise AudioError(
                item.element, errors.BAD_PAYLOAD,
                "the message has no payload: put GcsLoadBinary() before LoadAudio(), "
                "or make the payload the file's path",
            )
        self.step_runtime().logger.debug("Loading %s into memory as a numpy array.", item.element)
        y, _ = load.load_audio(_audio_source(item), element=item.element, **self.options)
        return item.replace(y, "numpy")


def _audio_source(item: AudioItem) -> Any:
    """The payload as something load_audio reads: file bytes or object, or a path / URL's bytes.

    A short UTF-8 payload naming a path (``/…``, ``./…``, ``file://…``, an existing relative file)
    or a ``gs://`` URL (read through Beam's filesystems) is where the audio is.
    """
    payload = item.payload
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, bytes) or len(payload) > 4096 or b"\0" in payload:
        return payload
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return payload
    if text.startswith("gs://"):
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        errors.storage_ready_for(item.element, text)
        try:
            with FileSystems.open(text, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read()
        except Exception as err:  # Beam wraps not-found and permission errors alike
            raise AudioError(item.element, errors.IO_ERROR, f"cannot read {text}: {err}") from err
    if text.startswith(("/", "./", "../", "file://")) or os.path.isfile(text):
        return text
    return payload


class LoadAudio(AudioStep):
    """Decode the payload (file bytes or object from GcsLoadBinary, or a path) into an array.

    Options as ``librosa.load`` and Klio's LoadAudio: ``sr`` (22050; None keeps the file's rate),
    ``mono`` (True), ``offset``/``duration`` (seconds), ``dtype``, ``res_type``.
    """

    def __init__(self, *_: Any, config: KlioConfig | None = None, **options: Any) -> None:
        load.check_load_options(options)
        super().__init__(_LoadAudioFn(options, config))


# -- features -----------------------------------------------------------------------------------
class _FeatureFn(AudioDoFn):
    """A librosa feature over the payload array, librosa's keyword arguments passed through."""

    def __init__(self, step: str, kwargs: dict[str, Any], config: KlioConfig | None) -> None:
        super().__init__(config)
        self.step = step
        self.kwargs = kwargs

    def warm_up(self) -> None:
        features.warm_up()

    def apply(self, item: AudioItem) -> AudioItem:
        data = check_array(item, "audio or a spectrogram")
        self.step_runtime().logger.debug(_FEATURE_LINES[self.step], item.element)  # klio-audio's
        result = _FEATURES[self.step](data, element=item.element, **self.kwargs)
        return item.replace(result, "numpy")


_FEATURE_LINES = {
    "GetSTFT": "Calculating the short-time Fourier transform for %s",
    "GetSpec": "Generating a spectrogram for %s",
    "GetMelSpec": "Generating a Mel spectrogram for %s",
    "GetMFCC": "Generating Mel frequency cepstral coefficients for %s",
}
_FEATURES: dict[str, Any] = {
    "GetSTFT": features.stft,
    "GetSpec": features.spectrogram_db,
    "GetMelSpec": features.mel_spectrogram,
    "GetMFCC": features.mfcc,
}


class GetSTFT(AudioStep):
    """Complex STFT of the waveform (``librosa.stft`` keyword arguments)."""

    def __init__(self, *_: Any, config: KlioConfig | None = None, **librosa_kwargs: Any) -> None:
        super().__init__(_FeatureFn("GetSTFT", librosa_kwargs, config))


class GetSpec(AudioStep):
    """dB magnitude spectrogram of an STFT (``librosa.amplitude_to_db`` keyword arguments)."""

    def __init__(self, *_: Any, config: KlioConfig | None = None, **librosa_kwargs: Any) -> None:
        super().__init__(_FeatureFn("GetSpec", librosa_kwargs, config))


class GetMelSpec(AudioStep):
    """Mel power spectrogram (``librosa.feature.melspectrogram`` keyword arguments).

    As in klio-audio, ``sr`` is librosa's default (22050) unless given: after
    ``LoadAudio(sr=None)`` pass the file's rate (``GetMelSpec(sr=44100)``).
    """

    def __init__(self, *_: Any, config: KlioConfig | None = None, **librosa_kwargs: Any) -> None:
        super().__init__(_FeatureFn("GetMelSpec", librosa_kwargs, config))


class GetMFCC(AudioStep):
    """MFCCs (``librosa.feature.mfcc`` keyword arguments).

    From a waveform (1-D) exactly as ``librosa.feature.mfcc(y=...)``; from a mel spectrogram
    (2-D, Klio's GetMFCC input) as ``mfcc(S=power_to_db(mel, ref=np.max))``; ``source`` forces
    one ("waveform" or "mel").
    """

    def __init__(self, *_: Any, config: KlioConfig | None = None, **librosa_kwargs: Any) -> None:
        super().__init__(_FeatureFn("GetMFCC", librosa_kwargs, config))


# -- plots --------------------------------------------------------------------------------------
class _PlotFn(AudioDoFn):
    """Draws the payload and renders it (PNG by default); the payload becomes the image bytes."""

    def __init__(
        self, step: str, title: str, plot_kwargs: dict[str, Any],
        config: KlioConfig | None,
    ) -> None:
        super().__init__(config)
        if "ax" in plot_kwargs:
            raise TypeError(f"{step}: plot option 'ax' is not supported: each plot is one figure")
        self.step = step
        self.title = title
        self.plot_kwargs = plot_kwargs

    def warm_up(self) -> None:
        plots.warm_up()

    def apply(self, item: AudioItem) -> AudioItem:
        data = check_array(item, "the array to plot")
        # Only the plot's own arguments (librosa's sr 22050 and hop 512 unless given), as Klio's
        # plots take them: the same figure in a job's test as in its run
        kwargs = self.plot_kwargs
        if self.step == "SpecToPlot" and np.iscomplexobj(data):
            data = features.spectrogram_db(data, element=item.element)  # an STFT: show its dB
        title = self.title.format(element=item.element)
        self.step_runtime().logger.debug("Generating plot '%s'", title)
        fig = _PLOTS[self.step](data, element=item.element, title=title, **kwargs)
        # the Figure itself, as Klio's plot steps hand it on (pickled when it leaves the audio
        # steps): GcsUploadPlot renders it in the output's format, a user's step can savefig it
        return item.replace(fig, "pickle")


_PLOTS: dict[str, Any] = {
    "WaveformToPlot": plots.waveform_figure,
    "SpecToPlot": plots.spectrogram_figure,
    "MelSpecToPlot": plots.mel_figure,
    "MFCCToPlot": plots.mfcc_figure,
}


class _PlotStep(AudioStep):
    STEP = ""
    DEFAULT_TITLE = ""

    def __init__(
        self, *_: Any, title: str | None = None,
        config: KlioConfig | None = None, **plot_kwargs: Any,
    ) -> None:
        super().__init__(
            _PlotFn(self.STEP, title or self.DEFAULT_TITLE, plot_kwargs, config)
        )


class WaveformToPlot(_PlotStep):
    """Waveform image of the first ``num_samples`` samples (Klio's default 5000; None: all)."""

    STEP = "WaveformToPlot"
    DEFAULT_TITLE = "Waveplot of {element}"  # Klio's title

    def __init__(
        self, *_: Any, num_samples: int | None = 5000, title: str | None = None,
        config: KlioConfig | None = None, **plot_kwargs: Any,
    ) -> None:
        super().__init__(title=title, config=config, num_samples=num_samples, **plot_kwargs)


class SpecToPlot(_PlotStep):
    """Spectrogram image (dB; an STFT is converted). ``y_axis`` "linear" (default) or "log"."""

    STEP = "SpecToPlot"
    DEFAULT_TITLE = "Spectrogram of {element}"


class MelSpecToPlot(_PlotStep):
    """Mel spectrogram image in dB, mel axis labelled in Hz (``fmax`` 8000 as Klio)."""

    STEP = "MelSpecToPlot"
    DEFAULT_TITLE = "Mel-frequency Spectrogram of {element}"


class MFCCToPlot(_PlotStep):
    """MFCC image, one row per coefficient, time in seconds."""

    STEP = "MFCCToPlot"
    DEFAULT_TITLE = "MFCCs of {element}"
