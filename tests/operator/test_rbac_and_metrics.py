"""RBAC covers every call the operator makes; the operator's metrics are exposed."""

from __future__ import annotations

from klio_operator import rbac
from klio_operator.kube import CHILD_KINDS, KINDS
from klio_operator.metrics import OperatorMetrics
from prometheus_client import generate_latest


def allowed(group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rbac.RULES
        if rule.api_group == group and resource in rule.resources
        for verb in rule.verbs
    }


def test_every_child_kind_can_be_applied_and_pruned() -> None:
    for kind in CHILD_KINDS:
        api_version, plural = KINDS[kind]
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        assert {"get", "list", "create", "patch", "delete"} <= allowed(group, plural), kind


def test_watched_resources_and_status() -> None:
    assert {"list", "watch", "patch"} <= allowed("klio.io", "kliojobs")
    assert "patch" in allowed("klio.io", "kliojobs/status")
    for group, plural in (("apps", "deployments"), ("batch", "jobs"), ("", "pods")):
        assert {"list", "watch"} <= allowed(group, plural)
    assert allowed("", "events") == {"create"}
    assert not any("*" in r.verbs or "*" in r.resources for r in rbac.RULES)  # least privilege


def test_children_that_block_their_owners_deletion_may_be_made() -> None:
    # With the OwnerReferencesPermissionEnforcement admission plugin (OpenShift's default), an
    # ownerReference with blockOwnerDeletion needs `update` on the owner's finalizers.
    from klio_operator.models import parse_spec
    from klio_operator.planning import Owner, plan_job

    plan = plan_job(Owner("j", "team", "uid-1"), parse_spec({"image": "r/j:1"}))
    blocking = [c for c in plan.children if c["metadata"]["ownerReferences"][0].get(
        "blockOwnerDeletion")]
    assert blocking and "update" in allowed("klio.io", "kliojobs/finalizers")


def test_policy_rules_split_by_scope() -> None:
    cluster = rbac.policy_rules(cluster_scoped=True)
    assert {r["resources"][0] for r in cluster} == {"customresourcedefinitions", "namespaces"}
    assert len(rbac.policy_rules()) == len(rbac.RULES)


def test_metrics_are_exposed_with_phases() -> None:
    metrics = OperatorMetrics()
    metrics.reconciles.labels(result="success").inc()
    metrics.reconcile_duration.observe(0.02)
    metrics.pubsub_errors.inc()
    metrics.set_phase("ns", "a", "Running")
    metrics.set_phase("ns", "b", "Running")
    metrics.set_phase("ns", "b", None)
    text = generate_latest(metrics.registry).decode()
    assert 'klio_operator_reconciles_total{result="success"} 1.0' in text
    assert "klio_operator_reconcile_duration_seconds_count 1.0" in text
    assert 'klio_operator_kliojobs{phase="Running"} 1.0' in text
    assert "klio_operator_pubsub_admin_errors_total 1.0" in text


def test_jobs_by_phase_follow_each_jobs_moves() -> None:
    metrics = OperatorMetrics()
    metrics.set_phase("ns", "a", "Pending")
    metrics.set_phase("ns", "b", "Pending")
    metrics.set_phase("ns", "a", "Running")
    metrics.set_phase("ns", "a", "Running")  # the same again counts once
    metrics.set_phase("other", "a", "Degraded")
    metrics.set_phase("ns", "b", None)
    metrics.set_phase("ns", "gone", None)  # never seen: nothing moves
    text = generate_latest(metrics.registry).decode()
    assert 'klio_operator_kliojobs{phase="Pending"} 0.0' in text
    assert 'klio_operator_kliojobs{phase="Running"} 1.0' in text
    assert 'klio_operator_kliojobs{phase="Degraded"} 1.0' in text
    assert 'klio_operator_kliojobs{phase="Succeeded"} 0.0' in text
