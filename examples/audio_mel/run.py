"""Mel spectrogram + plot of each audio file, with Klio's klio-audio transforms."""

import posixpath

from klio_audio.transforms import audio
from klio_audio.transforms import io as aio
from klio_runtime.audio.io import UploadData


def run(input_pcol, config):
    mel = (
        input_pcol
        | aio.GcsLoadBinary()                      # job_config.data.inputs[0]/<id>
        | audio.LoadAudio()                        # 22050 Hz mono, the rate GetMelSpec assumes
        | audio.GetMelSpec(n_mels=128, fmax=8000)
    )
    # The arrays too, as .npy, in a "mel" folder beside the plots' folder.
    plots = config.job_config.data.outputs[0].location
    mel_dir = posixpath.join(posixpath.dirname(plots.rstrip("/")), "mel")
    _ = mel | "SaveMel" >> UploadData(location=mel_dir, file_suffix=".npy")
    return (
        mel
        | audio.MelSpecToPlot(title="Mel spectrogram of {element}", fmax=8000)
        | aio.GcsUploadPlot()                      # job_config.data.outputs[0]/<id>.png
    )
