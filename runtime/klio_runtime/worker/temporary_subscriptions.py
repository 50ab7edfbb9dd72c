"""Subscriptions of this run only, for Pub/Sub event inputs that name a topic and no subscription.

Klio's docs allow such an input: "Beam creates a temporary subscription on startup". On a
cluster the operator makes one per input; run locally (``klio job run``, ``klio worker``), the
worker reads a subscription made here for the run and deleted when it ends, as Beam's runners
do. Messages published to the topic before the run starts are not seen, as with Beam's.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator

from klio_runtime.config import KlioConfig, PubSubEventInput
from klio_runtime.io.pubsub import subscriber_client
from klio_runtime.io.pubsub_events import input_source, pubsub_project

log = logging.getLogger(__name__)

_MAX_NAME = 255  # Pub/Sub's limit on a subscription's name
_EXPIRES_UNUSED = {"ttl": {"seconds": 24 * 3600}}  # Pub/Sub's shortest expiration: a day


def temporary_subscription_name(
    job_name: str, topic: str, index: int, project: str | None = None
) -> str:
    """``projects/<project>/subscriptions/klio-<job>-<index>-<random>``: in the job's project
    (where Beam's runners make theirs: the topic may be another team's), else the topic's."""
    project = project or topic.split("/")[1]
    suffix = f"-{index}-{uuid.uuid4().hex[:8]}"
    name = f"klio-{job_name}"[: _MAX_NAME - len(suffix)] + suffix
    return f"projects/{project}/subscriptions/{name}"


@contextlib.contextmanager
def with_temporary_subscriptions(
    config: KlioConfig, announce: Callable[[str], None] = log.info
) -> Iterator[KlioConfig]:
    """``config`` as it is when every Pub/Sub input names a subscription; else a copy whose
    topic-only inputs read subscriptions made for this run, deleted on the way out.

    Raises:
        klio_runtime.config.ConfigError: a topic that is not a topic path, naming the field.
        google.api_core.exceptions.GoogleAPICallError: a subscription could not be made (e.g. the
            topic does not exist: ``klio job verify --create-resources`` makes it).
    """
    inputs = config.job_config.events.inputs
    topic_only = [
        index
        for index, conf in enumerate(inputs)
        if isinstance(conf, PubSubEventInput) and conf.topic and not conf.subscription
    ]
    if not topic_only:
        yield config
        return
    out = config.model_copy(deep=True)
    project = pubsub_project(config)
    subscriber = subscriber_client()
    made: list[str] = []
    try:
        for index in topic_only:
            conf = out.job_config.events.inputs[index]
            assert isinstance(conf, PubSubEventInput)  # topic_only holds Pub/Sub inputs only
            _, topic = input_source(conf, index, project)
            name = temporary_subscription_name(config.job_name, topic, index, project)
            # one left behind (the process killed before it could delete it) expires unused
            subscriber.create_subscription(
                request={"name": name, "topic": topic, "expiration_policy": _EXPIRES_UNUSED}
            )
            made.append(name)
            announce(
                f"job_config.events.inputs[{index}] names no subscription: reading {name}, made "
                f"for this run on {topic}"
            )
            conf.subscription = name
        yield out
    finally:
        for name in made:
            try:
                subscriber.delete_subscription(request={"subscription": name}, timeout=10)
            except Exception as err:  # the others are still deleted, the run's error kept
                log.warning("could not delete the run's subscription %s: %s", name, err)
        subscriber.close()
