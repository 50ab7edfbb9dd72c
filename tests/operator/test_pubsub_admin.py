"""Topic / subscription admin against Google's real Pub/Sub emulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from google.api_core import exceptions as gexc
from klio_operator.planning import PubSubPlan, SubscriptionPlan, TopicPlan
from klio_operator.pubsub_admin import AsyncPubSubAdmin, PubSubAdminError

from tests.emulators.pubsub import free_port
from tests.operator.harness import emulator_subscription, pubsub_inspector

P = "projects/klio-local"


@pytest.fixture
async def admin(pubsub_clean: str) -> AsyncIterator[AsyncPubSubAdmin]:
    admin = AsyncPubSubAdmin(timeout=10)
    yield admin
    await admin.close()


async def subscription_exists(name: str) -> bool:
    try:
        await emulator_subscription(name)
    except gexc.NotFound:
        return False
    return True


async def topic_exists(name: str) -> bool:
    async with pubsub_inspector() as (publisher, _):
        try:
            await publisher.get_topic(topic=name)
        except gexc.NotFound:
            return False
    return True


async def test_ensure_topic_and_subscription_are_idempotent(admin: AsyncPubSubAdmin) -> None:
    plan = PubSubPlan(
        topics=(TopicPlan(f"{P}/topics/out"), TopicPlan(f"{P}/topics/dead")),
        subscriptions=(
            SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/out", f"{P}/topics/dead"),
        ),
    )
    await admin.apply(plan)
    await admin.apply(plan)  # again: nothing fails, nothing doubles
    assert await admin.ensure_topic(f"{P}/topics/out") is False
    sub = await emulator_subscription(f"{P}/subscriptions/sub-in")
    assert sub.topic == f"{P}/topics/out"
    assert sub.dead_letter_policy.dead_letter_topic == f"{P}/topics/dead"
    assert sub.dead_letter_policy.max_delivery_attempts == 5


async def test_existing_subscription_gets_the_dead_letter_policy(admin: AsyncPubSubAdmin) -> None:
    await admin.ensure_topic(f"{P}/topics/out")
    await admin.ensure_topic(f"{P}/topics/dead")
    bare = SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/out", None)
    assert await admin.ensure_subscription(bare) is True
    with_policy = SubscriptionPlan(
        f"{P}/subscriptions/sub-in", f"{P}/topics/out", f"{P}/topics/dead", 7
    )
    assert await admin.ensure_subscription(with_policy) is False
    sub = await emulator_subscription(f"{P}/subscriptions/sub-in")
    assert sub.dead_letter_policy.dead_letter_topic == f"{P}/topics/dead"
    assert sub.dead_letter_policy.max_delivery_attempts == 7


async def test_delete_is_idempotent(admin: AsyncPubSubAdmin) -> None:
    await admin.ensure_topic(f"{P}/topics/out")
    await admin.ensure_subscription(
        SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/out", None)
    )
    await admin.remove([f"{P}/subscriptions/sub-in"], [f"{P}/topics/out"])
    await admin.remove([f"{P}/subscriptions/sub-in"], [f"{P}/topics/out"])
    assert not await topic_exists(f"{P}/topics/out")
    assert not await subscription_exists(f"{P}/subscriptions/sub-in")


async def test_a_parents_topic_is_created_when_the_parent_has_not_yet(
    admin: AsyncPubSubAdmin,
) -> None:
    parent_topic = f"{P}/topics/parent-out"
    plan = PubSubPlan(
        topics=(TopicPlan(f"{P}/topics/child-out"),),
        subscriptions=(
            SubscriptionPlan(f"{P}/subscriptions/child-from-parent", parent_topic, None),
        ),
        parent_topics=(TopicPlan(parent_topic),),
    )
    await admin.apply(plan)
    assert await topic_exists(parent_topic)
    assert await subscription_exists(f"{P}/subscriptions/child-from-parent")


async def test_async_admin_applies_a_plan_concurrently_and_idempotently(pubsub_clean: str) -> None:
    admin = AsyncPubSubAdmin(timeout=10)
    parent_topic = f"{P}/topics/parent-out"
    plan = PubSubPlan(
        topics=(TopicPlan(f"{P}/topics/out"), TopicPlan(f"{P}/topics/dead")),
        subscriptions=(
            SubscriptionPlan(f"{P}/subscriptions/from-parent", parent_topic, f"{P}/topics/dead"),
            SubscriptionPlan(f"{P}/subscriptions/own", f"{P}/topics/out", f"{P}/topics/dead", 7),
        ),
        parent_topics=(TopicPlan(parent_topic),),
    )
    try:
        await admin.apply(plan)
        await admin.apply(plan)  # again: nothing fails, nothing doubles
        assert await admin.ensure_topic(parent_topic) is False
        own = await emulator_subscription(f"{P}/subscriptions/own")
        assert own.topic == f"{P}/topics/out"
        assert own.dead_letter_policy.dead_letter_topic == f"{P}/topics/dead"
        assert own.dead_letter_policy.max_delivery_attempts == 7
        subscriptions = [s.name for s in plan.subscriptions]
        topics = [t.name for t in (*plan.topics, *plan.parent_topics)]
        await admin.remove(subscriptions, topics)
        await admin.remove(subscriptions, topics)  # absent ones are skipped
        assert await admin.ensure_topic(f"{P}/topics/out") is True  # it was gone
    finally:
        await admin.close()


async def test_async_admin_failures_name_the_resource_after_every_call_ends(
    pubsub_clean: str,
) -> None:
    admin = AsyncPubSubAdmin(timeout=10)
    plan = PubSubPlan(
        topics=(TopicPlan("bad"), TopicPlan(f"{P}/topics/fine")),
        subscriptions=(),
    )
    try:
        with pytest.raises(PubSubAdminError, match="create topic bad"):
            await admin.apply(plan)
        # The good call beside the failed one still finished.
        assert await admin.ensure_topic(f"{P}/topics/fine") is False
        missing_topic = SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/absent", None)
        with pytest.raises(PubSubAdminError, match=r"create subscription .*sub-in"):
            await admin.ensure_subscription(missing_topic)
    finally:
        await admin.close()


async def test_existing_lists_every_page(admin: AsyncPubSubAdmin) -> None:
    admin.page_size = 20  # so the listing must follow next_page_token
    topics = {f"{P}/topics/many-{index:02d}" for index in range(45)}
    for topic in topics:
        await admin.ensure_topic(topic)
    subscription = SubscriptionPlan(f"{P}/subscriptions/one", f"{P}/topics/many-00", None)
    await admin.ensure_subscription(subscription)
    found_topics, found_subscriptions = await admin.existing(["klio-local"])
    assert found_topics == topics
    assert found_subscriptions == {subscription.name}


async def test_an_unreachable_service_is_retried_then_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    delays = (0.2, 0.3)
    admin = AsyncPubSubAdmin(timeout=5, retry_delays=delays)
    started = time.monotonic()
    try:
        with pytest.raises(PubSubAdminError, match=f"create topic {P}/topics/out: 503"):
            await admin.ensure_topic(f"{P}/topics/out")
    finally:
        await admin.close()
    assert time.monotonic() - started >= sum(delays)  # it waited out every retry
