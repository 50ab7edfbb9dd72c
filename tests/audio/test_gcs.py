"""gs:// data locations against gcp-storage-emulator: load, plot, upload, stream."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from klio_runtime import message as kmessage
from klio_runtime.audio.io import GcsLoadBinary, GcsUploadPlot, StreamFeature
from klio_runtime.audio.transforms import GetMelSpec, LoadAudio, MelSpecToPlot

from tests.audio.test_transforms import run


@pytest.mark.slow
def test_audio_from_and_to_gcs(gcs_emulator: str, audio_dir: Path, bad_dir: Path) -> None:
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcs_emulator),
    )
    bucket = client.create_bucket(f"audio-{uuid.uuid4().hex[:8]}")
    bucket.blob("in/tone.flac").upload_from_filename(audio_dir / "tone.flac")
    bucket.blob("in/cut.flac").upload_from_filename(bad_dir / "truncated-flac.flac")
    root = f"gs://{bucket.name}"
    messages = [kmessage.serialize(kmessage.new_message(e)) for e in ("tone", "cut")]

    outputs, drops, ids = run(
        lambda p: p
        | GcsLoadBinary(location=f"{root}/in", file_suffix=".flac")
        | LoadAudio()
        | GetMelSpec()
        | MelSpecToPlot()
        | GcsUploadPlot(location=f"{root}/out", file_suffix=".png"),
        messages,
    )
    assert [kmessage.parse(o).data.payload.decode() for o in outputs] == [f"{root}/out/tone.png"]
    assert drops == {"truncated": 1} and ids["truncated"] == {"cut"}
    assert bucket.blob("out/tone.png").download_as_bytes()[:4] == b"\x89PNG"

    streamed, drops, _ = run(
        lambda p: p | StreamFeature("mfcc", location=f"{root}/in", file_suffix=".flac"),
        messages[:1],
    )
    assert drops == {} and streamed[0].payload.shape[0] == 20
