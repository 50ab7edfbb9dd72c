"""Generated KlioMessage bindings (see ``scripts/gen_proto.py``)."""

from klio_runtime.proto import klio_pb2

__all__ = ["klio_pb2"]
