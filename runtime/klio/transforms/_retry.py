"""``klio.transforms._retry``: where Klio's docs import ``KlioRetriesExhausted`` from."""

from klio_runtime.decorators import KlioRetriesExhausted

__all__ = ["KlioRetriesExhausted"]
