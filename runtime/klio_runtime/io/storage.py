"""Data objects on local paths or ``gs://``: batched existence checks, reads and writes.

Existence checks group paths by their directory (prefix) and list each directory once, so a batch of
N elements under one location costs one listing, not N round trips.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from apache_beam.io.filesystems import FileSystems

from klio_runtime.io.gcs import ensure_emulator_credentials, split_gs, storage_client


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


class DataStore:
    """Checks and moves data objects; the GCS client is made on first use (in the worker)."""

    def __init__(self) -> None:
        self._client: Any = None

    def _gcs(self) -> Any:
        if self._client is None:
            ensure_emulator_credentials()
            self._client = storage_client()
        return self._client

    def exists_many(self, paths: Iterable[str]) -> dict[str, bool]:
        """Which of ``paths`` exist: one listing per directory (local) or prefix (GCS)."""
        by_dir: dict[str, set[str]] = defaultdict(set)
        for path in paths:
            by_dir[path.rsplit("/", 1)[0] if "/" in path else "."].add(path)
        found: dict[str, bool] = {}
        for directory, wanted in by_dir.items():
            present = self._list(directory)
            for path in wanted:
                found[path] = path in present
        return found

    def exists(self, path: str) -> bool:
        return self.exists_many([path])[path]

    def _list(self, directory: str) -> set[str]:
        if is_gcs(directory):
            from google.api_core.exceptions import NotFound

            bucket, prefix = split_gs(directory + "/")
            blobs = self._gcs().list_blobs(bucket, prefix=prefix, delimiter="/")
            try:
                return {f"gs://{bucket}/{blob.name}" for blob in blobs}
            except NotFound:  # no such bucket: nothing is in it (Beam's GcsIO.exists says so)
                return set()
        try:
            with os.scandir(directory) as entries:
                return {f"{directory}/{entry.name}" for entry in entries if entry.is_file()}
        except FileNotFoundError:
            return set()

    def read_bytes(self, path: str) -> bytes:
        if is_gcs(path):
            ensure_emulator_credentials()
        with FileSystems.open(path) as handle:
            return bytes(handle.read())

    def write_bytes(self, path: str, data: bytes) -> None:
        if is_gcs(path):
            ensure_emulator_credentials()
        else:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
        with FileSystems.create(path) as handle:
            handle.write(data)

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._client = None


def read_bytes(path: str) -> bytes:
    """Read a whole object (local path or gs://)."""
    return DataStore().read_bytes(path)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole object (local path or gs://), creating local directories."""
    DataStore().write_bytes(path, data)
