"""Fixtures shared by the whole suite: one real emulator of each kind per session."""

from tests.emulators.gcs import gcs_emulator
from tests.emulators.pubsub import pubsub_clean, pubsub_emulator

__all__ = ["gcs_emulator", "pubsub_clean", "pubsub_emulator"]
