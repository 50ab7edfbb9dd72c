"""The extended kmock emulator answers as the API server does where kopf and we rely on it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.kube.emulator import KlioKubernetesEmulator, label_selector_matcher, running_emulator

CM = "/api/v1/namespaces/ns/configmaps"
KJ = "/apis/klio.io/v1alpha1/namespaces/ns/kliojobs"


@pytest.fixture
async def api() -> AsyncIterator[KlioKubernetesEmulator]:
    async with running_emulator() as emulator:
        yield emulator


async def call(
    api: KlioKubernetesEmulator,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/merge-patch+json",
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    async with api.request(method, path, data=data, headers={"Content-Type": content_type}) as r:
        return r.status, await r.json()


async def test_create_fills_server_side_metadata(api: KlioKubernetesEmulator) -> None:
    status, obj = await call(api, "POST", CM, {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    assert status == 200
    meta = obj["metadata"]
    assert meta["namespace"] == "ns" and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    status, _ = await call(api, "POST", CM, {"metadata": {"name": "c1"}})
    assert status == 409


async def test_patch_bumps_versions_and_generation_only_for_spec(
    api: KlioKubernetesEmulator,
) -> None:
    _, created = await call(api, "POST", KJ, {"metadata": {"name": "j"}, "spec": {"image": "a"}})
    _, labelled = await call(api, "PATCH", f"{KJ}/j", {"metadata": {"labels": {"x": "y"}}})
    assert int(labelled["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    assert labelled["metadata"]["generation"] == 1
    _, changed = await call(api, "PATCH", f"{KJ}/j", {"spec": {"image": "b"}})
    assert changed["metadata"]["generation"] == 2 and changed["spec"]["image"] == "b"
    _, fetched = await call(api, "GET", f"{KJ}/j")
    assert fetched["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


async def test_json_patch_applies_and_failed_test_op_is_422(api: KlioKubernetesEmulator) -> None:
    await call(api, "POST", CM, {"metadata": {"name": "c", "finalizers": ["f1", "f2"]}})
    ok = [
        {"op": "test", "path": "/metadata/finalizers/0", "value": "f1"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]
    status, obj = await call(api, "PATCH", f"{CM}/c", ok, "application/json-patch+json")
    assert status == 200 and obj["metadata"]["finalizers"] == ["f2"]
    status, body = await call(api, "PATCH", f"{CM}/c", ok, "application/json-patch+json")
    assert status == 422 and body["code"] == 422


async def test_status_subresource_is_isolated(api: KlioKubernetesEmulator) -> None:
    await call(
        api, "POST", KJ, {"metadata": {"name": "j"}, "spec": {"image": "a"}, "status": {"p": 1}}
    )
    _, obj = await call(api, "GET", f"{KJ}/j")
    assert "status" not in obj  # dropped on create
    _, obj = await call(
        api, "PATCH", f"{KJ}/j/status", {"status": {"phase": "Ready"}, "spec": {"image": "z"}}
    )
    assert obj["status"] == {"phase": "Ready"} and obj["spec"]["image"] == "a"
    assert obj["metadata"]["generation"] == 1
    _, obj = await call(
        api, "PATCH", f"{KJ}/j", {"status": {"phase": "Lost"}, "spec": {"image": "b"}}
    )
    assert obj["status"] == {"phase": "Ready"} and obj["spec"]["image"] == "b"


async def test_list_has_real_resource_version_and_label_selectors(
    api: KlioKubernetesEmulator,
) -> None:
    for name, labels in [("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {})]:
        await call(api, "POST", CM, {"metadata": {"name": name, "labels": labels}})
    _, listed = await call(api, "GET", CM)
    assert int(listed["metadata"]["resourceVersion"]) >= 3
    _, listed = await call(api, "GET", f"{CM}?labelSelector=app%3Dx")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a"]
    _, listed = await call(api, "GET", f"{CM}?labelSelector=app%20in%20(x,y),!tier")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["b"]


def test_label_selector_grammar() -> None:
    labels = {"a": "1", "b": "2"}
    assert label_selector_matcher("a=1,b==2")(labels)
    assert not label_selector_matcher("a!=1")(labels)
    assert label_selector_matcher("a,!c,b notin (3, 4)")(labels)
    assert not label_selector_matcher("c in (1)")(labels)


async def read_events(api: KlioKubernetesEmulator, path: str, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with api.request("GET", path) as response:
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
                if len(events) == count:
                    break
    return events


async def test_watch_from_resource_version_replays_only_later_changes(
    api: KlioKubernetesEmulator,
) -> None:
    await call(api, "POST", CM, {"metadata": {"name": "old"}})
    _, listed = await call(api, "GET", CM)
    since = listed["metadata"]["resourceVersion"]
    await call(api, "POST", CM, {"metadata": {"name": "new"}})  # after the LIST, before the WATCH
    reader = asyncio.create_task(read_events(api, f"{CM}?watch=true&resourceVersion={since}", 2))
    await call(api, "PATCH", f"{CM}/old", {"data": {"k": "v"}})
    events = await asyncio.wait_for(reader, timeout=5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "new"),
        ("MODIFIED", "old"),
    ]


async def test_a_later_patch_leaves_earlier_versions_and_their_events_alone(
    api: KlioKubernetesEmulator,
) -> None:
    await call(api, "POST", CM, {"metadata": {"name": "first"}})  # a version to watch from
    _, created = await call(api, "POST", KJ, {"metadata": {"name": "j"}, "spec": {"v": 1}})
    since = str(int(created["metadata"]["resourceVersion"]) - 1)
    await call(api, "PATCH", f"{KJ}/j", {"spec": {"v": 2}})  # metadata untouched by the patch
    events = await asyncio.wait_for(
        read_events(api, f"{KJ}?watch=true&resourceVersion={since}", 2), timeout=5
    )
    # Each event is the object as it was: generation and spec always agree.
    assert [(e["object"]["metadata"]["generation"], e["object"]["spec"]) for e in events] == [
        (1, {"v": 1}),
        (2, {"v": 2}),
    ]
    assert (
        events[0]["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    )


async def test_json_and_status_patches_leave_earlier_versions_alone(
    api: KlioKubernetesEmulator,
) -> None:
    # Versions share the stanzas they did not change: a patch must copy what it changes.
    await call(api, "POST", CM, {"metadata": {"name": "first"}})  # a version to watch from
    _, created = await call(api, "POST", KJ, {"metadata": {"name": "j"}, "spec": {"v": {"n": 1}}})
    since = str(int(created["metadata"]["resourceVersion"]) - 1)
    await call(api, "PATCH", f"{KJ}/j/status", {"status": {"a": {"b": 1}}})
    json_patch = "application/json-patch+json"
    status, _ = await call(
        api,
        "PATCH",
        f"{KJ}/j/status",
        [
            {"op": "test", "path": "/status/a/b", "value": 1},
            {"op": "replace", "path": "/status/a/b", "value": 2},
        ],
        json_patch,
    )
    assert status == 200
    await call(
        api, "PATCH", f"{KJ}/j", [{"op": "replace", "path": "/spec/v/n", "value": 3}], json_patch
    )
    events = await asyncio.wait_for(
        read_events(api, f"{KJ}?watch=true&resourceVersion={since}", 4), timeout=5
    )
    assert [(e["object"]["spec"], e["object"].get("status")) for e in events] == [
        ({"v": {"n": 1}}, None),
        ({"v": {"n": 1}}, {"a": {"b": 1}}),
        ({"v": {"n": 1}}, {"a": {"b": 2}}),
        ({"v": {"n": 3}}, {"a": {"b": 2}}),
    ]


async def test_json_patches_into_lists_and_copies_leave_earlier_versions_alone(
    api: KlioKubernetesEmulator,
) -> None:
    await call(api, "POST", CM, {"metadata": {"name": "first"}})  # a version to watch from
    spec = {"items": [{"n": 1}], "v": {"n": 1}}
    _, created = await call(api, "POST", KJ, {"metadata": {"name": "j"}, "spec": spec})
    since = str(int(created["metadata"]["resourceVersion"]) - 1)
    json_patch = "application/json-patch+json"
    into_list = [
        {"op": "replace", "path": "/spec/items/0/n", "value": 2},
        {"op": "add", "path": "/spec/items/-", "value": {"n": 3}},
    ]
    # A copy, then a change inside the copy: the value copied must not be shared.
    copied = [
        {"op": "copy", "from": "/spec/v", "path": "/spec/w"},
        {"op": "replace", "path": "/spec/w/n", "value": 9},
    ]
    for operations in (into_list, copied):
        status, _ = await call(api, "PATCH", f"{KJ}/j", operations, json_patch)
        assert status == 200
    events = await asyncio.wait_for(
        read_events(api, f"{KJ}?watch=true&resourceVersion={since}", 3), timeout=5
    )
    assert [e["object"]["spec"] for e in events] == [
        {"items": [{"n": 1}], "v": {"n": 1}},
        {"items": [{"n": 2}, {"n": 3}], "v": {"n": 1}},
        {"items": [{"n": 2}, {"n": 3}], "v": {"n": 1}, "w": {"n": 9}},
    ]


async def test_watch_without_version_starts_with_current_state(api: KlioKubernetesEmulator) -> None:
    await call(api, "POST", CM, {"metadata": {"name": "a", "labels": {"k": "1"}}})
    await call(api, "POST", CM, {"metadata": {"name": "b"}})
    seen: list[tuple[str, str]] = []
    async with api.request("GET", f"{CM}?watch=true&labelSelector=k") as response:
        async with asyncio.timeout(5):
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                seen.append((event["type"], event["object"]["metadata"]["name"]))
                if len(seen) == 1:  # the watch is established: change something now
                    await call(api, "DELETE", f"{CM}/a")
                    await call(api, "DELETE", f"{CM}/b")
                else:
                    break
    assert seen == [("ADDED", "a"), ("DELETED", "a")]


async def test_watch_honours_timeout_seconds(api: KlioKubernetesEmulator) -> None:
    async with api.request("GET", f"{CM}?watch=true&timeoutSeconds=0.2") as response:
        body = await asyncio.wait_for(response.read(), timeout=5)
    assert body.strip() == b""


async def test_finalizer_blocks_deletion_until_removed(api: KlioKubernetesEmulator) -> None:
    await call(
        api, "POST", KJ, {"metadata": {"name": "j", "finalizers": ["klio.io/x"]}, "spec": {}}
    )
    status, obj = await call(api, "DELETE", f"{KJ}/j")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    status, _ = await call(api, "GET", f"{KJ}/j")
    assert status == 200
    await call(api, "PATCH", f"{KJ}/j", {"metadata": {"finalizers": None}})
    status, _ = await call(api, "GET", f"{KJ}/j")
    assert status == 404
    status, _ = await call(api, "DELETE", f"{KJ}/j")
    assert status == 404


async def test_owner_references_are_garbage_collected(api: KlioKubernetesEmulator) -> None:
    _, owner = await call(api, "POST", KJ, {"metadata": {"name": "j"}, "spec": {}})
    ref = {
        "apiVersion": "klio.io/v1alpha1",
        "kind": "KlioJob",
        "name": "j",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    _, child = await call(
        api, "POST", CM, {"metadata": {"name": "child", "ownerReferences": [ref]}}
    )
    grand_ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "child",
        "uid": child["metadata"]["uid"],
    }
    await call(
        api,
        "POST",
        "/api/v1/namespaces/ns/pods",
        {"metadata": {"name": "grandchild", "ownerReferences": [grand_ref]}},
    )
    await call(api, "POST", CM, {"metadata": {"name": "bystander"}})
    await call(api, "DELETE", f"{KJ}/j")
    names = sorted(o["metadata"]["name"] for o in api.live_objects())
    assert names == ["bystander"]


async def test_discovery_declares_namespaces_and_kliojobs(api: KlioKubernetesEmulator) -> None:
    _, core = await call(api, "GET", "/api/v1")
    assert {"namespaces", "configmaps", "events"} <= {r["name"] for r in core["resources"]}
    _, klio = await call(api, "GET", "/apis/klio.io/v1alpha1")
    assert {"kliojobs", "kliojobs/status"} <= {r["name"] for r in klio["resources"]}
    status, _ = await call(api, "GET", "/apis/monitoring.coreos.com/v1")
    assert status == 404
    async with running_emulator(optional_groups=("monitoring.coreos.com",)) as with_prometheus:
        status, _ = await call(with_prometheus, "GET", "/apis/monitoring.coreos.com/v1")
        assert status == 200


async def test_patch_with_stale_resource_version_conflicts(api: KlioKubernetesEmulator) -> None:
    _, obj = await call(api, "POST", KJ, {"metadata": {"name": "j"}, "spec": {"image": "a"}})
    seen = obj["metadata"]["resourceVersion"]
    await call(api, "PATCH", f"{KJ}/j/status", {"status": {"phase": "Running"}})
    status, _ = await call(
        api, "PATCH", f"{KJ}/j/status", {"metadata": {"resourceVersion": seen}, "status": {}}
    )
    assert status == 409
    _, fresh = await call(api, "GET", f"{KJ}/j")
    status, _ = await call(
        api,
        "PATCH",
        f"{KJ}/j/status",
        {
            "metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"]},
            "status": {"phase": "X"},
        },
    )
    assert status == 200
