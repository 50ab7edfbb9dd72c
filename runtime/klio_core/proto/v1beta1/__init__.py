"""``klio_core.proto.v1beta1``: Klio's older import path, the same module again."""

import sys

from klio_runtime.proto import klio_pb2

sys.modules[f"{__name__}.klio_pb2"] = klio_pb2

__all__ = ["klio_pb2"]
