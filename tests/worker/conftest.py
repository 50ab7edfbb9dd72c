from tests.emulators.pubsub import pubsub_clean, pubsub_emulator

__all__ = ["pubsub_clean", "pubsub_emulator"]
