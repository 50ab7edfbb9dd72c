"""Klio's ``klio_audio`` import paths, served by ``klio_runtime.audio``."""
