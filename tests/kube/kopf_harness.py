"""Run a real kopf operator against the emulator for the duration of a test scenario."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import kopf

from tests.kube.emulator import KlioKubernetesEmulator

T = TypeVar("T")


def add_emulator_login(registry: kopf.OperatorRegistry, emulator: KlioKubernetesEmulator) -> None:
    """Make kopf talk to the emulator instead of looking for a kubeconfig."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(emulator.url).rstrip("/"), scheme=None)


def fast_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """Settings that keep tests quick: standalone, short backoffs, quiet progress storage."""
    settings = settings or kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.watching.reconnect_backoff = 0.1
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 1.0
    settings.posting.level = logging.WARNING
    return settings


async def run_with_operator(
    scenario: Callable[[], Awaitable[T]],
    *,
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings | None = None,
    memo: Any = None,
    namespaces: tuple[str, ...] = (),
    ready_timeout: float = 10.0,
) -> T:
    """Run `scenario` while kopf runs; stop kopf when it ends and return its result.

    kopf cancels the tasks created after it started, so the scenario's task is created first
    and kopf runs in the calling task, as its harness expects.
    """
    stop, ready = asyncio.Event(), asyncio.Event()

    async def guarded() -> T:
        try:
            await asyncio.wait_for(ready.wait(), timeout=ready_timeout)
            return await scenario()
        finally:
            stop.set()

    task = asyncio.create_task(guarded())
    await kopf.operator(
        registry=registry,
        settings=fast_settings(settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        stop_flag=stop,
        ready_flag=ready,
        memo=memo,
        standalone=True,
    )
    return await task


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll a cheap in-memory predicate until it holds, failing with `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
