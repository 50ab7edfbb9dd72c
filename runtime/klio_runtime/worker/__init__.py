"""The streaming worker (``klio worker``): micro-batches from Pub/Sub through the job's
KlioJobTransform on a warm in-process FnApiRunner; ack after publish; probes and metrics.

Modules: ``settings`` (knobs), ``executor`` (warm FnApiRunner), ``loop`` (pull → run → publish →
ack), ``bottom_up`` (parents, pending requests), ``health`` (probe and metrics servers).
"""
