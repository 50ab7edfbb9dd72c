"""Klio's ``klio.message.serializer``: bytes ⇄ KlioMessage with Klio's payload rules."""

import logging
from typing import Any

from google.protobuf.message import DecodeError
from klio_runtime import message as _message
from klio_runtime.decorators import message_out
from klio_runtime.proto.klio_pb2 import KlioMessage


def to_klio_message(
    incoming_message: bytes, kconfig: Any = None, logger: Any = None
) -> KlioMessage:
    """Klio's: whatever protobuf parses, upgraded from v1; bytes that do not parse become the
    element of a new message when ``allow_non_klio_messages`` is set, else are logged (on
    ``logger``) and raise protobuf's ``DecodeError``. (The runtime's own reader is stricter.)"""
    allow = bool(kconfig is not None and kconfig.job_config.allow_non_klio_messages)
    msg = KlioMessage()
    try:
        msg.ParseFromString(incoming_message)
    except DecodeError:
        if not allow:
            (logger or logging.getLogger("klio")).error(
                "Can not parse incoming message. To support non-Klio messages, add "
                "`job_config.allow_non_klio_messages = true` in the job's `klio-job.yaml` file."
            )
            raise
        msg = KlioMessage(version=_message.V2)
        msg.data.element = bytes(incoming_message)
        msg.metadata.intended_recipients.anyone.SetInParent()
    return _message.upgrade(msg)


def from_klio_message(klio_message: KlioMessage, payload: Any = None) -> Any:
    return message_out(klio_message, payload)


__all__ = ["from_klio_message", "to_klio_message"]
