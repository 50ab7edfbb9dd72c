"""Pub/Sub event IO as Beam transforms: what a pipeline on Dataflow, Flink or another Beam runner
reads and writes.

On Kubernetes the streaming worker (:mod:`klio_runtime.worker`) pulls and publishes by itself, so
it can acknowledge a message only once its outputs are published; a Beam runner brings its own
Pub/Sub source and sink with its own guarantees (Dataflow's are exactly-once per step). Both read
and write the same bytes: one serialized KlioMessage per Pub/Sub message.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage

from klio_runtime.config import ConfigError, KlioConfig, PubSubEventInput, PubSubEventOutput
from klio_runtime.io.events import DeadLetter
from klio_runtime.io.pubsub import resource_path
from klio_runtime.worker.settings import DEAD_LETTER_KEY, ENV_DEAD_LETTER_TOPIC, ENV_PUBSUB_PROJECT

# Attributes of a dead letter published to a topic (the original's attributes, when the
# worker has them, are kept beside them).
ATTR_REASON = "klio_dead_letter_reason"
ATTR_DETAIL = "klio_dead_letter_detail"
ATTR_JOB = "klio_job"
DETAIL_LIMIT = 1024  # bytes: what Pub/Sub takes of an attribute value (UTF-8)


def pubsub_project(config: KlioConfig) -> str | None:
    """The project of bare topic and subscription ids: ``KLIO_PUBSUB_PROJECT`` (the operator sets
    it), else ``pipeline_options.project``."""
    return os.environ.get(ENV_PUBSUB_PROJECT) or config.pipeline_options.project or None


def dead_letter_topic(config: KlioConfig, given: str | None = None) -> str | None:
    """The dead-letter topic: ``given`` (a flag), else ``KLIO_DEAD_LETTER_TOPIC``, else the job
    config's ``dead_letter_topic``; None when there is none.

    Raises:
        ConfigError: the topic is not a topic path, or a bare id with no project.
    """
    topic = (
        given
        or os.environ.get(ENV_DEAD_LETTER_TOPIC)
        or getattr(config.job_config, DEAD_LETTER_KEY, None)
    )
    if not topic:
        return None
    try:
        return resource_path(str(topic), "topics", pubsub_project(config))
    except ValueError as err:
        raise ConfigError([f"dead-letter topic: {err}"]) from None


def input_source(conf: PubSubEventInput, index: int, project: str | None) -> tuple[str, str]:
    """``("subscription", path)`` or ``("topic", path)`` of an event input: its subscription when
    it names one (as Klio reads), else its topic (the runner then makes a subscription of its own).

    Raises:
        ConfigError: naming the field whose value is not a path of its kind.
    """
    kind, name = ("subscription", conf.subscription) if conf.subscription else ("topic", conf.topic)
    assert name is not None  # the config model requires one of the two
    try:
        return kind, resource_path(name, f"{kind}s", project)
    except ValueError as err:
        raise ConfigError([f"job_config.events.inputs[{index}].{kind}: {err}"]) from None


def output_topic(conf: PubSubEventOutput, index: int, project: str | None) -> str:
    """The topic path of an event output.

    Raises:
        ConfigError: naming the field, when it is not a topic path.
    """
    try:
        return resource_path(conf.topic, "topics", project)
    except ValueError as err:
        raise ConfigError([f"job_config.events.outputs[{index}].topic: {err}"]) from None


class ReadEventPubSub(beam.PTransform):
    """A subscription (or a topic) → the serialized KlioMessages published to it.

    ``beam_options``: Beam's own ``ReadFromPubSub`` arguments (``id_label``,
    ``with_attributes``, ``timestamp_attribute``), as Klio's ``KlioReadFromPubSub`` passes them.
    """

    def __init__(
        self, subscription: str | None = None, topic: str | None = None, **beam_options: Any
    ) -> None:
        super().__init__()
        if bool(subscription) == bool(topic):
            raise ValueError("ReadEventPubSub: give exactly one of subscription, topic")
        self.subscription = subscription
        self.topic = topic
        self.beam_options = beam_options

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | "Read" >> beam.io.ReadFromPubSub(
            subscription=self.subscription, topic=self.topic, **self.beam_options
        )


def _wire_bytes(data: bytes) -> bytes:
    return data if type(data) is bytes else bytes(data)


class WriteEventPubSub(beam.PTransform):
    """Serialized KlioMessages → published to ``topic``, one Pub/Sub message each (what the job's
    children read).

    ``beam_options``: Beam's own ``WriteToPubSub`` arguments, as Klio's ``KlioWriteToPubSub``
    passes them; with ``with_attributes`` the elements are Beam's ``PubsubMessage`` objects.
    """

    def __init__(self, topic: str, **beam_options: Any) -> None:
        super().__init__()
        self.topic = topic
        self.beam_options = beam_options

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.PDone:
        if not self.beam_options.get("with_attributes"):
            pcoll = pcoll | "Bytes" >> beam.Map(_wire_bytes)
        return pcoll | "Publish" >> beam.io.WriteToPubSub(self.topic, **self.beam_options)


SidePublisher = Callable[[str], beam.PTransform]
_side_publisher: contextvars.ContextVar[SidePublisher | None] = contextvars.ContextVar(
    "klio_side_publisher", default=None
)


@contextlib.contextmanager
def side_publishes_through(make: SidePublisher) -> Iterator[None]:
    """While a pipeline is built in this block, :func:`publish_to` gives ``make(topic)``: the
    worker collects such messages and publishes them itself, before it acknowledges the batch."""
    token = _side_publisher.set(make)
    try:
        yield
    finally:
        _side_publisher.reset(token)


def publish_to(topic: str) -> beam.PTransform:
    """Serialized KlioMessages → published to ``topic`` from within a job's pipeline (Klio's
    ``KlioTriggerUpstream``): through the runner's Pub/Sub sink, or the worker's."""
    make = _side_publisher.get()
    return make(topic) if make is not None else WriteEventPubSub(topic)


def cut_to_bytes(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` bytes of UTF-8, on a character (a non-ASCII element would
    otherwise go past a limit counted in characters)."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def dead_letter_message(letter: DeadLetter, job_name: str) -> PubsubMessage:
    """A dead letter as a Pub/Sub message: the record as JSON, its reason in the attributes."""
    return PubsubMessage(
        letter.to_json().encode("utf-8"),
        {
            ATTR_REASON: letter.reason,
            ATTR_DETAIL: cut_to_bytes(letter.detail, DETAIL_LIMIT),
            ATTR_JOB: job_name,
        },
    )


class PublishDeadLetters(beam.PTransform):
    """DeadLetter records → published to the dead-letter ``topic`` (see
    :func:`dead_letter_message`)."""

    def __init__(self, topic: str, job_name: str) -> None:
        super().__init__()
        self.topic = topic
        self.job_name = job_name

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.PDone:
        return (
            pcoll
            | "Message" >> beam.Map(dead_letter_message, self.job_name)
            | "Publish" >> beam.io.WriteToPubSub(self.topic, with_attributes=True)
        )


def has_pubsub_input(config: KlioConfig) -> bool:
    """Whether the job has a Pub/Sub event input (a streaming job)."""
    return any(isinstance(conf, PubSubEventInput) for conf in config.job_config.events.inputs)
