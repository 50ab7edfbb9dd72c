"""Klio's ``klio.transforms.io`` (aliases of klio_runtime.transforms.io)."""

from klio_runtime.transforms.io import (
    BaseKlioIOException,
    KlioMissingConfiguration,
    KlioReadFromAvro,
    KlioReadFromBigQuery,
    KlioReadFromPubSub,
    KlioReadFromText,
    KlioWriteToAvro,
    KlioWriteToBigQuery,
    KlioWriteToPubSub,
    KlioWriteToText,
)

__all__ = [
    "BaseKlioIOException",
    "KlioMissingConfiguration",
    "KlioReadFromAvro",
    "KlioReadFromBigQuery",
    "KlioReadFromPubSub",
    "KlioReadFromText",
    "KlioWriteToAvro",
    "KlioWriteToBigQuery",
    "KlioWriteToPubSub",
    "KlioWriteToText",
]
