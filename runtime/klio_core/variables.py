"""``klio_core.variables``: Klio's runner names and Dataflow regions (ours, in config)."""

from klio_runtime.config import DATAFLOW_REGIONS, KlioRunner

__all__ = ["DATAFLOW_REGIONS", "KlioRunner"]
