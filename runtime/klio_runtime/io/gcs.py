"""Google Cloud Storage access, including the local emulator.

With ``STORAGE_EMULATOR_HOST`` set and no credentials configured, Beam's GcsIO would spend ~20 s
retrying ``google.auth.default()``; :func:`ensure_emulator_credentials` writes a fake
authorized-user
credentials file and names it in ``GOOGLE_APPLICATION_CREDENTIALS`` so both Beam and the
google-cloud-storage client go straight to the emulator.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
import threading
from typing import Any

from klio_runtime.io import EMULATOR_PROJECT

_FAKE_CREDENTIALS = {
    "type": "authorized_user",
    "client_id": "fake",
    "client_secret": "fake",
    "refresh_token": "fake",
    "token": "fake-token",
    "expiry": "2099-01-01T00:00:00Z",
    "quota_project_id": EMULATOR_PROJECT,
}
_lock = threading.Lock()


def emulator_host() -> str | None:
    return os.environ.get("STORAGE_EMULATOR_HOST") or None


def write_emulator_credentials(handle: Any) -> None:
    """Write the fake credentials the emulator accepts (a credentials JSON file's content)."""
    json.dump(_FAKE_CREDENTIALS, handle)


def ensure_emulator_credentials() -> None:
    """If the emulator is in use and no credentials are configured, configure fake ones."""
    if not emulator_host() or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return
    with _lock:
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            return
        fd, path = tempfile.mkstemp(prefix="klio-emulator-credentials-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            write_emulator_credentials(handle)
        # One file per process, gone with it: each run would otherwise leave one in the temp dir.
        atexit.register(_remove, path)
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = path
        # An authorized-user file names no project, and google.auth then warns "No project ID
        # could be determined" on every lookup.
        if not (os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")):
            os.environ["GOOGLE_CLOUD_PROJECT"] = EMULATOR_PROJECT


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def split_gs(url: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` → (``bucket``, ``a/b``)."""
    if not url.startswith("gs://"):
        raise ValueError(f"not a gs:// URL: {url!r}")
    bucket, _, name = url[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"gs:// URL without a bucket: {url!r}")
    return bucket, name


def storage_client() -> Any:
    """A google-cloud-storage client (anonymous against the emulator)."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if emulator_host():
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client()
