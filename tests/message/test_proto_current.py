"""The committed klio_pb2 bindings are what scripts/gen_proto.py makes from klio.proto today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGEN = "python scripts/gen_proto.py"


def _gen_proto_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["klio_pb2.py", "klio_pb2.pyi"])
def test_committed_bindings_match_a_fresh_generation(name: str, tmp_path: Path) -> None:
    gen_proto = _gen_proto_module()
    gen_proto.generate(tmp_path)
    fresh = (tmp_path / name).read_text()
    committed = (gen_proto.PROTO_DIR / name).read_text()
    assert committed == fresh, f"{name} is stale; regenerate with: {REGEN}"
