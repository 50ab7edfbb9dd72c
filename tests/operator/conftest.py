"""Fixtures of the operator tests: the real Pub/Sub emulator."""

from tests.emulators.pubsub import pubsub_clean, pubsub_emulator

__all__ = ["pubsub_clean", "pubsub_emulator"]
