"""Pub/Sub for the worker: synchronous pull, publish-and-wait, ack, and lease extension.

Synchronous pull (not streaming pull) because the worker decides when a message is done: it
acknowledges only after the outputs are published. The emulator's streaming pull also tops out
near 2,000 msgs/s while plain pull reaches ~50,000 (components.md). Clients find the emulator
through ``PUBSUB_EMULATOR_HOST`` by themselves.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import grpc
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

_PATH_KINDS = {"topics", "subscriptions"}
# Pub/Sub caps one acknowledge / modifyAckDeadline request at a few thousand ids (and 512 KB).
_ACK_CHUNK = 1000
_EMPTY_PULL_ERRORS = (api_exceptions.DeadlineExceeded, api_exceptions.RetryError)
# How long an acknowledge or lease call is retried while Pub/Sub is unavailable. The client's
# own default is 60 s, in which the worker's loop stands still and an outage goes unreported;
# an unacknowledged message only comes back after its ack deadline (at-least-once).
LEASE_CALL_RETRY_SECONDS = 10.0


def resource_path(name: str, kind: str, project: str | None) -> str:
    """``projects/<p>/<kind>/<id>`` for a full path or a bare id (then ``project`` is needed).

    Raises ValueError naming what is missing: a bare id without a project, or a path of the
    wrong kind (a topic given where a subscription is expected).
    """
    if kind not in _PATH_KINDS:
        raise ValueError(f"kind must be one of {sorted(_PATH_KINDS)}, not {kind!r}")
    if name.startswith("projects/"):
        parts = name.split("/")
        if len(parts) != 4 or parts[2] != kind or not parts[1] or not parts[3]:
            raise ValueError(
                f"{name!r} is not a Pub/Sub {kind[:-1]} path (projects/<project>/{kind}/<id>)"
            )
        return name
    if not name:
        raise ValueError(f"empty Pub/Sub {kind[:-1]} name")
    if not project:
        raise ValueError(
            f"{kind[:-1]} {name!r} has no project: give a full path "
            "(projects/<project>/...) or set pipeline_options.project / "
            "KLIO_PUBSUB_PROJECT"
        )
    return f"projects/{project}/{kind}/{name}"


@dataclass(frozen=True)
class Pulled:
    """One pulled message: where it came from, its ack id, bytes and attributes."""

    subscription: str
    ack_id: str
    data: bytes
    attributes: Mapping[str, str]
    message_id: str = ""

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(k) + len(v) for k, v in self.attributes.items())


def _outcome(future: futures.Future[str], timeout: float) -> BaseException | None:
    if future.cancelled():
        return futures.CancelledError("publish cancelled")
    if not future.done():
        return TimeoutError(f"publish not confirmed within {timeout}s")
    return future.exception(timeout=0)


def subscriber_client() -> pubsub_v1.SubscriberClient:
    """The subscriber client; on the emulator, over a channel without gRPC's 4 MiB receive limit.

    The client library's emulator channel keeps that limit (its channel to Pub/Sub has none), so
    one message, or one pull, of more failed every time and stalled the subscription behind it.
    """
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return pubsub_v1.SubscriberClient()
    channel = grpc.insecure_channel(
        host,
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


class PubSubClient:
    """The worker's one subscriber and one publisher, with the calls it needs."""

    def __init__(
        self,
        publisher: Any | None = None,
        subscriber: Any | None = None,
        lease_call_retry_seconds: float = LEASE_CALL_RETRY_SECONDS,
    ) -> None:
        self.publisher = publisher or pubsub_v1.PublisherClient()
        self.subscriber = subscriber or subscriber_client()
        self._lease_call = {
            "retry": api_retry.Retry(
                initial=0.1,
                maximum=2.0,
                multiplier=1.3,
                predicate=api_retry.if_exception_type(api_exceptions.ServiceUnavailable),
                timeout=lease_call_retry_seconds,
            ),
            "timeout": lease_call_retry_seconds,
        }

    def ack_deadline_of(self, subscription: str) -> int:
        """The subscription's ack deadline in seconds.

        Raises google.api_core.exceptions.NotFound if the subscription does not exist. One try:
        the caller retries (the client's own retries would hide an outage for a minute).
        """
        found = self.subscriber.get_subscription(
            request={"subscription": subscription}, timeout=10, retry=None
        )
        return int(found.ack_deadline_seconds or 10)

    def pull(
        self, subscription: str, max_messages: int, wait: bool, timeout: float = 1.0
    ) -> list[Pulled]:
        """Up to ``max_messages``; ``wait`` lets the server hold the call until some arrive."""
        request = {"subscription": subscription, "max_messages": max_messages}
        if not wait:
            request["return_immediately"] = True
        try:
            with warnings.catch_warnings():
                # Deprecated, yet the only way to top up a batch without a server-side wait.
                warnings.filterwarnings("ignore", "The return_immediately flag", DeprecationWarning)
                response = self.subscriber.pull(request=request, timeout=timeout, retry=None)
        except _EMPTY_PULL_ERRORS:
            return []
        return [
            Pulled(
                subscription,
                received.ack_id,
                bytes(received.message.data),
                dict(received.message.attributes),
                received.message.message_id,
            )
            for received in response.received_messages
        ]

    def topic_exists(self, topic: str) -> bool:
        try:
            self.publisher.get_topic(request={"topic": topic})
        except api_exceptions.NotFound:
            return False
        return True

    def publish_nowait(self, messages: Iterable[tuple[str, bytes, Mapping[str, str]]]
                       ) -> list[futures.Future[str]]:
        """Send every message; the futures to wait on (all sent before any is awaited: awaiting
        one at a time waits out each batch window). A message the client refuses before sending
        (over Pub/Sub's 10 MB: MessageTooLargeError) gets a failed future, as one Pub/Sub refuses:
        the others are sent all the same."""
        sent: list[futures.Future[str]] = []
        for topic, data, attributes in messages:
            try:
                sent.append(self.publisher.publish(topic, data, **dict(attributes)))
            except Exception as err:
                refused: futures.Future[str] = futures.Future()
                refused.set_exception(err)
                sent.append(refused)
        return sent

    def publish_outcomes(self, pending: Sequence[futures.Future[str]],
                         timeout: float = 60.0) -> list[BaseException | None]:
        """Per publish, once each is settled or ``timeout`` has passed: None if confirmed, else
        its error (TimeoutError if not confirmed in time)."""
        if not pending:
            return []
        futures.wait(pending, timeout=timeout)
        return [_outcome(future, timeout) for future in pending]

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for start in range(0, len(ack_ids), _ACK_CHUNK):
            self.subscriber.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": list(ack_ids[start : start + _ACK_CHUNK]),
                },
                **self._lease_call,
            )

    def modify_ack_deadline(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        """``seconds`` 0 hands the messages back for redelivery at once."""
        for start in range(0, len(ack_ids), _ACK_CHUNK):
            self.subscriber.modify_ack_deadline(
                request={
                    "subscription": subscription,
                    "ack_ids": list(ack_ids[start : start + _ACK_CHUNK]),
                    "ack_deadline_seconds": seconds,
                },
                **self._lease_call,
            )

    def close(self) -> None:
        self.subscriber.close()
        transport = getattr(self.publisher, "transport", None)
        if transport is not None:
            transport.close()


@dataclass
class LeaseKeeper:
    """Extends the ack deadline of in-flight messages while a long batch runs.

    Every ``every`` seconds, each held ack id gets ``deadline`` more seconds. Without it, a batch
    longer than the subscription's ack deadline would be redelivered to another worker while
    this one still works on it.
    """

    client: PubSubClient
    deadline: int = 60
    every: float = 20.0
    _held: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    extensions: int = 0
    failures: int = 0
    """Extensions that failed (retried the next round)."""

    def hold(self, pulled: Iterable[Pulled]) -> None:
        with self._lock:
            for message in pulled:
                self._held.setdefault(message.subscription, []).append(message.ack_id)

    def release(self, pulled: Iterable[Pulled]) -> None:
        """Stop extending these (acknowledged or handed back)."""
        done = {(m.subscription, m.ack_id) for m in pulled}
        with self._lock:
            self._held = {sub: kept for sub, ids in self._held.items()
                          if (kept := [i for i in ids if (sub, i) not in done])}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="klio-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def extend_now(self) -> None:
        with self._lock:
            held = {sub: list(ids) for sub, ids in self._held.items()}
        for subscription, ack_ids in held.items():
            try:
                self.client.modify_ack_deadline(subscription, ack_ids, self.deadline)
                self.extensions += 1
            except api_exceptions.GoogleAPIError:
                # Next round retries; at worst the messages are redelivered (at-least-once).
                # GoogleAPIError, not only call errors: a RetryError (Pub/Sub unreachable past
                # the client's own retries) would end this thread, and every later extension.
                self.failures += 1

    def _loop(self) -> None:
        next_at = time.monotonic() + self.every
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.extend_now()
            next_at = time.monotonic() + self.every
