"""spectrograms: a mel spectrogram PNG of each track, with Klio's klio-audio transforms.

The STFT's window and hop come from the job's own config keys ``n_fft`` and ``hop_length``
(a KlioJob's ``spec.config``), with librosa's defaults when unset.
"""

import apache_beam as beam
from klio_audio.transforms import audio
from klio_audio.transforms import io as aio
from klio_runtime.config import KlioConfig

N_MELS = 128
FMAX = 8000


def run(input_pcol: beam.PCollection, config: KlioConfig) -> beam.PCollection:
    stft = {
        "n_fft": int(getattr(config.job_config, "n_fft", 2048)),
        "hop_length": int(getattr(config.job_config, "hop_length", 512)),
    }
    return (
        input_pcol
        | aio.GcsLoadBinary()                      # job_config.data.inputs[0]/<id>.flac
        | audio.LoadAudio()                        # 22050 Hz mono, the rate GetMelSpec assumes
        | audio.GetMelSpec(n_mels=N_MELS, fmax=FMAX, **stft)
        | audio.MelSpecToPlot(title="Mel spectrogram of {element}", fmax=FMAX,
                              hop_length=stft["hop_length"])
        | aio.GcsUploadPlot()                      # job_config.data.outputs[0]/<id>.png
    )
