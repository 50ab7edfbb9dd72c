"""A job's cloud resources, for ``klio job verify`` (as Klio's).

They are the Pub/Sub topics and subscriptions of its event IO, its dead-letter topic, and the GCS
buckets of its ``gs://`` locations. :func:`job_resources` lists them from the config alone;
:func:`missing_resources` looks for them and :func:`ensure_resources` makes the missing ones
(both honouring ``PUBSUB_EMULATOR_HOST`` and ``STORAGE_EMULATOR_HOST``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from klio_runtime.config import (
    AvroEventInput,
    AvroEventOutput,
    FileEventInput,
    FileEventOutput,
    KlioConfig,
    PubSubEventInput,
    PubSubEventOutput,
)
from klio_runtime.io.gcs import split_gs, storage_client
from klio_runtime.io.pubsub import resource_path
from klio_runtime.io.pubsub_events import dead_letter_topic, pubsub_project


@dataclass(frozen=True)
class Resource:
    kind: Literal["topic", "subscription", "bucket"]
    name: str
    topic: str | None = None
    """A subscription's topic."""


def _bucket(location: str) -> str | None:
    return split_gs(location)[0] if location.startswith("gs://") else None


def job_resources(config: KlioConfig) -> list[Resource]:
    """Every resource the job reads or writes, each once, topics before their subscriptions.

    Raises:
        ValueError: a topic or subscription that is not a path of its kind (or has no project).
    """
    project = pubsub_project(config)
    found: list[Resource] = []
    events = config.job_config.events
    for conf in events.inputs:
        if isinstance(conf, PubSubEventInput):
            topic = resource_path(conf.topic, "topics", project) if conf.topic else None
            if topic:
                found.append(Resource("topic", topic))
            if conf.subscription:
                path = resource_path(conf.subscription, "subscriptions", project)
                found.append(Resource("subscription", path, topic))
    for out in events.outputs:
        if isinstance(out, PubSubEventOutput):
            found.append(Resource("topic", resource_path(out.topic, "topics", project)))
    dead = dead_letter_topic(config)
    if dead:
        found.append(Resource("topic", dead))
    locations = [c.pattern for c in events.inputs if isinstance(c, FileEventInput | AvroEventInput)]
    locations += [
        c.prefix for c in events.outputs if isinstance(c, FileEventOutput | AvroEventOutput)
    ]
    data = config.job_config.data
    # any gs:// location, whatever its entry's type says (a `file` entry reads gs:// as well)
    locations += [d.location for d in [*data.inputs, *data.outputs] if d.location]
    # where Dataflow stages and keeps its files: Klio's verify checks (and makes) these too
    options = config.pipeline_options
    locations += [loc for loc in (options.staging_location, options.temp_location) if loc]
    for bucket in filter(None, map(_bucket, locations)):
        found.append(Resource("bucket", bucket))
    return list(dict.fromkeys(found))


def ensure_resources(resources: Iterable[Resource]) -> list[tuple[Resource, str]]:
    """Create what is missing; each resource with ``created``, ``exists`` or, for a subscription
    whose topic is unknown or missing, ``no topic``."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    publisher = subscriber = gcs = None
    outcomes: list[tuple[Resource, str]] = []
    for res in resources:
        try:
            if res.kind == "topic":
                publisher = publisher or pubsub_v1.PublisherClient()
                publisher.create_topic(name=res.name)
            elif res.kind == "subscription":
                if res.topic is None:
                    outcomes.append((res, "no topic"))
                    continue
                subscriber = subscriber or pubsub_v1.SubscriberClient()
                subscriber.create_subscription(name=res.name, topic=res.topic)
            else:
                gcs = gcs or storage_client()
                gcs.create_bucket(res.name)
        except (gexc.AlreadyExists, gexc.Conflict):
            outcomes.append((res, "exists"))
        except gexc.NotFound:  # a subscription's topic is missing
            outcomes.append((res, "no topic"))
        else:
            outcomes.append((res, "created"))
    if subscriber is not None:
        subscriber.close()
    return outcomes


class ResourcesUnreachable(RuntimeError):
    """Pub/Sub or GCS could not be asked (no credentials, no network, no permission)."""


def missing_resources(resources: Iterable[Resource], timeout: float = 15.0) -> list[Resource]:
    """Those of ``resources`` that do not exist, looked for without changing anything.

    Raises:
        ResourcesUnreachable: naming what could not be asked, and why.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions
    from google.cloud import pubsub_v1

    publisher = subscriber = gcs = None
    missing: list[Resource] = []
    try:
        for res in resources:
            try:
                if res.kind == "topic":
                    publisher = publisher or pubsub_v1.PublisherClient()
                    publisher.get_topic(topic=res.name, retry=None, timeout=timeout)
                elif res.kind == "subscription":
                    subscriber = subscriber or pubsub_v1.SubscriberClient()
                    subscriber.get_subscription(
                        subscription=res.name, retry=None, timeout=timeout
                    )
                else:
                    gcs = gcs or storage_client()
                    if gcs.lookup_bucket(res.name, timeout=timeout) is None:
                        missing.append(res)
            except gexc.NotFound:
                missing.append(res)
            except (gexc.GoogleAPICallError, auth_exceptions.GoogleAuthError, OSError) as err:
                raise ResourcesUnreachable(
                    f"could not look for {res.kind} {res.name}: {type(err).__name__}: "
                    f"{str(err).strip()}"
                ) from err
    finally:
        if subscriber is not None:
            subscriber.close()
    return missing
