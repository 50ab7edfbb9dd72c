"""The worker's knobs and the names it shares with the operator (no heavy imports: the CLI
reads these to build its options)."""

from __future__ import annotations

from dataclasses import dataclass

# Environment the operator sets (klio_operator.worker_contract; repeated, as the runtime must
# not import the operator).
ENV_DEAD_LETTER_TOPIC = "KLIO_DEAD_LETTER_TOPIC"
ENV_PUBSUB_PROJECT = "KLIO_PUBSUB_PROJECT"
DEAD_LETTER_KEY = "dead_letter_topic"  # job_config custom key; the env var wins when set


@dataclass(frozen=True)
class WorkerSettings:
    """Bounds and timings of the loop (flags/env of ``klio worker``)."""

    max_messages: int = 100  # per batch
    # a batch holds what runs in about this long at the job's pace (0: always max_messages)
    target_batch_seconds: float = 20.0
    max_wait_ms: int = 200  # gather more messages for at most this long after the first
    max_batch_bytes: int = 16 * 1024 * 1024  # data + attributes held per batch
    ack_deadline_seconds: int = 60  # each lease extension grants this much
    lease_every_seconds: float = 20.0
    pending_ttl_seconds: float = 300.0  # a bottom-up request is not repeated within this
    publish_timeout_seconds: float = 60.0
    redelivery_delay_seconds: int = 10  # a message handed back after a failure returns after this

    def __post_init__(self) -> None:
        if not 0 <= self.redelivery_delay_seconds <= 600:  # Pub/Sub's ack deadline range
            raise ValueError(
                f"redelivery_delay_seconds must be 0 to 600, not {self.redelivery_delay_seconds}"
            )
        for name in ("max_messages", "max_batch_bytes", "ack_deadline_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.target_batch_seconds < 0:
            raise ValueError(
                f"target_batch_seconds must be >= 0, not {self.target_batch_seconds}"
            )
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, not {self.max_wait_ms}")
        if not 0 < self.lease_every_seconds < self.ack_deadline_seconds:
            raise ValueError("lease_every_seconds must be > 0 and < ack_deadline_seconds")
