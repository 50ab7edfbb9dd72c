"""The Kubernetes permissions the operator needs: the one list the Helm chart must match.

Derived from the calls in `kube.py` (get / list / create / patch / delete of children, status
patches, annotation patches on KlioJobs), from kopf (watching KlioJobs and the workloads and
pods it reacts to, posting Events, scanning CRDs, and namespaces when it watches a list of them)
and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHILD_VERBS = ("get", "list", "create", "patch", "delete")
WATCHED_CHILD_VERBS = ("get", "list", "watch", "create", "patch", "delete")


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    cluster_scoped: bool = False  # resources that exist only cluster-wide
    watching_some_only: bool = False  # needed only by an operator watching a list of namespaces

    def as_policy_rule(self) -> dict[str, Any]:
        return {
            "apiGroups": [self.api_group],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


RULES: tuple[Rule, ...] = (
    # kopf: follow new CRDs while it runs; and, watching a list of namespaces, which of them
    # exist (watching all, it never looks at namespaces). Neither is read one by one.
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"), True),
    Rule("", ("namespaces",), ("list", "watch"), True, watching_some_only=True),
    # KlioJobs: watched by kopf; finalizer, progress annotations and "parent changed" touches.
    Rule("klio.io", ("kliojobs",), ("get", "list", "watch", "patch")),
    Rule("klio.io", ("kliojobs/status",), ("patch",)),
    # Children name their KlioJob with blockOwnerDeletion: where the OwnerReferencesPermission-
    # Enforcement admission plugin runs (OpenShift), making them needs this.
    Rule("klio.io", ("kliojobs/finalizers",), ("update",)),
    # Children the operator applies and prunes.
    Rule("", ("configmaps", "services"), CHILD_VERBS),
    Rule("apps", ("deployments",), WATCHED_CHILD_VERBS),  # watched: worker readiness
    Rule("batch", ("jobs",), WATCHED_CHILD_VERBS),  # watched: batch / launcher progress
    Rule("autoscaling", ("horizontalpodautoscalers",), CHILD_VERBS),
    Rule("monitoring.coreos.com", ("servicemonitors",), CHILD_VERBS),
    Rule("keda.sh", ("scaledobjects",), CHILD_VERBS),
    # Worker pods: watched to report ImagePullBackOff / CrashLoopBackOff / Unschedulable (kopf's
    # index; listed by label when it is not running). Never read one by one.
    Rule("", ("pods",), ("list", "watch")),
    # Kubernetes Events about KlioJobs (kopf.warn / kopf's own handler events).
    Rule("", ("events",), ("create",)),
)


def policy_rules(
    cluster_scoped: bool | None = None, *, watching_all: bool = False
) -> list[dict[str, Any]]:
    """PolicyRules (as in a Role / ClusterRole); filter on scope when given, and leave out what
    an operator watching all namespaces does not need."""
    return [
        rule.as_policy_rule()
        for rule in RULES
        if (cluster_scoped is None or rule.cluster_scoped == cluster_scoped)
        and not (watching_all and rule.watching_some_only)
    ]
