"""Klio's ``klio.message.exceptions``."""

from klio_runtime.decorators import KlioMessagePayloadException
from klio_runtime.message import MessageDecodeError

__all__ = ["KlioMessagePayloadException", "MessageDecodeError"]
