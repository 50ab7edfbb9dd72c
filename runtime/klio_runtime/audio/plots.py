"""PNG pictures of waveforms and spectrograms: time in seconds, frequency in Hz, a colour bar.

Figures are made with matplotlib's object API on the Agg canvas (no pyplot state, nothing to close,
safe in worker threads), drawn by ``librosa.display`` (0.11: ``waveshow``/``specshow``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from klio_runtime.audio import errors
from klio_runtime.audio.errors import AudioError

DEFAULT_SR = 22050
DEFAULT_HOP_LENGTH = 512


def new_figure(title: str) -> Figure:
    """A figure of matplotlib's configured size and resolution (``rcParams['figure.figsize']``,
    ``['figure.dpi']``: 640×480 unless the job sets them), as klio-audio's ``plt.figure()``."""
    fig = Figure(layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    return fig


def make_current(fig: Figure) -> None:
    """Make ``fig`` pyplot's current figure, as unpickling one of Klio's plots does (they are
    drawn with pyplot), so a job's ``plt.savefig(...)`` saves it: klio-audio's handle_binary
    example. Registered as matplotlib's own unpickling registers a figure; the job closes it, as
    under Klio."""
    import matplotlib._pylab_helpers as pylab_helpers
    import matplotlib.pyplot as plt

    if fig.canvas.manager in pylab_helpers.Gcf.get_all_fig_managers():
        plt.figure(fig)  # pyplot has it already
        return
    number = max(plt.get_fignums(), default=0) + 1
    manager = plt._get_backend_mod().new_figure_manager_given_figure(number, fig)
    pylab_helpers.Gcf._set_new_active_manager(manager)


def release(fig: Figure) -> None:
    """Let pyplot forget ``fig`` if it holds it (a figure unpickled from a message payload is
    registered there, see item.encode_payload): pyplot keeps every figure until it is closed."""
    import sys

    pylab_helpers = sys.modules.get("matplotlib._pylab_helpers")
    if pylab_helpers is None or fig.canvas.manager not in pylab_helpers.Gcf.get_all_fig_managers():
        return
    import matplotlib.pyplot as plt

    plt.close(fig)


def figure_bytes(fig: Figure, file_format: str = "png", **savefig_kwargs: Any) -> bytes:
    """Render ``fig`` (PNG by default) to bytes."""
    out = io.BytesIO()
    fig.savefig(out, format=file_format, **savefig_kwargs)
    return out.getvalue()


def _refuse_axes(plot_kwargs: dict[str, Any]) -> None:
    if "ax" in plot_kwargs:
        raise TypeError("plot option 'ax' is not supported: each plot draws its own figure")


def waveform_figure(
    y: np.ndarray, *, element: str = "", title: str = "", sr: int = DEFAULT_SR,
    num_samples: int | None = None, **waveshow_kwargs: Any,
) -> Figure:
    """Amplitude over time (seconds); the first ``num_samples`` samples if given."""
    import librosa.display

    _refuse_axes(waveshow_kwargs)
    y = errors.check_waveform(y, element)
    if num_samples is not None:
        y = y[..., :num_samples]
    fig = new_figure(title)
    ax = fig.add_subplot()
    librosa.display.waveshow(y, sr=sr, ax=ax, axis="s", **waveshow_kwargs)
    ax.set(xlabel="Time (s)", ylabel="Amplitude")
    return fig


def spectrogram_figure(
    s_db: np.ndarray, *, element: str = "", title: str = "", sr: int = DEFAULT_SR,
    hop_length: int = DEFAULT_HOP_LENGTH, colorbar_format: str = "%+2.0f dB",
    **specshow_kwargs: Any,
) -> Figure:
    """A matrix over time (seconds) against frequency; ``y_axis`` linear (Hz) by default."""
    import librosa.display

    _refuse_axes(specshow_kwargs)
    if not isinstance(s_db, np.ndarray) or s_db.ndim != 2 or s_db.size == 0:
        shape = getattr(s_db, "shape", type(s_db).__name__)
        raise AudioError(element, errors.BAD_ARRAY, f"expected a non-empty 2-D array, got {shape}")
    errors.check_finite(s_db, element)
    specshow_kwargs.setdefault("x_axis", "s")
    specshow_kwargs.setdefault("y_axis", "linear")
    fig = new_figure(title)
    ax = fig.add_subplot()
    img = librosa.display.specshow(s_db, sr=sr, hop_length=hop_length, ax=ax, **specshow_kwargs)
    fig.colorbar(img, ax=ax, format=colorbar_format)
    ax.set(xlabel="Time (s)")
    if specshow_kwargs["y_axis"] in ("linear", "fft", "hz", "log", "mel"):
        ax.set(ylabel="Frequency (Hz)")
    return fig


def mel_figure(
    mel_power: np.ndarray, *, element: str = "", title: str = "", sr: int = DEFAULT_SR,
    hop_length: int = DEFAULT_HOP_LENGTH, fmax: float | None = 8000, **specshow_kwargs: Any,
) -> Figure:
    """A mel power spectrogram in dB (relative to its peak) on a mel axis labelled in Hz."""
    import librosa

    errors.check_finite(mel_power, element)
    s_db = librosa.power_to_db(mel_power, ref=np.max)
    specshow_kwargs["y_axis"] = "mel"
    if fmax is not None:
        specshow_kwargs.setdefault("fmax", fmax)
    return spectrogram_figure(
        s_db, element=element, title=title, sr=sr, hop_length=hop_length, **specshow_kwargs
    )


def mfcc_figure(
    coefficients: np.ndarray, *, element: str = "", title: str = "", sr: int = DEFAULT_SR,
    hop_length: int = DEFAULT_HOP_LENGTH, **specshow_kwargs: Any,
) -> Figure:
    """MFCCs over time (seconds), one row per coefficient."""
    specshow_kwargs.setdefault("y_axis", None)
    fig = spectrogram_figure(
        coefficients, element=element, title=title, sr=sr, hop_length=hop_length,
        colorbar_format="%+.0f", **specshow_kwargs,
    )
    fig.axes[0].set(ylabel="MFCC coefficient")
    return fig


def warm_up() -> None:
    """Load matplotlib's fonts and librosa.display once, before the first element."""
    figure_bytes(spectrogram_figure(np.zeros((4, 4), dtype=np.float32)))
