"""The operator's small API client: configuration, apply, prune against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes.config  # noqa: F401  (imported first on purpose, see below)
import pytest
from klio_operator.kube import (
    LAST_APPLIED,
    KubeApi,
    NotOwnedError,
    applied_digest,
    apply,
    is_subset,
    prune,
    removals,
    resource_path,
)

from tests.kube.emulator import running_emulator


def test_client_from_a_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kubernetes package reads KUBECONFIG once, when imported: a KUBECONFIG set later (as
    # here, with the package imported by this module) must still be honoured. This failed in CI
    # whenever an earlier test had imported the package, not because of load.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert KubeApi.from_environment().server == "http://127.0.0.1:6443"


def test_is_subset_ignores_server_defaults() -> None:
    desired = {"spec": {"containers": [{"name": "w", "image": "a"}]}}
    current = {"spec": {"containers": [{"name": "w", "image": "a", "tty": False}], "x": 1}}
    assert is_subset(desired, current)
    assert not is_subset({"spec": {"containers": [{"name": "w", "image": "b"}]}}, current)


async def test_the_applied_digest_changes_with_what_the_operator_set_and_nothing_else() -> None:
    async with running_emulator() as emulator:
        api = KubeApi(str(emulator.url).rstrip("/"))
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "w", "namespace": "ns", "labels": {"klio.io/job": "w"}},
            "spec": {
                "selector": {"matchLabels": {"klio.io/job": "w"}},
                "template": {
                    "metadata": {"labels": {"klio.io/job": "w"}},
                    "spec": {"containers": [{"name": "worker", "image": "a:1"}]},
                },
            },
        }
        _, stored = await apply(api, deployment)
        digest = applied_digest(stored)
        assert applied_digest(await api.get(resource_path("Deployment", "ns", "w")) or {}) == digest
        path = resource_path("Deployment", "ns", "w")
        # Fields the operator does not set: an autoscaler's count, `kubectl rollout restart`.
        restarted = {"kubectl.kubernetes.io/restartedAt": "2026-12-07T00:00:00Z"}
        others = {"spec": {"replicas": 4, "template": {"metadata": {"annotations": restarted}}}}
        assert applied_digest(await api.merge_patch(path, others)) == digest
        # A field it sets, edited by hand; then applied again.
        image = {"spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "b"}]}}}}
        assert applied_digest(await api.merge_patch(path, image)) != digest
        outcome, stored = await apply(api, deployment)
        assert outcome == "updated" and applied_digest(stored) == digest
        # A label it set, removed by hand.
        unlabelled = await api.merge_patch(path, {"metadata": {"labels": {"klio.io/job": None}}})
        assert applied_digest(unlabelled) != digest
        await api.close()


async def test_apply_creates_updates_and_leaves_alone_then_prune() -> None:
    async with running_emulator() as emulator:
        api = KubeApi(str(emulator.url).rstrip("/"))
        labels = {"klio.io/job": "j"}
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns", "labels": labels},
            "data": {"k": "1"},
        }
        assert (await apply(api, cm))[0] == "created"
        assert (await apply(api, cm))[0] == "unchanged"
        assert (await apply(api, cm, likely_absent=True))[0] == "unchanged"  # 409 → compare
        changed = {**cm, "data": {"k": "2"}}
        outcome, stored = await apply(api, changed)
        assert outcome == "updated" and stored["data"] == {"k": "2"}
        other = {**cm, "metadata": {**cm["metadata"], "name": "b"}}
        await apply(api, other)
        deleted = await prune(api, "ns", "klio.io/job=j", [("ConfigMap", "a")], ["ConfigMap"])
        assert deleted == [("ConfigMap", "b")]
        assert await api.get(resource_path("ConfigMap", "ns", "b")) is None
        await api.close()


def test_removals_delete_only_what_was_applied_and_still_exists() -> None:
    previous = {"spec": {"a": 1, "b": {"c": 2, "d": 3}, "gone": 4}, "keep": 1}
    desired = {"spec": {"a": 1, "b": {"c": 2}}, "keep": 1}
    current = {"spec": {"a": 1, "b": {"c": 2, "d": 3, "server": 9}, "default": 0}, "keep": 1}
    assert removals(previous, desired, current) == {"spec": {"b": {"d": None}}}


CONFIG_MAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "ns"},
    "data": {"keep": "1", "drop": "2"},
}


async def test_apply_deletes_a_field_no_longer_desired_but_keeps_others_fields() -> None:
    async with running_emulator() as emulator:
        api = KubeApi(str(emulator.url).rstrip("/"))
        path = resource_path("ConfigMap", "ns", "c")
        cm = CONFIG_MAP
        await apply(api, cm)
        # Someone else's field (say, a controller's): never ours, so never removed.
        await api.merge_patch(path, {"data": {"theirs": "x"}})
        outcome, stored = await apply(api, {**cm, "data": {"keep": "1"}})
        assert outcome == "updated"
        assert stored["data"] == {"keep": "1", "theirs": "x"}
        assert (await apply(api, {**cm, "data": {"keep": "1"}}))[0] == "unchanged"
        await api.close()


async def test_a_worker_count_no_longer_set_is_left_to_the_autoscaler_unless_zero() -> None:
    async with running_emulator() as emulator:
        api = KubeApi(str(emulator.url).rstrip("/"))
        sent: list[Any] = []
        merge_patch = api.merge_patch

        async def recording(path: str, body: Any) -> Any:
            sent.append(body)
            return await merge_patch(path, body)

        api.merge_patch = recording  # type: ignore[method-assign]
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "w", "namespace": "ns"},
            "spec": {"replicas": 5, "paused": False},
        }
        autoscaled = {**deployment, "spec": {"paused": False, "minReadySeconds": 1}}
        await apply(api, deployment)
        _, stored = await apply(api, autoscaled)  # autoscaling turned on
        # not `replicas: null`: the API server would default it to 1 (5 workers down to 1)
        assert "replicas" not in sent[-1]["spec"]
        assert stored["spec"]["replicas"] == 5
        assert (await apply(api, autoscaled))[0] == "unchanged"
        # suspended (0), then autoscaled again: deleted, as an HPA never scales up from 0
        await apply(api, {**deployment, "spec": {"replicas": 0, "paused": False}})
        await apply(api, autoscaled)
        assert sent[-1]["spec"]["replicas"] is None
        await api.close()


async def test_last_applied_records_key_paths_and_an_older_full_record_still_works() -> None:
    async with running_emulator() as emulator:
        api = KubeApi(str(emulator.url).rstrip("/"))
        path = resource_path("ConfigMap", "ns", "c")
        cm = CONFIG_MAP
        _, stored = await apply(api, cm)
        record = json.loads(stored["metadata"]["annotations"][LAST_APPLIED])
        assert record["data"] == {"drop": 1, "keep": 1}  # the paths, not the values
        # What an operator that recorded whole values left behind: read the same way.
        full = json.dumps({"data": cm["data"], "metadata": cm["metadata"]})
        await api.merge_patch(path, {"metadata": {"annotations": {LAST_APPLIED: full}}})
        _, stored = await apply(api, {**cm, "data": {"keep": "1"}})
        assert stored["data"] == {"keep": "1"}
        await api.close()


async def test_apply_takes_back_its_own_orphans_but_never_someone_elses_object() -> None:
    async with running_emulator() as emulator:
        api = KubeApi(str(emulator.url).rstrip("/"))
        labels = {"klio.io/job": "j", "app.kubernetes.io/managed-by": "klio-operator"}
        owner = {"apiVersion": "klio.io/v1alpha1", "kind": "KlioJob", "name": "j"}
        ours = {**owner, "uid": "uid-1", "controller": True}
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns", "labels": labels},
            "data": {"k": "1"},
        }
        path = resource_path("ConfigMap", "ns", "a")
        # left by `kubectl delete --cascade=orphan` of an earlier job: its labels, no owner
        await api.create(resource_path("ConfigMap", "ns"), cm)
        owned = {**cm, "metadata": {**cm["metadata"], "ownerReferences": [ours]}}
        outcome, stored = await apply(api, owned, likely_absent=True)
        assert outcome == "updated" and stored["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        # controlled by another owner (say, an earlier job of that name being deleted)
        other = {**owner, "uid": "uid-0", "controller": True}
        await api.merge_patch(path, {"metadata": {"ownerReferences": [other]}})
        with pytest.raises(NotOwnedError, match="controlled by KlioJob j uid uid-0"):
            await apply(api, owned)
        # another app's object of that name: not labelled as ours
        await api.delete(path)
        theirs = {**cm, "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}}}
        await api.create(resource_path("ConfigMap", "ns"), theirs)
        with pytest.raises(NotOwnedError, match="ConfigMap a already exists"):
            await apply(api, owned, likely_absent=True)
        assert (await api.get(path) or {})["metadata"]["labels"] == {"app": "x"}
        await api.close()
