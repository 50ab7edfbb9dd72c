"""Klio's ``klio.transforms.core``: ``KlioContext``, ``RunConfig`` and ``KlioBaseDoFn``.

Klio built a context from config pickled into ``__main__`` (``RunConfig``); here ``KlioContext()``
with no argument is the running job's context (bound by the runtime), ``KlioContext(config)``
builds one, and ``RunConfig`` reads and sets the bound one's config.
"""

from typing import Any

import apache_beam as beam
from klio_runtime import context as _context


class _ContextFactory(type):
    """``KlioContext(...)`` gives the runtime's context; ``isinstance(x, KlioContext)`` holds for
    any of the runtime's contexts, as for Klio's class."""

    def __call__(cls, config: Any = None, **kwargs: Any) -> _context.KlioContext:
        if config is None and not kwargs:
            return _context.bound_context()
        return _context.KlioContext(config, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, _context.KlioContext)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _context.KlioContext)


class KlioContext(metaclass=_ContextFactory):
    """The running job's context (``config``, ``job``, ``logger``, ``metrics``)."""


class RunConfig:
    """Klio's holder of the running job's config: ``get()`` the bound context's, ``set(config)``
    to bind a context for it (as Klio's test command does before a job's tests run)."""

    @classmethod
    def get(cls) -> Any:
        return _context.bound_context().config

    @classmethod
    def set(cls, config: Any) -> None:
        _context.bind_context(_context.KlioContext(config))


class KlioBaseDoFn(beam.DoFn):
    """A DoFn whose ``self._klio`` is the running job's context (set in ``setup``)."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if not isinstance(getattr(self, "_klio", None), _context.KlioContext):
            self._klio = _context.bound_context()


__all__ = ["KlioBaseDoFn", "KlioContext", "RunConfig"]
