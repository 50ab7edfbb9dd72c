"""The operator under test: real kopf + our handlers, the extended kmock API, real Pub/Sub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import kopf
import yaml
from google.api_core import exceptions as gexc
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport
from klio_operator import worker_contract
from klio_operator.handlers import OperatorContext, parent_info, register, summarize
from klio_operator.kube import KubeApi, resource_path
from klio_operator.metrics import OperatorMetrics
from klio_operator.models import parse_spec
from klio_operator.planning import ClusterFacts, Owner, PubSubPlan, plan_job
from klio_operator.pubsub_admin import AsyncPubSubAdmin

from tests.kube.emulator import KlioKubernetesEmulator, running_emulator
from tests.kube.kopf_harness import add_emulator_login, run_with_operator, wait_until

T = TypeVar("T")
NS = "team"
PROJECT = "klio-local"


@dataclass
class OperatorUnderTest:
    api: KlioKubernetesEmulator
    registry: kopf.OperatorRegistry
    context: OperatorContext

    async def run(self, scenario: Callable[[], Awaitable[T]]) -> T:
        return await run_with_operator(
            scenario, registry=self.registry, memo=kopf.Memo(klio=self.context)
        )

    async def send(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/merge-patch+json"}
        data = None if body is None else json.dumps(body)
        async with self.api.request(method, path, data=data, headers=headers) as response:
            return await response.json()

    async def apply_job(self, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": "klio.io/v1alpha1",
            "kind": "KlioJob",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"image": "registry.example/klio/job:1", **spec},
        }
        await self.send("POST", resource_path("KlioJob", NS), body)

    async def delete_job(self, name: str) -> None:
        await self.send("DELETE", resource_path("KlioJob", NS, name))

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        from klio_operator.kube import KINDS

        api_version, plural = KINDS[kind]
        return {
            obj["metadata"]["name"]: obj
            for obj in self.api.live_objects(f"{api_version}/{plural}")
            if obj["metadata"].get("namespace") == NS
        }

    def condition(self, job: str, type_: str) -> dict[str, Any] | None:
        status = self.objects("KlioJob").get(job, {}).get("status") or {}
        for condition in status.get("conditions") or []:
            if condition["type"] == type_:
                return dict(condition)
        return None

    def condition_is(self, job: str, type_: str, status: str, reason: str | None = None) -> bool:
        condition = self.condition(job, type_) or {}
        return condition.get("status") == status and (
            reason is None or condition.get("reason") == reason
        )

    async def play_deployment_controller(self, name: str) -> None:
        """What the Deployment controller would do: report the workers ready."""
        deployment = self.objects("Deployment")[name]
        replicas = deployment["spec"].get("replicas", 1)
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        }
        await self.send(
            "PATCH", resource_path("Deployment", NS, name, "status"), {"status": status}
        )

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
        await wait_until(predicate, timeout=timeout, what=what)


@contextlib.asynccontextmanager
async def operator_under_test(
    optional_groups: tuple[str, ...] = (),
) -> AsyncIterator[OperatorUnderTest]:
    registry = kopf.OperatorRegistry()
    register(registry)
    async with running_emulator(optional_groups) as api:
        add_emulator_login(registry, api)
        kube = KubeApi(str(api.url).rstrip("/"))
        pubsub = AsyncPubSubAdmin(timeout=10)
        context = OperatorContext(
            kube=kube, pubsub=pubsub, metrics=OperatorMetrics(), retry_delay=0.3
        )
        try:
            yield OperatorUnderTest(api, registry, context)
        finally:
            await kube.close()
            await pubsub.close()


@contextlib.asynccontextmanager
async def pubsub_inspector() -> AsyncIterator[tuple[PublisherAsyncClient, SubscriberAsyncClient]]:
    """google-cloud-pubsub's own clients on the emulator: what tests read Pub/Sub with, apart
    from the admin under test."""
    channel = grpc.aio.insecure_channel(os.environ["PUBSUB_EMULATOR_HOST"])
    try:
        yield (
            PublisherAsyncClient(transport=PublisherGrpcAsyncIOTransport(channel=channel)),
            SubscriberAsyncClient(transport=SubscriberGrpcAsyncIOTransport(channel=channel)),
        )
    finally:
        await channel.close()


async def pubsub_names(project: str = PROJECT) -> tuple[set[str], set[str]]:
    """Every topic and subscription of the project on the emulator."""
    request = {"project": f"projects/{project}"}
    async with pubsub_inspector() as (publisher, subscriber):
        try:
            topics = {t.name async for t in await publisher.list_topics(request=request)}
            subs = {s.name async for s in await subscriber.list_subscriptions(request=request)}
        except gexc.NotFound:
            return set(), set()
    return topics, subs


async def emulator_subscription(name: str) -> Any:
    """The subscription as the emulator has it (raises google.api_core's NotFound)."""
    async with pubsub_inspector() as (_, subscriber):
        return await subscriber.get_subscription(subscription=name)


def worker_inputs(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """From `klio-operator render` output: the rendered klio-job.yaml and the worker
    container's literal environment."""
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == list(worker_contract.WORKER_COMMAND)
    env = {var["name"]: var["value"] for var in container["env"] if "value" in var}
    return yaml.safe_load(config_map["data"][worker_contract.CONFIG_FILE]), env


def pubsub_plans(namespace: str, specs: dict[str, dict[str, Any]]) -> dict[str, PubSubPlan]:
    """What the operator ensures for each job (the same planning its handlers run)."""
    facts = ClusterFacts(default_project=PROJECT)
    summaries = {name: summarize(name, spec, facts) for name, spec in specs.items()}
    plans = {}
    for name, raw in specs.items():
        spec = parse_spec(raw)
        parents = [parent_info(namespace, summaries[p], summaries, facts) for p in spec.parents]
        plans[name] = plan_job(Owner(name, namespace), spec, parents, facts).pubsub
    return plans


def apply_plans(plans: Iterable[PubSubPlan]) -> None:
    """Ensure each plan's topics and subscriptions, as the operator does (for blocking tests)."""

    async def apply() -> None:
        admin = AsyncPubSubAdmin()
        try:
            for plan in plans:
                await admin.apply(plan)
        finally:
            await admin.close()

    asyncio.run(apply())


def remove_plans(plans: Iterable[PubSubPlan]) -> None:
    """Delete what :func:`apply_plans` made (absent resources are skipped)."""

    async def remove() -> None:
        admin = AsyncPubSubAdmin()
        try:
            for plan in plans:
                await admin.remove(
                    [s.name for s in plan.subscriptions], [t.name for t in plan.topics]
                )
        finally:
            await admin.close()

    asyncio.run(remove())
