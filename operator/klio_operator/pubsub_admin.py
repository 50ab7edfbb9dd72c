"""Idempotent creation and deletion of a job's Pub/Sub topics and subscriptions.

Uses google-cloud-pubsub's admin clients (PUBSUB_EMULATOR_HOST makes them talk to the
emulator). Every call is safe to repeat: "already exists" and "not found" are outcomes, not
errors; any other API failure is raised as PubSubAdminError naming the resource.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc
from google.protobuf import field_mask_pb2

from klio_operator.planning import PubSubPlan, SubscriptionPlan


class PubSubAdminError(RuntimeError):
    """A Pub/Sub admin call failed for a reason other than exists / not found."""


class PubSubAdmin:
    """Ensure / delete topics and subscriptions. Blocking calls: run them in a thread."""

    def __init__(
        self,
        publisher: pubsub_v1.PublisherClient | None = None,
        subscriber: pubsub_v1.SubscriberClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._publisher = publisher
        self._subscriber = subscriber
        self.timeout = timeout

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self._publisher is None:
            self._publisher = pubsub_v1.PublisherClient()
        return self._publisher

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        if self._subscriber is None:
            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()

    def _call(
        self,
        what: str,
        fn: Any,
        request: dict[str, Any],
        expected: tuple[type[Exception], ...] = (),
    ) -> Any:
        """Call the API; `expected` errors pass through, others become PubSubAdminError."""
        try:
            return fn(request=request, timeout=self.timeout)
        except expected:
            raise
        except gexc.GoogleAPIError as exc:
            raise PubSubAdminError(f"{what}: {exc}") from exc

    def ensure_topic(self, name: str) -> bool:
        """Create the topic unless it exists; True if created."""
        try:
            self._call(
                f"create topic {name}",
                self.publisher.create_topic,
                {"name": name},
                (gexc.AlreadyExists,),
            )
            return True
        except gexc.AlreadyExists:
            return False

    def ensure_subscription(self, plan: SubscriptionPlan, create_topic: bool = False) -> bool:
        """Create the subscription, or bring its dead-letter policy in line; True if created.

        With `create_topic`, a missing topic is created first (a parent's output topic the
        parent has not made yet).
        """
        request: dict[str, Any] = {
            "name": plan.name,
            "topic": plan.topic,
            "ack_deadline_seconds": plan.ack_deadline_seconds,
        }
        if plan.dead_letter_topic:
            request["dead_letter_policy"] = {
                "dead_letter_topic": plan.dead_letter_topic,
                "max_delivery_attempts": plan.max_delivery_attempts,
            }
        expected: tuple[type[Exception], ...] = (gexc.AlreadyExists,)
        try:
            self._call(
                f"create subscription {plan.name}",
                self.subscriber.create_subscription,
                request,
                (*expected, gexc.NotFound) if create_topic else expected,
            )
            return True
        except gexc.AlreadyExists:
            pass
        except gexc.NotFound:
            self.ensure_topic(plan.topic)
            return self.ensure_subscription(plan)
        current = self._call(
            f"get subscription {plan.name}",
            self.subscriber.get_subscription,
            {"subscription": plan.name},
        )
        if current.topic != plan.topic:
            # A subscription's topic cannot change (the parent moved, or its topic was deleted
            # and made again): replace it. Its backlog came from a topic the job no longer reads.
            self.delete_subscription(plan.name)
            return self.ensure_subscription(plan, create_topic)
        policy = current.dead_letter_policy
        wanted_topic = plan.dead_letter_topic or ""
        if policy.dead_letter_topic != wanted_topic or (
            wanted_topic and policy.max_delivery_attempts != plan.max_delivery_attempts
        ):
            self._call(
                f"update subscription {plan.name}",
                self.subscriber.update_subscription,
                {
                    "subscription": {
                        "name": plan.name,
                        "dead_letter_policy": request.get("dead_letter_policy"),
                    },
                    "update_mask": field_mask_pb2.FieldMask(paths=["dead_letter_policy"]),
                },
            )
        return False

    def delete_subscription(self, name: str) -> bool:
        """Delete the subscription if present; True if deleted."""
        try:
            self._call(
                f"delete subscription {name}",
                self.subscriber.delete_subscription,
                {"subscription": name},
                (gexc.NotFound,),
            )
            return True
        except gexc.NotFound:
            return False

    def delete_topic(self, name: str) -> bool:
        """Delete the topic if present; True if deleted."""
        try:
            self._call(
                f"delete topic {name}",
                self.publisher.delete_topic,
                {"topic": name},
                (gexc.NotFound,),
            )
            return True
        except gexc.NotFound:
            return False

    def apply(self, plan: PubSubPlan) -> None:
        """Topics first (subscriptions and dead-letter policies refer to them)."""
        for topic in plan.topics:
            self.ensure_topic(topic.name)
        parent_topics = {topic.name for topic in plan.parent_topics}
        for subscription in plan.subscriptions:
            self.ensure_subscription(subscription, create_topic=subscription.topic in parent_topics)

    def remove(self, subscriptions: Iterable[str], topics: Iterable[str]) -> None:
        """Subscriptions first, then topics; absent ones are skipped."""
        for name in subscriptions:
            self.delete_subscription(name)
        for name in topics:
            self.delete_topic(name)

    def topic_exists(self, name: str) -> bool:
        try:
            self._call(
                f"get topic {name}", self.publisher.get_topic, {"topic": name}, (gexc.NotFound,)
            )
            return True
        except gexc.NotFound:
            return False

    def subscription_exists(self, name: str) -> bool:
        try:
            self._call(
                f"get subscription {name}",
                self.subscriber.get_subscription,
                {"subscription": name},
                (gexc.NotFound,),
            )
            return True
        except gexc.NotFound:
            return False
