"""Topic / subscription admin against Google's real Pub/Sub emulator."""

from __future__ import annotations

import pytest
from klio_operator.planning import PubSubPlan, SubscriptionPlan, TopicPlan
from klio_operator.pubsub_admin import AsyncPubSubAdmin, PubSubAdmin, PubSubAdminError

P = "projects/klio-local"


@pytest.fixture
def admin(pubsub_clean: str) -> PubSubAdmin:
    return PubSubAdmin(timeout=10)


def test_ensure_topic_and_subscription_are_idempotent(admin: PubSubAdmin) -> None:
    plan = PubSubPlan(
        topics=(TopicPlan(f"{P}/topics/out"), TopicPlan(f"{P}/topics/dead")),
        subscriptions=(
            SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/out", f"{P}/topics/dead"),
        ),
    )
    admin.apply(plan)
    admin.apply(plan)  # again: nothing fails, nothing doubles
    assert admin.ensure_topic(f"{P}/topics/out") is False
    sub = admin.subscriber.get_subscription(request={"subscription": f"{P}/subscriptions/sub-in"})
    assert sub.topic == f"{P}/topics/out"
    assert sub.dead_letter_policy.dead_letter_topic == f"{P}/topics/dead"
    assert sub.dead_letter_policy.max_delivery_attempts == 5


def test_existing_subscription_gets_the_dead_letter_policy(admin: PubSubAdmin) -> None:
    admin.ensure_topic(f"{P}/topics/out")
    admin.ensure_topic(f"{P}/topics/dead")
    bare = SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/out", None)
    assert admin.ensure_subscription(bare) is True
    with_policy = SubscriptionPlan(
        f"{P}/subscriptions/sub-in", f"{P}/topics/out", f"{P}/topics/dead", 7
    )
    assert admin.ensure_subscription(with_policy) is False
    sub = admin.subscriber.get_subscription(request={"subscription": f"{P}/subscriptions/sub-in"})
    assert sub.dead_letter_policy.dead_letter_topic == f"{P}/topics/dead"
    assert sub.dead_letter_policy.max_delivery_attempts == 7


def test_delete_is_idempotent(admin: PubSubAdmin) -> None:
    admin.ensure_topic(f"{P}/topics/out")
    admin.ensure_subscription(
        SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/out", None)
    )
    admin.remove([f"{P}/subscriptions/sub-in"], [f"{P}/topics/out"])
    admin.remove([f"{P}/subscriptions/sub-in"], [f"{P}/topics/out"])
    assert not admin.topic_exists(f"{P}/topics/out")
    assert not admin.subscription_exists(f"{P}/subscriptions/sub-in")


def test_other_failures_name_the_resource(admin: PubSubAdmin) -> None:
    missing_topic = SubscriptionPlan(f"{P}/subscriptions/sub-in", f"{P}/topics/absent", None)
    with pytest.raises(PubSubAdminError, match=r"create subscription .*sub-in"):
        admin.ensure_subscription(missing_topic)
    with pytest.raises(PubSubAdminError, match="create topic bad"):
        admin.ensure_topic("bad")


def test_a_parents_topic_is_created_when_the_parent_has_not_yet(admin: PubSubAdmin) -> None:
    parent_topic = f"{P}/topics/parent-out"
    plan = PubSubPlan(
        topics=(TopicPlan(f"{P}/topics/child-out"),),
        subscriptions=(
            SubscriptionPlan(f"{P}/subscriptions/child-from-parent", parent_topic, None),
        ),
        parent_topics=(TopicPlan(parent_topic),),
    )
    admin.apply(plan)
    assert admin.topic_exists(parent_topic)
    assert admin.subscription_exists(f"{P}/subscriptions/child-from-parent")


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
        own = await admin.subscriber.get_subscription(subscription=f"{P}/subscriptions/own")
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
