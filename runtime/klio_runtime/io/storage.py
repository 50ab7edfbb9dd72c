"""Data objects on local paths or ``gs://``: batched existence checks, reads and writes.

A local path is checked with one ``stat``. On GCS a batch of paths under one prefix costs one
listing, not a round trip each, as long as the prefix is small; a listing pays for every object
under the prefix, so past a few pages (a bucket of millions of tracks) each wanted object is asked
for instead, several at a time.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apache_beam.io.filesystems import FileSystems

from klio_runtime.io.gcs import ensure_emulator_credentials, ready_for, split_gs, storage_client

# Objects a GCS existence check lists under a prefix before it asks for each wanted one instead
# (two pages of a listing; at least twice the batch).
GCS_LISTING_LIMIT = 2000
GCS_CHECKS_AT_ONCE = 8


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


class DataStore:
    """Checks and moves data objects; the GCS client is made on first use (in the worker)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._large_prefixes: set[str] = set()

    def _gcs(self) -> Any:
        if self._client is None:
            ensure_emulator_credentials()
            self._client = storage_client()
        return self._client

    def exists_many(self, paths: Iterable[str]) -> dict[str, bool]:
        """Which of ``paths`` exist (as files or objects, not directories)."""
        found: dict[str, bool] = {}
        by_prefix: dict[str, set[str]] = defaultdict(set)
        for path in paths:
            if not is_gcs(path):
                found[path] = os.path.isfile(path)
                continue
            directory, _, name = path.rpartition("/")
            if name and directory.startswith("gs://") and len(directory) > len("gs://"):
                by_prefix[directory].add(path)
            else:  # a bucket, or a prefix ending in "/": not an object
                found[path] = False
        for prefix, wanted in by_prefix.items():
            found.update(self._gcs_exists(prefix, wanted))
        return found

    def exists(self, path: str) -> bool:
        return self.exists_many([path])[path]

    def _gcs_exists(self, directory: str, wanted: set[str]) -> dict[str, bool]:
        from google.api_core.exceptions import NotFound

        bucket, prefix = split_gs(directory + "/")
        client = self._gcs()  # without credentials, that is what to say first
        ready_for(directory)
        if directory not in self._large_prefixes:
            limit = max(GCS_LISTING_LIMIT, 2 * len(wanted))
            blobs = client.list_blobs(
                bucket, prefix=prefix, delimiter="/", max_results=limit + 1
            )
            try:
                listed = {f"gs://{bucket}/{blob.name}" for blob in blobs}
            except NotFound:  # no such bucket: nothing is in it (Beam's GcsIO.exists says so)
                return dict.fromkeys(wanted, False)
            if len(listed) <= limit:
                return {path: path in listed for path in wanted}
            self._large_prefixes.add(directory)  # later batches ask at once
        handle = client.bucket(bucket)
        names = sorted(wanted)
        with ThreadPoolExecutor(max_workers=min(GCS_CHECKS_AT_ONCE, len(names))) as pool:
            present = pool.map(lambda path: handle.blob(split_gs(path)[1]).exists(), names)
            return dict(zip(names, present, strict=True))

    def read_bytes(self, path: str) -> bytes:
        ready_for(path)
        with FileSystems.open(path) as handle:
            return bytes(handle.read())

    def write_bytes(self, path: str, data: bytes) -> None:
        if is_gcs(path):
            ready_for(path)
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
        self._large_prefixes = set()


def read_bytes(path: str) -> bytes:
    """Read a whole object (local path or gs://)."""
    return DataStore().read_bytes(path)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole object (local path or gs://), creating local directories."""
    DataStore().write_bytes(path, data)
