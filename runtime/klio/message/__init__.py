"""Klio's ``klio.message``: (de)serialization helpers and exceptions."""
