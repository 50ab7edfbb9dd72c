"""``klio.metrics``: Klio's metrics package. ``ctx.metrics`` is the registry
(:mod:`klio.metrics.client`); what its ``counter``/``gauge``/``timer`` return are the dispatchers
(:mod:`klio.metrics.dispatcher`). Klio's relay clients (logger, native, shumway) are not
separate objects here: the registry logs, counts in Beam and in Prometheus itself."""
