"""``klio.transforms._retry``: the module Klio defines ``KlioRetriesExhausted`` in."""

from klio_runtime.decorators import KlioRetriesExhausted

__all__ = ["KlioRetriesExhausted"]
