"""Klio's ``klio.transforms``: decorators, helpers, core and io, as aliases of klio_runtime.

As in Klio, the package itself exports the IO transforms (``from klio.transforms import
KlioReadFromText``); the helpers are exported here too.
"""

from klio.transforms import helpers as _helpers
from klio.transforms import io as _io
from klio.transforms.core import KlioBaseDoFn, KlioContext
from klio.transforms.helpers import *  # noqa: F403  (the lists are the modules' __all__)
from klio.transforms.io import *  # noqa: F403

__all__ = ["KlioBaseDoFn", "KlioContext", *_helpers.__all__, *_io.__all__]
