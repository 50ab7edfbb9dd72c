"""Fixtures of the runtime tests."""

from tests.emulators.gcs import gcs_emulator

__all__ = ["gcs_emulator"]
