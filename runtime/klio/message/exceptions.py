"""Klio's ``klio.message.exceptions``."""

from klio_runtime.decorators import KlioMessageException, KlioMessagePayloadException
from klio_runtime.message import MessageDecodeError

__all__ = ["KlioMessageException", "KlioMessagePayloadException", "MessageDecodeError"]
