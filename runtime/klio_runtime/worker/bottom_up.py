"""Bottom-up in the worker: which parents to ask for a message whose data input is missing.

The job config names its parents under the custom key ``job_config.parents`` (the operator
renders it; Klio's config had no such key):

    job_config:
      parents:
        - job_name: transcode          # the parent's job name (its KlioJob name)
          gcp_project: my-project      # the parent's pipeline_options.project ("" if none)
          topic: projects/my-project/topics/klio.ns.transcode.input   # where the parent reads
          data_input: 0                # index in job_config.data.inputs it produces
                                       # (default: the parent's position in this list)

A request goes to the parent's ``topic`` (the topic that parent reads). Pending requests are
remembered per (element, parent, audience) for ``ttl`` seconds so a burst asks a parent once; the
audience (who hears the answer, whether it continues downward, whether it forces) is part of the
key, since a parent's answer reaches only the jobs its request names: a second child's request,
or a top-down one after a bottom-up one, must go up too. The memory is
in-process: each replica remembers its own requests, so N replicas may ask a parent up to N times
for one element in a burst; the parent then skips all but one because its output exists
(``output_exists``). A store shared by replicas (Redis, or a Pub/Sub ordering key) would remove
those duplicates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from klio_runtime.config import ConfigError, KlioConfig
from klio_runtime.message import KlioMessage, element_id
from klio_runtime.routing import JobRef, bottom_up_request

PARENTS_KEY = "parents"


@dataclass(frozen=True)
class Parent:
    """A parent job: its identity, the topic it reads, the data input it produces."""

    job: JobRef
    topic: str
    data_input: int


def parents_of(config: KlioConfig) -> list[Parent]:
    """``job_config.parents`` as :class:`Parent` list. Raises ConfigError naming each bad field."""
    raw = getattr(config.job_config, PARENTS_KEY, None)
    if raw is None:
        return []
    where = f"job_config.{PARENTS_KEY}"
    if not isinstance(raw, list):
        raise ConfigError([f"{where}: must be a list, got {type(raw).__name__}"])
    n_inputs = len(config.job_config.data.inputs)
    parents: list[Parent] = []
    errors: list[str] = []
    for index, entry in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{here}: must be a mapping, got {type(entry).__name__}")
            continue
        unknown = sorted(set(entry) - {"job_name", "gcp_project", "topic", "data_input"})
        errors += [f"{here}.{key}: unknown key" for key in unknown]
        name, topic = entry.get("job_name"), entry.get("topic")
        project = entry.get("gcp_project", "") or ""
        data_input = entry.get("data_input", index)
        if not isinstance(name, str) or not name:
            errors.append(f"{here}.job_name: required (a non-empty string)")
        if not isinstance(topic, str) or not topic:
            errors.append(f"{here}.topic: required (the topic the parent reads)")
        if not isinstance(project, str):
            errors.append(f"{here}.gcp_project: must be a string")
        if not isinstance(data_input, int) or isinstance(data_input, bool) or not (
                0 <= data_input < n_inputs):
            errors.append(f"{here}.data_input: must be an index into job_config.data.inputs "
                          f"(0..{n_inputs - 1}), got {data_input!r}")
        if not errors:
            parents.append(Parent(JobRef(str(name), str(project)), str(topic), int(data_input)))
    if errors:
        raise ConfigError(errors)
    return parents


def requests_for(msg: KlioMessage, job: JobRef, parents: Sequence[Parent],
                 missing_inputs: Iterable[int]) -> list[tuple[Parent, KlioMessage]]:
    """The (parent, request) pairs for the data inputs of ``msg`` that are missing."""
    missing = set(missing_inputs)
    return [(parent, bottom_up_request(msg, job, parent.job))
            for parent in parents if parent.data_input in missing]


Audience = tuple[frozenset[tuple[str, str]], tuple[str, str] | None, bool]


def audience_of(request: KlioMessage) -> Audience:
    """What a request asks beyond its element: the jobs that hear the answer, the job below
    which the DAG continues, and whether it forces."""
    limited = request.metadata.intended_recipients.limited
    trigger = limited.trigger_children_of if limited.HasField("trigger_children_of") else None
    return (
        frozenset((job.job_name, job.gcp_project) for job in limited.recipients),
        (trigger.job_name, trigger.gcp_project) if trigger is not None else None,
        request.metadata.force,
    )


class PendingRequests:
    """Requests (element, parent, audience) made recently; each is pending for ``ttl`` seconds, or
    until the job runs for that element (:meth:`settle`: the parents answered)."""

    def __init__(self, ttl: float = 300.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0, not {ttl}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        # element → (parent, audience) → pending until
        self._until: dict[str, dict[tuple[JobRef, Audience], float]] = {}
        self._lock = threading.Lock()

    def claim(self, request: KlioMessage, parent: JobRef) -> bool:
        """True if no such ``request`` to ``parent`` is pending (and mark it pending)."""
        element = element_id(request)
        key = (parent, audience_of(request))
        now = self._clock()
        with self._lock:
            asked = self._until.get(element)
            if asked is None:
                if len(self._until) >= self.max_entries:
                    self._expire(now)
                if len(self._until) >= self.max_entries:
                    # Bounded memory: forget the oldest; worst case one more request to a parent.
                    self._until.pop(next(iter(self._until)))
                asked = self._until[element] = {}
            elif asked.get(key, 0.0) > now:
                return False
            asked[key] = now + self.ttl
            return True

    def forget(self, request: KlioMessage, parent: JobRef) -> None:
        """Undo a claim whose request was not published (so a redelivery can ask again)."""
        element = element_id(request)
        with self._lock:
            asked = self._until.get(element)
            if asked is not None:
                asked.pop((parent, audience_of(request)), None)
                if not asked:
                    del self._until[element]

    def settle(self, elements: Iterable[str]) -> None:
        """The job ran for these elements, so their requests were answered: a later missing input
        (outputs deleted, a new bottom-up run) asks the parents again at once."""
        with self._lock:
            for element in elements:
                self._until.pop(element, None)

    def __len__(self) -> int:
        """Pending requests."""
        return sum(len(asked) for asked in self._until.values())

    def _expire(self, now: float) -> None:
        for element, asked in list(self._until.items()):
            for key in [k for k, until in asked.items() if until <= now]:
                del asked[key]
            if not asked:
                del self._until[element]


def describe(parents: Sequence[Parent]) -> list[dict[str, Any]]:
    """Parents as config entries (what the operator renders under ``job_config.parents``)."""
    return [{"job_name": p.job.job_name, "gcp_project": p.job.gcp_project, "topic": p.topic,
             "data_input": p.data_input} for p in parents]
