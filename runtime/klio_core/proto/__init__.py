"""``klio_core.proto``: Klio's generated KlioMessage module, aliased to ours.

``from klio_core.proto import klio_pb2`` gives the very module ``klio_runtime.proto.klio_pb2``
(registered in ``sys.modules``), so messages built through either name are one class.
"""

import sys

from klio_runtime.proto import klio_pb2

sys.modules[f"{__name__}.klio_pb2"] = klio_pb2

__all__ = ["klio_pb2"]
