"""Klio's ``klio.message.serializer``: bytes ⇄ KlioMessage with Klio's payload rules."""

from typing import Any

from klio_runtime import message as _message
from klio_runtime.decorators import message_out
from klio_runtime.proto.klio_pb2 import KlioMessage


def to_klio_message(
    incoming_message: bytes, kconfig: Any = None, logger: Any = None
) -> KlioMessage:
    allow = bool(kconfig is not None and kconfig.job_config.allow_non_klio_messages)
    return _message.parse(incoming_message, allow_non_klio=allow)


def from_klio_message(klio_message: KlioMessage, payload: Any = None) -> Any:
    return message_out(klio_message, payload)


__all__ = ["from_klio_message", "to_klio_message"]
