"""kopf's whole create → update → delete cycle, with its finalizer, runs against the emulator."""

from __future__ import annotations

import json
from typing import Any

import kopf

from tests.kube.emulator import running_emulator
from tests.kube.kopf_harness import add_emulator_login, run_with_operator, wait_until

KJ = "/apis/klio.io/v1alpha1/namespaces/ns/kliojobs"


async def test_kopf_create_update_delete_cycle_with_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    seen: list[tuple[str, str]] = []

    @kopf.on.create("klio.io", "v1alpha1", "kliojobs", registry=registry)
    def created(name: str, patch: kopf.Patch, **_: Any) -> None:
        seen.append(("create", name))
        patch.status["phase"] = "Running"

    @kopf.on.update("klio.io", "v1alpha1", "kliojobs", registry=registry)
    def updated(name: str, **_: Any) -> None:
        seen.append(("update", name))

    @kopf.on.delete("klio.io", "v1alpha1", "kliojobs", registry=registry)
    def deleted(name: str, **_: Any) -> None:
        seen.append(("delete", name))

    async with running_emulator() as api:
        add_emulator_login(registry, api)
        # One object exists before the operator starts: it must be handled too.
        body = {"metadata": {"name": "early"}, "spec": {"image": "a"}}
        await api.post(KJ, data=json.dumps(body))

        def stored(name: str) -> dict[str, Any] | None:
            for obj in api.live_objects("klio.io/v1alpha1/kliojobs"):
                if obj["metadata"]["name"] == name:
                    return obj
            return None

        async def scenario() -> None:
            await wait_until(lambda: ("create", "early") in seen, what="early object created")
            late = {"metadata": {"name": "late"}, "spec": {"image": "a"}}
            await api.post(KJ, data=json.dumps(late))
            await wait_until(
                lambda: (stored("late") or {}).get("status", {}).get("phase") == "Running",
                what="status of late",
            )
            assert stored("late")["metadata"]["finalizers"]  # type: ignore[index]
            await api.patch(
                f"{KJ}/late",
                data=json.dumps({"spec": {"image": "b"}}),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            await wait_until(lambda: ("update", "late") in seen, what="update handled")
            await api.delete(f"{KJ}/late")
            await wait_until(lambda: stored("late") is None, what="late deleted")

        await run_with_operator(scenario, registry=registry)
    assert ("delete", "late") in seen
