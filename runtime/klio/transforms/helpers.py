"""Klio's ``klio.transforms.helpers`` (aliases of klio_runtime.transforms.helpers)."""

from klio_runtime.transforms.helpers import (
    KlioCheckInputExists,
    KlioCheckOutputExists,
    KlioCheckRecipients,
    KlioDrop,
    KlioFilterForce,
    KlioFilterPing,
    KlioGcsCheckInputExists,
    KlioGcsCheckOutputExists,
    KlioMessageCounter,
    KlioTriggerUpstream,
    KlioUpdateAuditLog,
)

__all__ = [
    "KlioCheckInputExists",
    "KlioCheckOutputExists",
    "KlioCheckRecipients",
    "KlioDrop",
    "KlioFilterForce",
    "KlioFilterPing",
    "KlioGcsCheckInputExists",
    "KlioGcsCheckOutputExists",
    "KlioMessageCounter",
    "KlioTriggerUpstream",
    "KlioUpdateAuditLog",
]
