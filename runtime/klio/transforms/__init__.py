"""Klio's ``klio.transforms``: decorators, helpers, core and io, as aliases of klio_runtime.

As in Klio, the package itself exports the IO transforms (``from klio.transforms import
KlioReadFromText``); the helpers are kept here too.
"""

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
from klio.transforms.io import (
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
    "KlioReadFromAvro",
    "KlioReadFromBigQuery",
    "KlioReadFromPubSub",
    "KlioReadFromText",
    "KlioTriggerUpstream",
    "KlioUpdateAuditLog",
    "KlioWriteToAvro",
    "KlioWriteToBigQuery",
    "KlioWriteToPubSub",
    "KlioWriteToText",
]
