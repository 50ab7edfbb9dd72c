"""Event and data IO: local paths, ``gs://`` and Pub/Sub (the worker's client in ``pubsub``, Beam
runners' transforms in ``pubsub_events``)."""

# The project named when an emulator (Pub/Sub, GCS) is in use and none is configured: any name does
# there, and one name keeps a job's topics and buckets together.
EMULATOR_PROJECT = "klio-local"
