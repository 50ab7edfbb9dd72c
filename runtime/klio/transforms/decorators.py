"""Klio's ``klio.transforms.decorators`` (aliases of klio_runtime.decorators)."""

from klio_runtime.decorators import (
    KlioRetriesExhausted,
    KlioTimeoutError,
    _handle_klio,
    _inject_klio_context,
    _retry,
    _serialize_klio_message,
    _set_klio_context,
    _timeout,
    handle_klio,
    inject_klio_context,
    profile,
    retry,
    serialize_klio_message,
    set_klio_context,
    timeout,
)

__all__ = [
    "KlioRetriesExhausted",
    "KlioTimeoutError",
    "_handle_klio",
    "_inject_klio_context",
    "_retry",
    "_serialize_klio_message",
    "_set_klio_context",
    "_timeout",
    "handle_klio",
    "inject_klio_context",
    "profile",
    "retry",
    "serialize_klio_message",
    "set_klio_context",
    "timeout",
]
