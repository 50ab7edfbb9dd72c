"""Klio on Kubernetes: the runtime that Klio jobs import and that worker containers run."""

__version__ = "0.1.0"
