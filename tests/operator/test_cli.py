"""`klio-operator render`: the children as YAML without a cluster; exit 2 on invalid input."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from klio_operator.cli import YOUNG_GENERATION_THRESHOLD, main, settle_garbage_collector
from klio_runtime.config import parse_config

PARENT = """
apiVersion: klio.io/v1alpha1
kind: KlioJob
metadata: {name: parent, namespace: team}
spec:
  image: reg.example/parent:1
  eventInputs: [{type: pubsub, topic: projects/p/topics/in}]
  dataOutputs: [{location: gs://b/parent, fileSuffix: .wav}]
"""
CHILD = """
apiVersion: klio.io/v1alpha1
kind: KlioJob
metadata: {name: child, namespace: team}
spec:
  image: reg.example/child:1
  parents: [parent]
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_render_prints_children_resolving_parents_from_other_files(tmp_path: Path) -> None:
    child, parent = write(tmp_path, "c.yaml", CHILD), write(tmp_path, "p.yaml", PARENT)
    result = CliRunner().invoke(
        main, ["render", "-f", child, "-f", parent, "--with-service-monitor"]
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.output) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    config = parse_config(yaml.safe_load(config_map["data"]["klio-job.yaml"]))
    assert config.job_config.data.inputs[0].location == "gs://b/parent"
    assert "klio.team.child.from.parent" in result.output  # the Pub/Sub plan, as comments


def test_missing_parent_exits_2_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "c.yaml", CHILD)])
    assert result.exit_code == 2
    assert "spec.parents: not found: parent" in result.output


def test_invalid_kliojob_exits_2_with_the_field_path(tmp_path: Path) -> None:
    bad = CHILD.replace("parents: [parent]", "replicas: -1\n  mode: sideways")
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "bad.yaml", bad)])
    assert result.exit_code == 2
    assert "spec.replicas" in result.output and "spec.mode" in result.output


def test_a_missing_or_wrongly_shaped_spec_is_named_plainly(tmp_path: Path) -> None:
    no_spec = "apiVersion: klio.io/v1alpha1\nkind: KlioJob\nmetadata: {name: x}\n"
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "x.yaml", no_spec)])
    assert result.exit_code == 2
    assert "KlioJob x: spec: required" in result.output
    shapeless = no_spec + "spec: {image: a, autoscaling: 3}\n"
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "x.yaml", shapeless)])
    assert result.exit_code == 2
    assert "spec.autoscaling: must be a mapping, got int" in result.output


def test_cycle_exits_2_naming_it(tmp_path: Path) -> None:
    a = PARENT.replace(
        "eventInputs: [{type: pubsub, topic: projects/p/topics/in}]", "parents: [child]"
    )
    both = a + "---\n" + CHILD
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "both.yaml", both)])
    assert result.exit_code == 2
    assert "child → parent → child" in result.output or "parent → child → parent" in result.output


def test_render_warns_on_stderr_of_what_the_autoscaler_cannot_do(tmp_path: Path) -> None:
    scaled = PARENT.replace(
        "dataOutputs:", "autoscaling: {minReplicas: 0, maxReplicas: 4}\n  dataOutputs:"
    )
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "p.yaml", scaled)])
    assert result.exit_code == 0, result.output
    assert "KlioJob parent: warning: spec.resources.requests.cpu: not set" in result.stderr
    assert "warning: spec.autoscaling.minReplicas: 0 needs KEDA" in result.stderr
    assert "warning" not in result.stdout  # the YAML stays clean for kubectl apply
    assert "HorizontalPodAutoscaler" in result.stdout
    with_keda = CliRunner().invoke(
        main, ["render", "-f", write(tmp_path, "p.yaml", scaled), "--with-keda"]
    )
    assert with_keda.exit_code == 0 and not with_keda.stderr
    assert "name: klio-pubsub" in with_keda.stdout  # the TriggerAuthentication
    # as the running operator, render reads the TriggerAuthentication's name from the env
    other = CliRunner().invoke(
        main,
        ["render", "-f", write(tmp_path, "p.yaml", scaled), "--with-keda"],
        env={"KLIO_KEDA_AUTHENTICATION": "team-pubsub"},
    )
    assert "name: team-pubsub" in other.stdout and "klio-pubsub" not in other.stdout


