"""Idempotent creation and deletion of a job's Pub/Sub topics and subscriptions.

Uses google-cloud-pubsub's admin clients (PUBSUB_EMULATOR_HOST makes them talk to the
emulator). Every call is safe to repeat: "already exists" and "not found" are outcomes, not
errors; any other API failure is raised as PubSubAdminError naming the resource.

`AsyncPubSubAdmin` runs its asyncio clients on kopf's loop over one shared gRPC channel, and
creates a job's topics (then its subscriptions) concurrently. Scripts and tests use it through
``asyncio.run``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.protobuf import field_mask_pb2
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

from klio_operator.planning import PubSubPlan, SubscriptionPlan
from klio_operator.together import all_of


class PubSubAdminError(RuntimeError):
    """A Pub/Sub admin call failed for a reason other than exists / not found."""


def subscription_request(plan: SubscriptionPlan) -> dict[str, Any]:
    """The CreateSubscription request of a planned subscription."""
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
    return request


def dead_letter_update(current: Any, plan: SubscriptionPlan) -> dict[str, Any] | None:
    """The UpdateSubscription request that brings `current`'s dead-letter policy in line."""
    policy = current.dead_letter_policy
    wanted_topic = plan.dead_letter_topic or ""
    if policy.dead_letter_topic == wanted_topic and (
        not wanted_topic or policy.max_delivery_attempts == plan.max_delivery_attempts
    ):
        return None
    return {
        "subscription": {
            "name": plan.name,
            "dead_letter_policy": subscription_request(plan).get("dead_letter_policy"),
        },
        "update_mask": field_mask_pb2.FieldMask(paths=["dead_letter_policy"]),
    }


class AsyncPubSubAdmin:
    """Pub/Sub admin on asyncio: the clients share one gRPC channel, made on first use (on the
    loop that uses it). A job's topics are created together, then its subscriptions together
    (their dead-letter policies name its topics)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._clients: tuple[PublisherAsyncClient, SubscriberAsyncClient] | None = None
        self._channel: grpc.aio.Channel | None = None

    def _connect(self) -> tuple[PublisherAsyncClient, SubscriberAsyncClient]:
        if self._clients is None:
            emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
            channel = (
                grpc.aio.insecure_channel(emulator)
                if emulator
                else PublisherGrpcAsyncIOTransport.create_channel()
            )
            self._channel = channel
            self._clients = (
                PublisherAsyncClient(transport=PublisherGrpcAsyncIOTransport(channel=channel)),
                SubscriberAsyncClient(transport=SubscriberGrpcAsyncIOTransport(channel=channel)),
            )
        return self._clients

    @property
    def publisher(self) -> PublisherAsyncClient:
        return self._connect()[0]

    @property
    def subscriber(self) -> SubscriberAsyncClient:
        return self._connect()[1]

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._clients = None

    async def _call(
        self,
        what: str,
        fn: Callable[..., Awaitable[Any]],
        request: dict[str, Any],
        expected: tuple[type[Exception], ...] = (),
    ) -> Any:
        """Call the API; `expected` errors pass through, others become PubSubAdminError."""
        try:
            return await fn(request=request, timeout=self.timeout)
        except expected:
            raise
        except gexc.GoogleAPIError as exc:
            raise PubSubAdminError(f"{what}: {exc}") from exc

    async def ensure_topic(self, name: str) -> bool:
        """Create the topic unless it exists; True if created."""
        try:
            await self._call(
                f"create topic {name}",
                self.publisher.create_topic,
                {"name": name},
                (gexc.AlreadyExists,),
            )
            return True
        except gexc.AlreadyExists:
            return False

    async def ensure_subscription(self, plan: SubscriptionPlan, create_topic: bool = False) -> bool:
        """Create the subscription, or bring its dead-letter policy in line; True if created.

        With `create_topic`, a missing topic is created first (a parent's output topic the
        parent has not made yet).
        """
        expected: tuple[type[Exception], ...] = (gexc.AlreadyExists,)
        try:
            await self._call(
                f"create subscription {plan.name}",
                self.subscriber.create_subscription,
                subscription_request(plan),
                (*expected, gexc.NotFound) if create_topic else expected,
            )
            return True
        except gexc.AlreadyExists:
            pass
        except gexc.NotFound:
            await self.ensure_topic(plan.topic)
            return await self.ensure_subscription(plan)
        current = await self._call(
            f"get subscription {plan.name}",
            self.subscriber.get_subscription,
            {"subscription": plan.name},
        )
        if current.topic != plan.topic:
            # A subscription's topic cannot change (the parent moved, or its topic was deleted
            # and made again): replace it. Its backlog came from a topic the job no longer reads.
            await self.delete_subscription(plan.name)
            return await self.ensure_subscription(plan, create_topic)
        update = dead_letter_update(current, plan)
        if update is not None:
            await self._call(
                f"update subscription {plan.name}", self.subscriber.update_subscription, update
            )
        return False

    async def delete_subscription(self, name: str) -> bool:
        """Delete the subscription if present; True if deleted."""
        try:
            await self._call(
                f"delete subscription {name}",
                self.subscriber.delete_subscription,
                {"subscription": name},
                (gexc.NotFound,),
            )
            return True
        except gexc.NotFound:
            return False

    async def delete_topic(self, name: str) -> bool:
        """Delete the topic if present; True if deleted."""
        try:
            await self._call(
                f"delete topic {name}",
                self.publisher.delete_topic,
                {"topic": name},
                (gexc.NotFound,),
            )
            return True
        except gexc.NotFound:
            return False

    async def existing(self, projects: Iterable[str]) -> tuple[set[str], set[str]]:
        """Every topic and subscription of ``projects`` (full names), by listing them."""
        topics: set[str] = set()
        subscriptions: set[str] = set()
        for project in sorted(set(projects)):
            where = f"projects/{project}"
            try:
                async for topic in await self.publisher.list_topics(
                    request={"project": where}, timeout=self.timeout
                ):
                    topics.add(topic.name)
                async for subscription in await self.subscriber.list_subscriptions(
                    request={"project": where}, timeout=self.timeout
                ):
                    subscriptions.add(subscription.name)
            except gexc.GoogleAPIError as exc:
                raise PubSubAdminError(f"list topics and subscriptions of {where}: {exc}") from exc
        return topics, subscriptions

    async def apply(self, plan: PubSubPlan) -> None:
        """Topics first (subscriptions and dead-letter policies refer to them)."""
        await all_of(self.ensure_topic(topic.name) for topic in plan.topics)
        parent_topics = {topic.name for topic in plan.parent_topics}
        await all_of(
            self.ensure_subscription(subscription, create_topic=subscription.topic in parent_topics)
            for subscription in plan.subscriptions
        )

    async def remove(self, subscriptions: Iterable[str], topics: Iterable[str]) -> None:
        """Subscriptions first, then topics; absent ones are skipped."""
        await all_of(self.delete_subscription(name) for name in subscriptions)
        await all_of(self.delete_topic(name) for name in topics)
