"""The job DAG: parents, cycles and the Pub/Sub names of its edges. Pure functions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Pub/Sub ids must start with a letter and may hold letters, digits, '-', '.', '_', '~', '%',
# '+'; Kubernetes names (DNS-1123 labels) fit, so `klio.<namespace>.<job>...` is always valid
# and two namespaces never share a topic.
PREFIX = "klio"


_MADE_KINDS = frozenset({"output", "dead-letter", "from", "input"})


def made_for_namespace(path: str) -> str | None:
    """The namespace whose KlioJobs the operator made this topic or subscription for
    (``klio.<namespace>.<job>.<output|dead-letter|from|input>…``, as named below, or an
    earlier ``…input-<n>``), or None for a name outside that scheme."""
    parts = path.rsplit("/", 1)[-1].split(".")
    if len(parts) < 4 or parts[0] != PREFIX:
        return None
    kind = parts[3]
    if kind in _MADE_KINDS or (kind.startswith("input-") and kind[6:].isdigit()):
        return parts[1]
    return None


def topic_path(project: str, topic_id: str) -> str:
    return f"projects/{project}/topics/{topic_id}"


def subscription_path(project: str, subscription_id: str) -> str:
    return f"projects/{project}/subscriptions/{subscription_id}"


def output_topic(project: str, namespace: str, job: str) -> str:
    """The topic a job publishes its output messages to (its children subscribe to it)."""
    return topic_path(project, f"{PREFIX}.{namespace}.{job}.output")


def dead_letter_topic(project: str, namespace: str, job: str) -> str:
    """Where Pub/Sub moves messages a job failed to process after the allowed attempts."""
    return topic_path(project, f"{PREFIX}.{namespace}.{job}.dead-letter")


def dead_letter_subscription(project: str, namespace: str, job: str) -> str:
    """Keeps dead letters: a topic without a subscription would drop them."""
    return subscription_path(project, f"{PREFIX}.{namespace}.{job}.dead-letter")


def parent_subscription(project: str, namespace: str, job: str, parent: str) -> str:
    """A job's subscription to one parent's output topic."""
    return subscription_path(project, f"{PREFIX}.{namespace}.{job}.from.{parent}")


def input_subscription(project: str, namespace: str, job: str, topic: str) -> str:
    """A root job's subscription to an event-input topic (a full path) that came without one.

    Named after the topic, not the input's place in the list: inputs reordered keep their
    subscriptions and backlogs (a subscription cannot change topic; one named by position would
    be replaced, its backlog lost). The hash of the full path tells apart topics of the same id
    in two projects and keeps the id short.
    """
    topic_id = topic.rsplit("/", 1)[-1][:64]
    digest = hashlib.sha256(topic.encode("utf-8")).hexdigest()[:8]
    return subscription_path(project, f"{_input_prefix(namespace, job)}.{topic_id}.{digest}")


def is_input_subscription(namespace: str, job: str, subscription: str) -> bool:
    """Whether `subscription` (a full path) is one of the job's own event-input subscriptions,
    named as today or as before (`…input-<n>`, by the input's place in the list)."""
    return subscription.rsplit("/", 1)[-1].startswith(_input_prefix(namespace, job))


def _input_prefix(namespace: str, job: str) -> str:
    """What the ids of a job's event-input subscriptions start with, under either naming."""
    return f"{PREFIX}.{namespace}.{job}.input"


def find_cycle(start: str, parents_of: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle reachable from `start` through parent links, in data-flow order, or None.

    The result starts and ends with the same job (`[a, b, c, a]`: a feeds b, b feeds c, c feeds
    a); when `start` is on the cycle it comes first. Jobs absent from `parents_of` have no
    parents.
    """
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(job: str) -> list[str] | None:
        if job in on_path:
            loop = [*path[path.index(job) :], job]
            return list(reversed(loop))  # parent links reversed: data flows parent → child
        if job in done:
            return None
        path.append(job)
        on_path.add(job)
        for parent in parents_of.get(job, ()):
            if (found := visit(parent)) is not None:
                return found
        path.pop()
        on_path.discard(job)
        done.add(job)
        return None

    cycle = visit(start)
    if cycle is not None and start in cycle[:-1]:
        at = cycle.index(start)
        cycle = [*cycle[at:-1], *cycle[:at], start]
    return cycle


def format_cycle(cycle: Sequence[str]) -> str:
    """`a → b → c → a`."""
    return " → ".join(cycle)


@dataclass(frozen=True)
class ParentResolution:
    """What became of a job's declared parents."""

    found: tuple[str, ...]
    missing: tuple[str, ...]
    cycle: tuple[str, ...] | None

    @property
    def resolved(self) -> bool:
        return not self.missing and self.cycle is None


def resolve_parents(
    job: str, parents: Sequence[str], parents_of: Mapping[str, Sequence[str]]
) -> ParentResolution:
    """Check `job`'s parents against the jobs known in its namespace (`parents_of`)."""
    graph = {**parents_of, job: list(parents)}
    found = tuple(p for p in parents if p in parents_of)
    missing = tuple(p for p in parents if p not in parents_of)
    cycle = find_cycle(job, graph)
    return ParentResolution(found=found, missing=missing, cycle=tuple(cycle) if cycle else None)