def test_examples_render() -> None:
    examples = sorted(str(p) for p in Path("examples/kliojobs").glob("*.yaml"))
    if not examples:
        return
    for first in examples:
        others = [e for e in examples if e != first]
        args = ["render", "-f", first] + [x for e in others for x in ("-f", e)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"{first}: {result.output}"


def test_kopf_run_dash_m_klio_operator_finds_the_handlers() -> None:
    # `kopf run -m klio_operator` only imports the package: that must register every handler.
    code = (
        "import kopf, klio_operator\n"
        "registry = kopf.get_default_registry()\n"
        "ids = {h.id for r in (registry._changing, registry._watching, registry._indexing)"
        " for h in r.get_all_handlers()}\n"
        "print(sorted(ids))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for handler in ("reconcile", "cleanup", "klio_jobs", "workload"):
        assert handler in out.stdout, out.stdout


def test_run_settles_the_garbage_collector_after_startup() -> None:
    """Startup's objects frozen out of full collections; a wider young generation."""
    before = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_names_the_api_server_would_refuse_for_the_children_exit_2(tmp_path: Path) -> None:
    for name, why in (
        ("Bad_Name", "must be lowercase letters, digits and '-'"),
        ("team.ingest", "must be lowercase letters, digits and '-'"),
        ("a" * 60, "is 60 characters; at most 55"),
    ):
        job = CHILD.replace("name: child", f"name: {name}").replace("parents: [parent]", "")
        result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "n.yaml", job)])
        assert result.exit_code == 2, (name, result.output)
        assert f"KlioJob {name}: metadata.name: '{name}' {why}" in result.output


def test_a_file_that_is_not_yaml_or_holds_no_kliojob_exits_2_naming_it(tmp_path: Path) -> None:
    for text, why in (("kind: ConfigMap\n", "no KlioJob in this file"), ("a: [\n", "not YAML")):
        path = write(tmp_path, "x.yaml", text)
        result = CliRunner().invoke(main, ["render", "-f", path])
        assert result.exit_code == 2 and f"{path}: {why}" in result.output, result.output


def test_topic_and_subscription_names_pubsub_would_refuse_exit_2_naming_the_field(
    tmp_path: Path,
) -> None:
    bad = PARENT.replace(
        "eventInputs: [{type: pubsub, topic: projects/p/topics/in}]",
        "eventInputs: [{type: pubsub, topic: 'not a topic!!'},"
        " {type: pubsub, subscription: projects/p/topics/wrongkind}]",
    )
    result = CliRunner().invoke(main, ["render", "-f", write(tmp_path, "t.yaml", bad)])
    assert result.exit_code == 2, result.output
    assert "spec.eventInputs[0].topic" in result.output
    assert "spec.eventInputs[1].subscription" in result.output


def test_without_the_operators_extra_render_works_and_run_says_what_to_install(
    tmp_path: Path,
) -> None:
    # as after the README's `pip install -e '.[runtime]'`: kopf is not there
    without_kopf = (
        "import sys; sys.modules['kopf'] = None; from klio_operator.cli import main; main()"
    )
    parent = write(tmp_path, "parent.yaml", PARENT)

    def klio_operator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", without_kopf, *args],
            capture_output=True, text=True, timeout=120, check=False,
        )

    rendered = klio_operator("render", "-f", parent)
    assert rendered.returncode == 0, rendered.stderr
    assert any(doc["kind"] == "Deployment" for doc in yaml.safe_load_all(rendered.stdout))
    refused = klio_operator("run")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: running the operator needs its package (kopf is missing):"
        " pip install 'klio-k8s[operator]'"
    )
