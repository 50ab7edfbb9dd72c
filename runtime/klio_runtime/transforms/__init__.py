"""Beam transforms of the per-message flow (route) and Klio's helper transforms (helpers)."""
