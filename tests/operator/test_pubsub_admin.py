"""Topic / subscription admin against Google's real Pub/Sub emulator."""

from __future__ import annotations

import pytest
from klio_operator.planning import PubSubPlan, SubscriptionPlan, TopicPlan
from klio_operator.pubsub_admin import PubSubAdmin, PubSubAdminError

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
