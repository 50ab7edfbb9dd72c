"""The chart grants exactly what operator/klio_operator/rbac.py lists, and its args parse."""

from __future__ import annotations

from typing import Any

import pytest
from klio_operator import rbac
from klio_operator.cli import main as operator_cli

from tests.helm.chart import by_kind, one, render
from tests.helm.clicheck import parse_command_line

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def grants(rules: list[dict[str, Any]]) -> set[Grant]:
    """Rules flattened to single grants, so grouping and order do not matter."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rules_are_exact_and_never_wildcards() -> None:
    for rule in rbac.policy_rules():
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule


def test_cluster_wide_install_grants_exactly_the_operator_rules() -> None:
    objects = render()
    assert not by_kind(objects, "Role")
    assert grants(one(objects, "ClusterRole")["rules"]) == grants(
        rbac.policy_rules(watching_all=True)
    )
    # kopf watching every namespace never looks at namespaces (before: get, list and watch)
    assert "namespaces" not in {r for _, r, _ in grants(one(objects, "ClusterRole")["rules"])}


def test_namespaced_install_splits_the_rules_by_scope() -> None:
    objects = render(values={"watchNamespaces": ["audio-team", "podcasts"]})
    cluster_role = one(objects, "ClusterRole")
    assert grants(cluster_role["rules"]) == grants(rbac.policy_rules(cluster_scoped=True))
    roles = by_kind(objects, "Role")
    assert len(roles) == 2
    for role in roles:
        assert grants(role["rules"]) == grants(rbac.policy_rules(cluster_scoped=False))


def test_comparison_catches_a_missing_verb() -> None:
    rules = rbac.policy_rules()
    trimmed = [dict(rule, verbs=rule["verbs"][:-1]) if i == 0 else rule
               for i, rule in enumerate(rules)]
    assert grants(trimmed) != grants(rules)


@pytest.mark.parametrize("values", [
    {},
    {"watchNamespaces": ["audio-team", "podcasts"]},
    {"operator": {"logLevel": "debug"}, "health": {"port": 8081}, "metrics": {"port": 9091}},
], ids=["all-namespaces", "two-namespaces", "ports-and-debug"])
def test_deployment_args_parse_with_the_operator_cli(values: dict[str, Any]) -> None:
    deployment = one(render(values=values), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    params = parse_command_line(operator_cli, container["args"])
    assert params["namespaces"] == tuple(values.get("watchNamespaces", ()))
    assert params["all_namespaces"] is (not values.get("watchNamespaces"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert params["health_port"] == ports["health"]
    assert params["metrics_port"] == ports["metrics"]
    assert params["log_level"] == values.get("operator", {}).get("logLevel", "info")


def test_bad_args_would_be_caught() -> None:
    import click

    with pytest.raises(click.BadParameter):
        parse_command_line(operator_cli, ["run", "--log-level=INFO"])
