"""The operator's kopf settings."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest
from klio_operator.settings import STORAGE_PREFIX, DiffBaseStorage, ProgressStorage

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
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:image": {}}}}],
        "ownerReferences": [{"kind": "Team", "name": "audio", "uid": "u1"}],
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
    ours = DiffBaseStorage(kinds=["KlioJob"], prefix=STORAGE_PREFIX, key=KEY)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=STORAGE_PREFIX, key=KEY)
    essence = ours.build(body=body, extra_fields=extra_fields)
    assert essence == kopfs.build(body=body, extra_fields=extra_fields)
    assert "status" not in essence or extra_fields


def test_a_body_of_no_stated_kind_gets_kopfs_own_essence() -> None:
    raw = {k: v for k, v in BODY.items() if k != "kind"}
    body = kopf.Body(raw)  # type: ignore[arg-type]
    ours = DiffBaseStorage(kinds=["KlioJob"], prefix=STORAGE_PREFIX, key=KEY)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=STORAGE_PREFIX, key=KEY)
    assert ours.build(body=body) == kopfs.build(body=body) != {}
    assert ours.fetch(body=body) == kopfs.fetch(body=body) == {}


def test_kinds_without_change_handlers_get_no_essence() -> None:
    # kopf builds one on every event of a watched Deployment: nothing ever diffs it.
    deployment = {**BODY, "apiVersion": "apps/v1", "kind": "Deployment"}
    body = kopf.Body(deployment)  # type: ignore[arg-type]
    ours = DiffBaseStorage(kinds=["KlioJob"], prefix=STORAGE_PREFIX, key=KEY)
    assert ours.build(body=body, extra_fields=["status.phase"]) == {}
    assert ours.fetch(body=body) is None


ESSENCES: list[dict[str, Any]] = [
    {"spec": {"a": 1}},
    {"spec": {"a": 1}, "metadata": {"annotations": {f"{STORAGE_PREFIX}/x": "1"}}},
    {
        "spec": {"a": 1},
        "metadata": {
            "labels": {},
            "annotations": {f"{STORAGE_PREFIX}/x": "1", "klio.io/parents-changed": "p"},
        },
        "status": {},
    },
    {"metadata": {"labels": {"team": "audio"}, "annotations": {}}},
]


@pytest.mark.parametrize("essence", ESSENCES)
def test_clearing_progress_is_kopfs_own_and_leaves_the_essence_alone(
    essence: dict[str, Any],
) -> None:
    before = copy.deepcopy(essence)
    ours = ProgressStorage(prefix=STORAGE_PREFIX).clear(essence=essence)  # type: ignore[arg-type]
    kopfs = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX).clear(
        essence=copy.deepcopy(essence)  # type: ignore[arg-type]
    )
    assert ours == kopfs
    assert essence == before


def test_the_default_project_is_the_credentials_one_unless_on_the_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.auth
    import google.auth.exceptions
    from klio_operator.settings import credentials_project

    monkeypatch.setattr(google.auth, "default", lambda: (object(), "project-of-the-key"))
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    assert credentials_project() == "project-of-the-key"  # the chart's empty pubsub.project
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "localhost:8085")
    assert credentials_project() is None

    def no_credentials() -> Any:
        raise google.auth.exceptions.DefaultCredentialsError("none here")

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    monkeypatch.setattr(google.auth, "default", no_credentials)
    assert credentials_project() is None
