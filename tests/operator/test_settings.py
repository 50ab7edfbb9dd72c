"""The operator's kopf settings."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from klio_operator.settings import STORAGE_PREFIX, DiffBaseStorage

KEY = "last-handled-configuration"
BODY: dict[str, Any] = {
    "apiVersion": "klio.io/v1alpha1",
    "kind": "KlioJob",
    "metadata": {
        "name": "j",
        "namespace": "team",
        "labels": {"team": "audio"},
        "annotations": {"klio.io/parents-changed": "p", f"{STORAGE_PREFIX}/{KEY}": "{}"},
        "finalizers": ["klio.io/finalizer"],
    },
    "spec": {"image": "registry.example/klio/job:1", "parents": ["p"]},
    "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]},
}


@pytest.mark.parametrize("extra_fields", [None, ["status.phase"]])
@pytest.mark.parametrize("with_status", [True, False])
def test_the_diff_base_is_kopfs_own_essence(
    extra_fields: list[str] | None, with_status: bool
) -> None:
    raw = BODY if with_status else {k: v for k, v in BODY.items() if k != "status"}
    body = kopf.Body(raw)  # type: ignore[arg-type]
    ours = DiffBaseStorage(prefix=STORAGE_PREFIX, key=KEY)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=STORAGE_PREFIX, key=KEY)
    essence = ours.build(body=body, extra_fields=extra_fields)
    assert essence == kopfs.build(body=body, extra_fields=extra_fields)
    assert "status" not in essence or extra_fields
