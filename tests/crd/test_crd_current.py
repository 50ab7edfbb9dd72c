"""crds/kliojob.yaml is what scripts/gen_crd.py writes from the models today."""

from __future__ import annotations

from pathlib import Path

from klio_operator.crd import REGENERATE_COMMAND, kliojob_crd_yaml

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "kliojob.yaml"


def test_committed_crd_is_current() -> None:
    committed = CRD_PATH.read_text(encoding="utf-8") if CRD_PATH.exists() else ""
    assert committed == kliojob_crd_yaml(), (
        f"{CRD_PATH} is stale: the KlioJob models changed. Regenerate it with "
        f"`{REGENERATE_COMMAND}` (from the repository root) and commit it."
    )
