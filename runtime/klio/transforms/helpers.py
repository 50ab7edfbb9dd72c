"""Klio's ``klio.transforms.helpers`` (aliases of klio_runtime.transforms.helpers)."""

from klio_runtime.transforms.helpers import (
    KlioCheckInputExists,
    KlioCheckOutputExists,
    KlioCheckRecipients,
    KlioDebugMessage,
    KlioDrop,
    KlioFilterForce,
    KlioFilterPing,
    KlioGcsCheckInputExists,
    KlioGcsCheckOutputExists,
    KlioMessageCounter,
    KlioSetTrace,
    KlioTriggerUpstream,
    KlioUpdateAuditLog,
    KlioWriteToEventOutput,
)

__all__ = [
    "KlioCheckInputExists",
    "KlioCheckOutputExists",
    "KlioCheckRecipients",
    "KlioDebugMessage",
    "KlioDrop",
    "KlioFilterForce",
    "KlioFilterPing",
    "KlioGcsCheckInputExists",
    "KlioGcsCheckOutputExists",
    "KlioMessageCounter",
    "KlioSetTrace",
    "KlioTriggerUpstream",
    "KlioUpdateAuditLog",
    "KlioWriteToEventOutput",
]
