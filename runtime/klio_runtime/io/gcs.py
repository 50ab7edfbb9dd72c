"""Google Cloud Storage access, including the local emulator.

With ``STORAGE_EMULATOR_HOST`` set and no credentials configured, Beam's GcsIO would spend ~20 s
retrying ``google.auth.default()``; :func:`ensure_emulator_credentials` writes a fake
authorized-user
credentials file and names it in ``GOOGLE_APPLICATION_CREDENTIALS`` so both Beam and the
google-cloud-storage client go straight to the emulator.

Both clients also retry every call that cannot connect for two minutes: offline, or with the
emulator not started, each element of a local run would wait that long. There (``klio job run``
calls :func:`fail_fast_when_unreachable`) :func:`ready_for` says so at once. A worker in a pod
keeps the clients' retries: they ride out a DNS blip that would otherwise drop elements.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from time import monotonic
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
GCS_HOST = "storage.googleapis.com"
_TRUST_REACHABLE = 60.0
"""Seconds a successful look at the storage host is trusted (the network may go)."""
_TRUST_UNREACHABLE = 2.0
"""Seconds a failed one is (each element would otherwise look again, and a resolver may be slow
to fail)."""
_fail_fast = False
"""Whether :func:`ready_for` looks at all (see the module's doc)."""
_looked: dict[str, tuple[float, str | None]] = {}
"""Storage host (the emulator's, or Cloud Storage's) → (monotonic time until which the last look
holds, why it cannot be reached or None)."""


class StorageUnreachable(ConnectionError):
    """Cloud Storage, or the emulator STORAGE_EMULATOR_HOST names, cannot be reached at all."""


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


def fail_fast_when_unreachable(enabled: bool = True) -> None:
    """Make :func:`ready_for` refuse at once when storage cannot be reached (a local run)."""
    global _fail_fast
    _fail_fast = enabled


def ready_for(path: str) -> None:
    """Before Cloud Storage is asked about ``path`` (nothing for other paths): the emulator's
    credentials (:func:`ensure_emulator_credentials`), and in a local run
    :class:`StorageUnreachable` at once when its host cannot be reached, instead of two minutes
    of retries in the client."""
    if not path.startswith("gs://"):
        return
    ensure_emulator_credentials()
    if not _fail_fast:
        return
    key = emulator_host() or GCS_HOST
    until, reason = _looked.get(key, (0.0, None))
    if monotonic() >= until:
        reason = _unreachable_reason()
        # from when the look ended: one that timed out must not be stale at once
        trusted = _TRUST_UNREACHABLE if reason else _TRUST_REACHABLE
        _looked[key] = (monotonic() + trusted, reason)
    if reason:
        raise StorageUnreachable(f"cannot read or write {path}: {reason}")


def _unreachable_reason() -> str | None:
    """Why the storage host cannot be reached, or None. The emulator is connected to (it is
    local: refused means not started); Cloud Storage's name is only resolved (offline, it does
    not resolve). Behind a proxy the proxy reaches it: nothing is looked at."""
    emulator = emulator_host()
    if emulator:
        url = urllib.parse.urlsplit(emulator if "://" in emulator else f"http://{emulator}")
        host = url.hostname or "localhost"
        port = url.port or (443 if url.scheme == "https" else 80)
        if _proxied(url.scheme or "http", host):
            return None
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as err:
            return (
                f"the GCS emulator STORAGE_EMULATOR_HOST names ({emulator}) cannot be reached"
                f" ({err.strerror or err}): is it running?"
            )
        return None
    if _proxied("https", GCS_HOST):
        return None
    try:
        socket.getaddrinfo(GCS_HOST, 443)
    except OSError as err:
        return (
            f"{GCS_HOST} does not resolve ({err.strerror or err}): offline? gs:// paths need "
            "the network, or the GCS emulator (STORAGE_EMULATOR_HOST); local paths need neither"
        )
    return None


def _proxied(scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()  # the environment's, as the clients' requests reads it
    return (scheme in proxies or "all" in proxies) and not urllib.request.proxy_bypass(host)


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
