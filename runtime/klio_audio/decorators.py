"""Alias of ``klio_audio.decorators``: ``handle_binary``."""

from klio_runtime.audio.decorators import BinarySerializer, FakeKlioMsg, handle_binary

__all__ = ["BinarySerializer", "FakeKlioMsg", "handle_binary"]
