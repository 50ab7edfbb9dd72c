"""Event and data IO: local paths and ``gs://`` (Pub/Sub arrives with the streaming worker)."""
