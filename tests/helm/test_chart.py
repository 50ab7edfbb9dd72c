"""The chart lints, renders valid objects for every documented variant, and refuses bad values."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helm.chart import (
    CHART,
    NAMESPACE,
    REPO,
    VARIANTS,
    assert_pod_security_restricted,
    by_kind,
    one,
    render,
    run_helm,
    template_args,
)

VARIANT_IDS = [path.name for path in VARIANTS]
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas we have.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
# Kinds that come from CRDs: kubernetes-validate has no schema for them and only warns.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def test_variants_are_documented() -> None:
    assert VARIANTS, "helm/klio/ci/*-values.yaml: no values variants found"
    readme = (CHART / "README.md").read_text()
    for path in VARIANTS:
        assert f"ci/{path.name}" in readme, f"chart README does not mention variant ci/{path.name}"


@pytest.mark.parametrize("variant", [None, *VARIANTS], ids=["default", *VARIANT_IDS])
def test_lint_strict(variant: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["--values", str(variant)] if variant else [])
    proc = run_helm(args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("variant", [None, *VARIANTS], ids=["default", *VARIANT_IDS])
def test_rendered_objects_validate_strictly(variant: Path | None) -> None:
    objects = render([variant] if variant else [])
    assert objects
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CRD_KINDS:
            continue  # checked by the tests below and tests/prometheus (promtool)
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{name} invalid for Kubernetes {version}: {err.message} at {err.path}")


def test_defaults_render_the_operator_with_cluster_wide_rbac() -> None:
    objects = render()
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == [
        "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Service",
        "ServiceAccount",
    ]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "klio-operator:0.1.0"  # appVersion when no tag is set
    assert container["args"][:2] == ["run", "--all-namespaces"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert all(o["metadata"].get("namespace") in (None, NAMESPACE) for o in objects)


@pytest.mark.parametrize("variant", [None, *VARIANTS], ids=["default", *VARIANT_IDS])
def test_operator_pod_is_restricted_with_probes_and_resources(variant: Path | None) -> None:
    deployment = one(render([variant] if variant else []), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert_pod_security_restricted(pod)
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert set(ports) == {"metrics", "health"}
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert f"--health-port={ports['health']}" in container["args"]


def test_restricted_check_catches_a_privileged_pod() -> None:
    """The checker above is not vacuous."""
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(AssertionError, match="allowPrivilegeEscalation"):
        assert_pod_security_restricted(pod)


def test_metrics_service_selects_the_operator_pod() -> None:
    objects = render()
    service = one(objects, "Service")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_watch_namespaces_gives_roles_there_and_only_cluster_reads_cluster_wide() -> None:
    objects = render(values={"watchNamespaces": ["audio-team", "podcasts"]})
    roles = by_kind(objects, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["audio-team", "podcasts"]
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["audio-team", "podcasts"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=audio-team" in args and "--namespace=podcasts" in args
    assert "--all-namespaces" not in args
    role_resources = {r for rule in roles[0]["rules"] for r in rule["resources"]}
    assert "kliojobs" in role_resources
    for cluster_role in by_kind(objects, "ClusterRole"):
        resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
        assert not resources & role_resources, "namespaced permissions granted cluster-wide"


def test_existing_service_account_without_rbac() -> None:
    objects = render(
        values={"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}}
    )
    assert not by_kind(objects, "ServiceAccount") and not by_kind(objects, "ClusterRole")
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_image_digest_wins_over_tag() -> None:
    digest = "sha256:" + "ab" * 32
    objects = render(values={"image": {"repository": "r.example/klio-operator", "tag": "1.0",
                                       "digest": digest}})
    image = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"r.example/klio-operator@{digest}"


def test_pubsub_settings_reach_the_operator_environment() -> None:
    objects = render(values={"pubsub": {"project": "p1", "emulatorHost": "pubsub:8085",
                                        "credentialsSecret": "key", "driftCheckSeconds": 60}})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KLIO_OPERATOR_DRIFT_INTERVAL"] == "60"
    assert env["GOOGLE_CLOUD_PROJECT"] == "p1"
    assert env["PUBSUB_EMULATOR_HOST"] == "pubsub:8085"
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/google/key.json"
    assert {"name": "google-credentials", "secret": {"secretName": "key", "items": [
        {"key": "key.json", "path": "key.json"}]}} in pod["volumes"]


def test_monitoring_objects_point_at_the_metrics_service() -> None:
    monitoring = {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                  "prometheusRule": {"enabled": True}}
    objects = render(values={"metrics": monitoring})
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    rule = one(objects, "PrometheusRule")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert alerts == {"KlioOperatorDown", "KlioJobNotReady", "KlioJobDeadLetterGrowing",
                      "KlioJobSubscriptionBacklog"}
    by_alert = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert by_alert["KlioJobNotReady"]["for"] == "15m"
    down = by_alert["KlioOperatorDown"]
    assert f'service="{service["metadata"]["name"]}"' in down["expr"]


def test_crd_is_the_generated_file() -> None:
    """The chart links crds/kliojob.yaml, never a copy; helm package stores the real content."""
    link = CHART / "crds" / "kliojob.yaml"
    generated = REPO / "crds" / "kliojob.yaml"
    assert link.is_symlink(), "helm/klio/crds/kliojob.yaml must be a symlink to crds/kliojob.yaml"
    assert link.resolve() == generated.resolve()
    assert generated.is_file(), "crds/kliojob.yaml is missing: generate it (scripts/gen_crd.py)"
    crd = one(render(), "CustomResourceDefinition")
    assert crd == yaml.safe_load(generated.read_text())
    assert crd["metadata"]["name"] == "kliojobs.klio.io"


def test_package_contains_the_crd_content(tmp_path: Path) -> None:
    run_helm(["package", str(CHART), "--destination", str(tmp_path)])
    (archive,) = tmp_path.glob("klio-*.tgz")
    with tarfile.open(archive) as tar:
        member = tar.extractfile("klio/crds/kliojob.yaml")
        assert member is not None
        packaged = member.read().decode()
        names = tar.getnames()
    assert packaged == (REPO / "crds" / "kliojob.yaml").read_text()
    assert not [n for n in names if n.startswith("klio/ci/")], "ci/ values leak into the package"


BAD_VALUES = [
    ({"metrics": {"port": "9090"}}, "/metrics/port"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"metrics": {"prometheusRule": {"notReadyFor": "15 minutes"}}},
     "/metrics/prometheusRule/notReadyFor"),
    ({"replicaCount": 2}, "/replicaCount"),
    ({"watchNamespaces": "audio"}, "/watchNamespaces"),
    ({"watchNamespaces": ["Audio_Team"]}, "/watchNamespaces/0"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"operator": {"logLevel": "LOUD"}}, "/operator/logLevel"),
    ({"serviceAccount": {"annotations": {"a": 1}}}, "/serviceAccount/annotations/a"),
    ({"securityContext": {"allowPrivilegeEscalation": True}},
     "/securityContext/allowPrivilegeEscalation"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"securityContext": {"privileged": True}}, "/securityContext/privileged"),
    ({"metrics": {"prometheusRule": {"notReadyFor": "30s15m"}}},
     "/metrics/prometheusRule/notReadyFor"),  # Prometheus wants the largest unit first
    ({"resources": {"limits": {"gpu": 1}}}, "/resources/limits"),
    ({"pubsub": {"emulatorHost": "http://pubsub:8085"}}, "/pubsub/emulatorHost"),
    ({"pubsub": {"driftCheckSeconds": -1}}, "/pubsub/driftCheckSeconds"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "/tolerations/0/operator"),
    # Unknown keys at every level.
    ({"replicas": 1}, "additional properties 'replicas'"),
    ({"metrics": {"serviceMonitor": {"enable": True}}}, "additional properties 'enable'"),
    ({"pubsub": {"projectId": "x"}}, "additional properties 'projectId'"),
    ({"image": {"name": "x"}}, "additional properties 'name'"),
]


@pytest.mark.parametrize(("values", "complaint"), BAD_VALUES, ids=[c for _, c in BAD_VALUES])
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    proc = run_helm(template_args(values=values), check=False)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert complaint in proc.stderr, proc.stderr


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in {
            "resources", "podSecurityContext", "securityContext"
        }:
            keys += leaf_keys(value, f"{path}.")
        else:
            keys.append(path)
    return keys


def test_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    table = readme.split("\n## Values\n", 1)[1]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in leaf_keys(values) if key not in documented]
    assert not missing, f"chart README does not document: {missing}"
    unknown = [key for key in documented if key not in leaf_keys(values)]
    assert not unknown, f"chart README documents values that do not exist: {unknown}"


def test_schema_accepts_every_default_and_covers_every_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    assert schema["additionalProperties"] is False


def notes(*set_json: str) -> str:
    args = ["install", "klio", str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
            *set_json]
    out = run_helm(args).stdout
    return out.split("NOTES:", 1)[1]


def test_notes_give_next_steps_for_this_release() -> None:
    text = notes()
    assert f"kubectl -n {NAMESPACE} rollout status deployment/klio" in text
    assert "every namespace" in text
    assert "Set metrics.serviceMonitor.enabled=true" in text
    assert "no Pub/Sub credentials are configured" in text
    text = notes('--set-json=watchNamespaces=["audio-team"]',
                 '--set-json=metrics={"serviceMonitor":{"enabled":true}}',
                 '--set-json=pubsub={"credentialsSecret":"key"}')
    assert "namespaces: audio-team" in text
    assert "A ServiceMonitor scrapes it every 30s" in text
    assert "no Pub/Sub credentials" not in text


def test_chart_refuses_clusters_older_than_its_kube_version() -> None:
    proc = run_helm(["template", "klio", str(CHART), "--kube-version", "1.24.0"], check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr, proc.stderr
    run_helm(["template", "klio", str(CHART), "--kube-version", "1.25.0"])


def test_alerts_without_the_service_monitor_are_refused() -> None:
    args = template_args(values={"metrics": {"prometheusRule": {"enabled": True}}})
    proc = run_helm(args, check=False)
    assert proc.returncode != 0
    assert "metrics.prometheusRule.enabled needs metrics.serviceMonitor.enabled" in proc.stderr


@pytest.mark.parametrize(
    ("interval", "timeout", "refused"),
    [("30s", "10s", False), ("1m", "1m", False), ("1m30s", "90s", False),
     ("30s", "31s", True), ("1m30s", "90001ms", True)],
)
def test_a_scrape_timeout_longer_than_its_interval_is_refused(
    interval: str, timeout: str, refused: bool
) -> None:
    # Prometheus refuses to load a scrape config whose timeout exceeds its interval.
    monitor = {"enabled": True, "interval": interval, "scrapeTimeout": timeout}
    proc = run_helm(template_args(values={"metrics": {"serviceMonitor": monitor}}), check=False)
    assert (proc.returncode != 0) is refused, proc.stderr
    if refused:
        assert f"scrapeTimeout ({timeout}) must not exceed" in proc.stderr


def test_a_long_release_name_keeps_every_name_a_dns_label() -> None:
    # Helm allows release names of 53 characters: "-metrics" made the Service's 62 + 8
    release = "a" * 53
    proc = run_helm(["template", release, str(CHART), "--namespace", NAMESPACE])
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(proc.stdout) if d]
    assert names and all(len(name) <= 63 for name in names), names
    assert f"{'a' * 53}-klio"[:55] + "-metrics" in names


def test_the_same_port_for_health_and_metrics_is_refused() -> None:
    args = template_args(values={"health": {"port": 9090}, "metrics": {"port": 9090}})
    proc = run_helm(args, check=False)
    assert proc.returncode != 0
    assert "health.port and metrics.port must differ" in proc.stderr



def test_values_that_repeat_the_charts_own_keys_or_look_like_numbers_render_valid_objects() -> None:
    values = {
        "podLabels": {"app.kubernetes.io/name": "klio-operator", "team": "audio"},
        "podAnnotations": {"kubectl.kubernetes.io/default-container": "x"},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {
            "enabled": True, "additionalAlertLabels": {"severity": "page", "team": "audio"}}},
        "priorityClassName": "100",
        "serviceAccount": {"name": "1000"},
        "pubsub": {"credentialsSecret": "0123"},
        "watchNamespaces": ["2024"],
    }
    # render() refuses a key given twice (before: `severity`, and podLabels' own keys)
    objects = render(values=values)
    deployment = one(objects, "Deployment")
    template = deployment["spec"]["template"]["metadata"]
    # the selector's labels win: a podLabels key of theirs would leave the pods unselected
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["labels"].items()
    assert template["labels"]["team"] == "audio"
    assert template["annotations"]["kubectl.kubernetes.io/default-container"] == "operator"
    rule = one(objects, "PrometheusRule")
    labels = [r["labels"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert all(label == {"severity": "page", "team": "audio"} for label in labels)
    # strings that look like numbers stay strings (before: 100, 1000 and 2024 as integers)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "100" and pod["serviceAccountName"] == "1000"
    assert one(objects, "Role")["metadata"]["namespace"] == "2024"
    secrets = [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v]
    assert secrets == ["0123"]


def test_the_service_monitor_labels_reach_the_operator_for_the_workers_monitors() -> None:
    labels = {"release": "kube-prometheus-stack"}
    objects = render(values={"metrics": {"serviceMonitor": {"enabled": True, "labels": labels}}})
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["KLIO_SERVICE_MONITOR_LABELS"]) == labels
    default = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "KLIO_SERVICE_MONITOR_LABELS" not in {e["name"] for e in default["env"]}


def test_the_restricted_fields_policies_ask_for_at_either_level_are_taken() -> None:
    # what Kyverno-style policies often require at the container level too (before: refused)
    seccomp = {"type": "RuntimeDefault"}
    values = {
        "securityContext": {"seccompProfile": seccomp, "runAsUser": 10001, "runAsGroup": 10001,
                            "privileged": False},
        "podSecurityContext": {"fsGroupChangePolicy": "OnRootMismatch",
                               "supplementalGroups": [10001]},
        "resources": {"requests": {"cpu": ".5", "memory": "128Mi"}},  # quantities as written
        "metrics": {"prometheusRule": {"notReadyFor": "1h30m"}},
    }
    deployment = one(render(values=values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["seccompProfile"] == seccomp
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert_pod_security_restricted(pod)
