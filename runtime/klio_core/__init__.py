"""``klio_core``, Spotify Klio's core package name, kept so Klio job code imports unchanged.

Each submodule here is an alias of ours (e.g. ``klio_core.proto.klio_pb2`` is
``klio_runtime.proto.klio_pb2``, the same module object), never a second copy.
"""
