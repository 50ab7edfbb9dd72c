"""The real Pub/Sub emulator, for the running operator (the same fixtures as tests/operator)."""

from tests.emulators.pubsub import pubsub_clean, pubsub_emulator

__all__ = ["pubsub_clean", "pubsub_emulator"]
