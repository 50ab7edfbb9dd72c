"""Regenerate crds/kliojob.yaml from the KlioJob pydantic models.

Run from the repository root: ``.venv/bin/python scripts/gen_crd.py``. The output is committed;
``tests/crd/test_crd_current.py`` fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from klio_operator.crd import kliojob_crd_yaml

CRD_PATH = Path(__file__).resolve().parent.parent / "crds" / "kliojob.yaml"


def main() -> int:
    CRD_PATH.parent.mkdir(parents=True, exist_ok=True)
    CRD_PATH.write_text(kliojob_crd_yaml(), encoding="utf-8")
    print(f"wrote {CRD_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
