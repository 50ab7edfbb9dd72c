"""``klio.transforms._timeout``: the module Klio defines ``KlioTimeoutError`` in."""

from klio_runtime.decorators import KlioTimeoutError

__all__ = ["KlioTimeoutError"]
