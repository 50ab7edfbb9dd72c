"""Klio's ``klio.transforms.core``: ``KlioContext`` and ``KlioBaseDoFn``.

Klio built a context from config pickled into ``__main__``; here ``KlioContext()`` with no argument
is the running job's context (bound by the runtime), and ``KlioContext(config)`` builds one.
"""

from typing import Any

import apache_beam as beam
from klio_runtime import context as _context


def KlioContext(config: Any = None, **kwargs: Any) -> _context.KlioContext:
    if config is None and not kwargs:
        return _context.bound_context()
    return _context.KlioContext(config, **kwargs)


class KlioBaseDoFn(beam.DoFn):
    """A DoFn whose ``self._klio`` is the running job's context (set in ``setup``)."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if not isinstance(getattr(self, "_klio", None), _context.KlioContext):
            self._klio = _context.bound_context()


__all__ = ["KlioBaseDoFn", "KlioContext"]
