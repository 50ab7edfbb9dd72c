"""Values shared by everything a worker process runs: a model loaded once, a client made once.

Klio's ``klio_core.utils`` API (``set_global``, ``get_global``, ``delete_global``,
``get_or_initialize_global``, ``get_publisher``); ``None`` counts as unset, as there. Unlike
Klio's module globals, an initializer runs once even when several threads ask at the same
moment.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

_values: dict[str, Any] = {}
# Reentrant: an initializer may read or make other globals.
_lock = threading.RLock()


def set_global(name: str, value: Any) -> None:
    with _lock:
        _values[name] = value


def get_global(name: str) -> Any:
    """The value of ``name``, or ``None`` if it is not set."""
    return _values.get(name)


def delete_global(name: str) -> None:
    with _lock:
        _values.pop(name, None)


def get_or_initialize_global(name: str, initializer: Callable[[], Any] | Any) -> Any:
    """The value of ``name``; if unset, ``initializer()`` (or ``initializer`` itself when it is
    not callable) becomes its value first."""
    value = _values.get(name)
    if value is not None:
        return value
    with _lock:
        value = _values.get(name)  # another thread may have made it meanwhile
        if value is None:
            value = initializer() if callable(initializer) else initializer
            _values[name] = value
        return value


def get_publisher(topic: str) -> Any:
    """A Pub/Sub publisher client for ``topic``, made once per process (Klio's: a job publishing
    to a topic of its own); the topic is created if it does not exist yet, as Klio's is."""
    from google.api_core import exceptions as api_exceptions
    from google.cloud import pubsub_v1

    def make() -> Any:
        publisher = pubsub_v1.PublisherClient()
        with contextlib.suppress(api_exceptions.AlreadyExists):
            publisher.create_topic(name=topic)
        return publisher

    return get_or_initialize_global(f"publisher_{topic}", make)
