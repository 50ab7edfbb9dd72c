"""Klio's ``klio.transforms``: decorators, helpers and core, as aliases of klio_runtime."""

from klio.transforms.core import KlioBaseDoFn, KlioContext
from klio.transforms.helpers import (
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
    "KlioBaseDoFn",
    "KlioCheckInputExists",
    "KlioCheckOutputExists",
    "KlioCheckRecipients",
    "KlioContext",
    "KlioDrop",
    "KlioFilterForce",
    "KlioFilterPing",
    "KlioGcsCheckInputExists",
    "KlioGcsCheckOutputExists",
    "KlioMessageCounter",
    "KlioTriggerUpstream",
    "KlioUpdateAuditLog",
]
