"""The per-message decisions of a Klio job, as pure functions over (message, job, facts).

Nothing here does IO or mutates its arguments: functions that change a message return a
new one (a copy), because Beam forbids changing an element a DoFn received. Transforms
gather the facts (does an output exist?), call these, and act on the result.

The order is the design's: recipients (and :func:`resume_top_down`) → ping → output exists
(unless force) → input exists → run. Jobs are compared by (gcp_project, job_name), both
exactly, as Klio does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from klio_runtime.message import KlioJob, KlioJobAuditLogItem, KlioMessage, Version

__all__ = [
    "AuditStamper",
    "Decision",
    "JobRef",
    "append_audit_entry",
    "bottom_up_request",
    "decide",
    "is_recipient",
    "resume_top_down",
    "with_audit_entry",
]


@dataclass(frozen=True)
class JobRef:
    """A job's identity on the wire (``KlioJob``): its name and its GCP project."""

    job_name: str
    gcp_project: str = ""

    def __post_init__(self) -> None:
        if not self.job_name:
            raise ValueError("JobRef.job_name must not be empty")

    def to_proto(self) -> KlioJob:
        return KlioJob(job_name=self.job_name, gcp_project=self.gcp_project)

    @classmethod
    def from_proto(cls, job: KlioJob) -> JobRef:
        """The identity of a ``KlioJob`` (its deprecated ``inputs`` are not identity)."""
        return cls(job_name=job.job_name, gcp_project=job.gcp_project)


class Decision(enum.Enum):
    """What a job does with one message, before its ``run`` function."""

    PROCESS = "process"
    DROP_NOT_RECIPIENT = "drop_not_recipient"
    PASS_PING = "pass_ping"
    PASS_OUTPUT_EXISTS = "pass_output_exists"
    INPUT_MISSING = "input_missing"


def _same_job(job: JobRef, candidate: KlioJob) -> bool:
    return candidate.job_name == job.job_name and candidate.gcp_project == job.gcp_project


def _listed(job: JobRef, jobs: Iterable[KlioJob]) -> bool:
    return any(_same_job(job, candidate) for candidate in jobs)


_V2: Version = Version.V2  # once: the enum wrapper's attribute access is a slow __getattr__


def is_recipient(msg: KlioMessage, job: JobRef) -> bool:
    """Whether ``job`` should handle ``msg``, as Klio decides.

    V2: ``anyone`` → yes; ``limited`` → only if listed; no ``intended_recipients`` at all
    → no (Klio drops such a V2 message with a warning). Other versions follow V1 rules:
    yes if ``metadata.downstream`` is empty (top-down) or lists the job.
    """
    if msg.version == _V2:
        recipients = msg.metadata.intended_recipients
        kind = recipients.WhichOneof("recipients")
        if kind == "anyone":
            return True
        if kind == "limited":
            return _listed(job, recipients.limited.recipients)
        return False
    downstream = msg.metadata.downstream
    return not downstream or _listed(job, downstream)


def decide(
    msg: KlioMessage,
    job: JobRef,
    *,
    outputs_exist: bool | None,
    inputs_exist: bool | None,
    ping: bool = False,
    force: bool = False,
) -> Decision:
    """The design's per-message decision, in order.

    ``outputs_exist``/``inputs_exist`` are None when that check is skipped. ``ping`` and
    ``force`` are the job config's defaults: the message's own flag wins when set, as in
    Klio (``msg.ping or config ping``).
    """
    if not is_recipient(msg, job):
        return Decision.DROP_NOT_RECIPIENT
    if msg.metadata.ping or ping:
        return Decision.PASS_PING
    if outputs_exist and not (msg.metadata.force or force):
        return Decision.PASS_OUTPUT_EXISTS
    if inputs_exist is False:
        return Decision.INPUT_MISSING
    return Decision.PROCESS


