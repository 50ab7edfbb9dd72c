"""``klio.transforms._timeout``: where Klio's docs import ``KlioTimeoutError`` from."""

from klio_runtime.decorators import KlioTimeoutError

__all__ = ["KlioTimeoutError"]
