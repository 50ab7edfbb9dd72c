"""Klio's ``klio.utils``: thread limits for ``@handle_klio``."""

from klio_runtime.decorators import ThreadLimit, ThreadLimiter

__all__ = ["ThreadLimit", "ThreadLimiter"]
