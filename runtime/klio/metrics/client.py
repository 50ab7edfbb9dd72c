"""``klio.metrics.client``: ``MetricsRegistry``, the type of ``ctx.metrics``."""

from klio_runtime.metrics import KlioMetrics as MetricsRegistry

__all__ = ["MetricsRegistry"]
