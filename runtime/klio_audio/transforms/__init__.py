"""Alias of ``klio_audio.transforms``: ``audio`` (load, features, plots) and ``io``."""