def with_audit_entry(msg: KlioMessage, job: JobRef, now: datetime) -> KlioMessage:
    """A copy of ``msg`` with (``now``, ``job``) appended to its audit log.

    Raises:
        ValueError: ``now`` has no time zone (it would be ambiguous on the wire).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("with_audit_entry: now must be timezone-aware (e.g. datetime.now(UTC))")
    out = _copy(msg)
    item = KlioJobAuditLogItem(klio_job=job.to_proto())
    item.timestamp.FromDatetime(now)
    out.metadata.job_audit_log.append(item)
    return out


def append_audit_entry(msg: KlioMessage, job: KlioJob, now_ns: int) -> None:
    """Append (``now_ns``, ``job``) to the audit log of ``msg`` IN PLACE.

    For a step that owns the message it just parsed (no copy needed); ``now_ns`` is
    nanoseconds since the epoch (``time.time_ns()``), the wire's own resolution.
    """
    item = msg.metadata.job_audit_log.add()
    item.klio_job.CopyFrom(job)
    item.timestamp.FromNanoseconds(now_ns)


class AuditStamper:
    """:func:`append_audit_entry` for one job, at a fraction of its cost per message, to the
    millisecond.

    The entry is kept as a serialized message holding only it, made again when the millisecond
    changes; merging those bytes into a message appends the entry (merging appends to repeated
    fields, and nothing else is set). Millisecond timestamps say when a job saw a message as
    well as finer ones, and let the messages of one millisecond share the bytes. Not for
    concurrent use: a Beam DoFn instance is called by one thread at a time.
    """

    def __init__(self, job: KlioJob) -> None:
        self._template = KlioMessage()
        item = self._template.metadata.job_audit_log.add()
        item.klio_job.CopyFrom(job)
        self._timestamp = item.timestamp
        self._millisecond = -1
        self._entry = b""

    def __call__(self, msg: KlioMessage, now_ns: int) -> None:
        millisecond = now_ns // 1_000_000
        if millisecond != self._millisecond:
            seconds, millis = divmod(millisecond, 1000)
            self._timestamp.seconds = seconds
            self._timestamp.nanos = millis * 1_000_000
            self._entry = self._template.SerializeToString()
            self._millisecond = millisecond
        msg.MergeFromString(self._entry)


def bottom_up_request(msg: KlioMessage, job: JobRef, parent: JobRef) -> KlioMessage:
    """The V2 message ``job`` publishes to ``parent`` when its input is missing.

    Recipients become ``limited``: the message's recipients plus ``parent`` (so every job
    waiting down the chain still hears the answer). If the original was top-down
    (``anyone``, or a V1 message with empty ``downstream``), ``job`` is listed too and
    ``trigger_children_of`` = ``job`` so the DAG continues downward after it; otherwise
    ``trigger_children_of`` is kept as it was (usually unset: only the requested chain
    runs). V1 requests are upgraded to V2 (``downstream`` becomes the limited recipients,
    then is cleared), since V1 cannot say ``trigger_children_of``. The audit log, flags and
    element are kept; the payload is cleared, as Klio's ``KlioTriggerUpstream`` clears it (it is
    this job's input, not what the parent's own parents give it).
    """
    out = _copy(msg)
    if out.version != Version.V2:
        _v1_routing_to_v2(out)
    out.data.payload = b""
    intended = out.metadata.intended_recipients
    if intended.WhichOneof("recipients") != "limited":
        intended.limited.SetInParent()
        intended.limited.trigger_children_of.CopyFrom(job.to_proto())
    limited = intended.limited
    if not _listed(job, limited.recipients):
        limited.recipients.append(job.to_proto())
    if not _listed(parent, limited.recipients):
        limited.recipients.append(parent.to_proto())
    return out


def trigger_upstream_request(msg: KlioMessage, job: JobRef, parent: JobRef) -> KlioMessage:
    """A copy of ``msg`` as Klio's ``KlioTriggerUpstream`` sends it to ``parent``: recipients
    ``limited``, with ``parent`` then ``job`` appended to those it had, and
    ``trigger_children_of`` = ``job`` (so the DAG continues downward after ``job``); a V2
    message's payload cleared.

    Unlike :func:`bottom_up_request` (what the runtime sends by itself), this is Klio's rule
    for the transform, byte for byte: nothing is de-duplicated, and a bottom-up message also
    becomes top-down below ``job``.
    """
    out = _copy(msg)
    if out.version == Version.V2:
        out.data.payload = b""  # Klio serializes it with from_klio_message(kmsg): no payload
    limited = out.metadata.intended_recipients.limited  # switches the oneof to limited
    limited.recipients.append(parent.to_proto())
    limited.recipients.append(job.to_proto())
    limited.trigger_children_of.CopyFrom(job.to_proto())
    return out


def resume_top_down(msg: KlioMessage, job: JobRef) -> KlioMessage:
    """A copy of ``msg`` as ``job`` handles it: if ``job`` is the limited recipients'
    ``trigger_children_of``, the bottom-up request has come back to the job that first asked for
    it, so recipients become ``anyone`` and the DAG below runs top-down again.

    Klio applies this when the message is received (its ``KlioCheckRecipients``), before the
    audit log, ping and existence checks, so ``run`` already sees the changed message.
    Everything else (including V1 ``downstream`` routing) is kept.
    """
    out = _copy(msg)
    intended = out.metadata.intended_recipients
    if (
        out.version == Version.V2
        and intended.WhichOneof("recipients") == "limited"
        and intended.limited.HasField("trigger_children_of")
        and _same_job(job, intended.limited.trigger_children_of)
    ):
        intended.anyone.SetInParent()
    return out


def _v1_routing_to_v2(msg: KlioMessage) -> None:
    downstream = list(msg.metadata.downstream)
    del msg.metadata.downstream[:]
    msg.version = Version.V2
    if downstream:
        msg.metadata.intended_recipients.limited.recipients.extend(downstream)
    else:
        msg.metadata.intended_recipients.anyone.SetInParent()
    if not msg.data.element and msg.data.entity_id:
        msg.data.element = msg.data.entity_id.encode("utf-8")


def _copy(msg: KlioMessage) -> KlioMessage:
    out = KlioMessage()
    out.CopyFrom(msg)
    return out
