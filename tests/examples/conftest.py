"""Fixtures of the example tests: the real Pub/Sub and GCS emulators."""

from tests.emulators.gcs import gcs_emulator
from tests.emulators.pubsub import pubsub_emulator

__all__ = ["gcs_emulator", "pubsub_emulator"]
