"""Event and data IO: local paths, ``gs://`` and Pub/Sub (the worker's client in ``pubsub``, Beam
runners' transforms in ``pubsub_events``)."""
