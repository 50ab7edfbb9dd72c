"""Klio's ``klio.transforms.helpers`` (aliases of klio_runtime.transforms.helpers)."""

from klio_runtime.transforms.helpers import (
    KlioAckInputMessage,
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
    "KlioAckInputMessage",
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
