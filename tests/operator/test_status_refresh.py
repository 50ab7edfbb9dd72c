"""A status refresh starts from the job as last seen, and writes only over what it started from."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from klio_operator.handlers import refresh_status
from klio_operator.kube import resource_path
from klio_operator.settings import STORAGE_PREFIX

from tests.operator.harness import NS, OperatorUnderTest, operator_under_test

pytestmark = pytest.mark.usefixtures("pubsub_clean")

LAST_HANDLED = f"{STORAGE_PREFIX}/last-handled-configuration"


def ready_deployment(op: OperatorUnderTest, name: str) -> dict[str, Any]:
    """The job's Deployment as the Deployment controller would report it: all workers ready."""
    deployment = copy.deepcopy(op.objects("Deployment")[name])
    replicas = deployment["spec"].get("replicas", 1)
    deployment["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "readyReplicas": replicas,
        "updatedReplicas": replicas,
    }
    return deployment


async def first_status(op: OperatorUnderTest, name: str) -> None:
    """Run the operator until the job's first status and kopf's own annotation are written."""

    async def scenario() -> None:
        await op.apply_job(name)
        await op.wait(
            lambda: (
                op.condition_is(name, "WorkersReady", "False")
                and LAST_HANDLED in op.objects("KlioJob")[name]["metadata"].get("annotations", {})
            ),
            "first status, handled",
        )

    await op.run(scenario)


async def test_a_copy_behind_by_kopfs_own_annotation_is_written_over_without_a_read() -> None:
    async with operator_under_test() as op:
        await first_status(op, "j")
        stored = op.objects("KlioJob")["j"]
        # As the watch may still hold it: before kopf's annotation write (an older version).
        behind = copy.deepcopy(stored)
        behind["metadata"]["annotations"].pop(LAST_HANDLED)
        behind["metadata"]["resourceVersion"] = "1"
        op.context.latest[(NS, "j")] = behind
        op.api.tally.clear()

        await refresh_status(op.context, NS, "j", ready_deployment(op, "j"))

        assert op.condition_is("j", "Ready", "True")
        assert op.api.tally["FETCH kliojobs"] == 0
        assert op.api.tally["UPDATE kliojobs/status"] == 1
        # The write is what a refresh right after starts from.
        assert op.context.latest[(NS, "j")]["status"] == op.objects("KlioJob")["j"]["status"]


async def test_a_copy_with_an_old_status_is_refused_and_the_refresh_reads_again() -> None:
    async with operator_under_test() as op:
        await first_status(op, "j")
        op.context.latest[(NS, "j")] = copy.deepcopy(op.objects("KlioJob")["j"])
        # Someone wrote the status since the copy was taken: its word must not be lost.
        status = copy.deepcopy(op.objects("KlioJob")["j"]["status"])
        topics = next(c for c in status["conditions"] if c["type"] == "TopicsReady")
        topics["message"] = "checked again by another writer"
        await op.send("PATCH", resource_path("KlioJob", NS, "j", "status"), {"status": status})
        op.api.tally.clear()

        await refresh_status(op.context, NS, "j", ready_deployment(op, "j"))

        assert op.condition_is("j", "Ready", "True")
        topics_now = op.condition("j", "TopicsReady") or {}
        assert topics_now["message"] == "checked again by another writer"
        assert op.api.tally["UPDATE kliojobs/status"] == 2  # refused, then written
        assert op.api.tally["FETCH kliojobs"] == 1


async def test_a_copy_that_suggests_nothing_to_do_is_checked_against_a_fresh_read() -> None:
    async with operator_under_test() as op:
        await first_status(op, "j")
        # A copy from before the first status: on its word the reconcile still has to report.
        unreconciled = copy.deepcopy(op.objects("KlioJob")["j"])
        unreconciled.pop("status")
        op.context.latest[(NS, "j")] = unreconciled

        await refresh_status(op.context, NS, "j", ready_deployment(op, "j"))

        assert op.condition_is("j", "Ready", "True")
