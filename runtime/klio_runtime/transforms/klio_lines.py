"""Klio's log lines for its built-in steps and helper transforms, word for word: jobs' tests and
people's log searches look for them. The built-in router and the helpers both log through these.

Elements are shown as Klio shows them: decoded in the ping and force lines, as the ``bytes`` repr in
the drop line.
"""

from __future__ import annotations

import logging
from typing import Any

from klio_runtime import message as kmessage


def data_checked(direction: str, found: bool, path: str) -> str:
    """``Input found at …`` / ``Output not found at …`` (INFO)."""
    return f"{direction.title()} {'found' if found else 'not found'} at {path}"


def ping_passes(element: str) -> str:
    """A ping skips the job's work (INFO)."""
    return f"Pass through '{element}': Ping mode ON."


def ping_off(element: str) -> str:
    """Not a ping: processed (DEBUG)."""
    return f"Process '{element}': Ping mode OFF."


def output_exists_passes(element: str, path: str) -> str:
    """The output exists and the message is not forced (INFO)."""
    return f"Pass through '{element}': Force mode OFF with output found at '{path}'."


def output_exists_forced(element: str, path: str) -> str:
    """The output exists but the message is forced (INFO)."""
    return f"Process '{element}': Force mode ON with output found at '{path}'."


def dropping(element: bytes) -> str:
    """KlioDrop's line, and the built-in flow's for a message whose input is missing (INFO)."""
    return f"Dropping KlioMessage - can not process '{element!r}' any further."


def not_recipient(msg: kmessage.KlioMessage) -> tuple[int, str] | None:
    """Klio's line for a message this job is not meant to handle, and its level: a V1 message
    downstream of other jobs (INFO), a V2 message naming no recipients at all (WARNING); a V2
    message for other jobs has none. KlioDrop's :func:`dropping` line follows each."""
    if msg.version != kmessage.V2:
        return logging.INFO, (
            "Dropping KlioMessage - job not an intended recipient for message with entity_id "
            f"{msg.data.entity_id}."
        )
    if msg.metadata.intended_recipients.WhichOneof("recipients") is None:
        return logging.WARNING, (
            "Dropping KlioMessage - No 'intended_recipients' set in metadata of KlioMessage "
            f"with element '{msg.data.element!r}'."
        )
    return None


CANNOT_PARSE = (
    "Can not parse incoming message. To support non-Klio messages, add "
    "`job_config.allow_non_klio_messages = true` in the job's `klio-job.yaml` file."
)
"""Klio's line for bytes from an event input that are not a KlioMessage (ERROR)."""


def exception_dropped(where: str, message: Any, err: BaseException, traceback_text: str) -> str:
    """A decorated step's line for an exception in the job's code (ERROR): the message as its
    protobuf text, as Klio shows it."""
    more = f"\n{traceback_text}" if traceback_text else ""
    return (
        f"Dropping KlioMessage - exception occurred when calling '{where}' with '{message}'.\n"
        f"Error: {err}{more}"
    )


def parse_dropped(incoming: Any, err: BaseException) -> str:
    """A decorated step's line for what it was given and cannot read as a KlioMessage (ERROR),
    after :data:`CANNOT_PARSE` for bytes that are not one."""
    return (
        f"Dropping KlioMessage - exception occurred when serializing '{incoming}' from bytes to "
        f"a KlioMessage.\nError: {err}"
    )


def payload_dropped(message: Any, err: BaseException) -> str:
    """A decorated step's line for a returned value that cannot be a payload (ERROR)."""
    return (
        f"Dropping KlioMessage - exception occurred when deserializing '{message}' from a "
        f"KlioMessage to bytes.\nError: {err}"
    )


def audit_log(msg: kmessage.KlioMessage) -> str:
    """The message's audit log after this job's entry (DEBUG)."""
    path = " -> ".join(
        f"{entry.klio_job.gcp_project}::{entry.klio_job.job_name}"
        for entry in msg.metadata.job_audit_log
    )
    return (
        f"KlioMessage full audit log - Entity ID: {msg.data.entity_id} - Path: {path} (current job)"
    )
