"""`klio-operator`: run the operator, or render a KlioJob's children without a cluster."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from klio_runtime.cli.options import config_file_option, override_option, template_option

from klio_operator import dag
from klio_operator.from_klio import ConversionChoices, ConversionError, kliojob_manifests
from klio_operator.klio_job_dirs import read_job_dir
from klio_operator.models import KIND, Runner, SpecError, parse_spec
from klio_operator.planning import (
    DEFAULT_PROJECT,
    ClusterFacts,
    Owner,
    ParentInfo,
    PlanningError,
    event_topics_of,
    plan_job,
    project_of,
    render_yaml,
    topic_read_by,
    with_environment,
)

EXIT_INVALID = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The Klio operator: KlioJob custom resources → running, wired, observable jobs."""


@main.command()
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Watch this namespace (repeatable; globs allowed).",
)
@click.option(
    "--all-namespaces",
    "-A",
    is_flag=True,
    help="Watch every namespace (default when no --namespace is given).",
)
@click.option(
    "--health-port",
    type=int,
    default=8080,
    show_default=True,
    help="Port of the /healthz liveness endpoint.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=9090,
    show_default=True,
    help="Port of /metrics (0: do not serve).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def run(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    health_port: int,
    metrics_port: int,
    log_level: str,
) -> None:
    """Run the operator against the cluster of the current context (or in-cluster)."""
    try:
        import kopf
    except ModuleNotFoundError as err:
        _fail([f"error: running the operator needs its package ({err.name} is missing):"
               " pip install 'klio-k8s[operator]'"])

    from klio_operator import handlers  # noqa: F401  (registers on kopf's default registry)
    from klio_operator.settings import ENV_METRICS_PORT

    if namespaces and all_namespaces:
        raise click.UsageError("--namespace and --all-namespaces exclude each other")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    os.environ[ENV_METRICS_PORT] = str(metrics_port)
    # Registered after the settings handler, so it runs once the startup imports are done.
    kopf.on.startup(registry=kopf.get_default_registry(), id="klio_gc")(settle_garbage_collector)
    asyncio.run(
        kopf.operator(
            registry=kopf.get_default_registry(),
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
        )
    )


YOUNG_GENERATION_THRESHOLD = 100_000
"""Allocations between young collections (CPython's default: 700). Each watch event allocates
thousands of dicts that live until its handlers finish; with the default, young collections
promote them and the growing old generation is rescanned in full every few hundred jobs (a
fifth of the operator's CPU with 500 KlioJobs). At 100k, a young pass every ~170 jobs, ~70 ms,
and no full pass in 500 jobs."""


def settle_garbage_collector(**_: Any) -> None:
    """Move what startup made (modules, clients, ~100k objects) out of the collector's sight:
    they live as long as the process, and a full collection would rescan them each time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def _load_documents(paths: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The KlioJobs of each file; a file that is not YAML, or holds none, exits 2 naming it."""
    documents = []
    for path in paths:
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            _fail([f"{path}: not YAML: {exc}"])
        found = [d for d in loaded if isinstance(d, dict) and d.get("kind") == KIND]
        if not found:
            _fail([f"{path}: no KlioJob in this file (kind: {KIND})"])
        documents += [(path, document) for document in found]
    return documents


def _parent_info(
    namespace: str,
    spec: Any,
    name: str,
    jobs: dict[str, tuple[Path, dict[str, Any], Any]],
    facts: ClusterFacts,
) -> ParentInfo:
    first = None
    if spec.parents:
        grandparent = jobs.get(spec.parents[0])
        project = project_of(grandparent[2], facts) if grandparent else facts.default_project
        first = (spec.parents[0], project)
    return ParentInfo(
        name,
        project_of(spec, facts),
        tuple(spec.data_outputs),
        topic_read_by(namespace, first, event_topics_of(spec, project_of(spec, facts))),
    )


def _fail(lines: Sequence[str]) -> NoReturn:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(EXIT_INVALID)


@main.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="KlioJob manifest; the jobs of the first file are rendered, the others "
    "only resolve parents.",
)
@click.option(
    "--namespace",
    "-n",
    default="default",
    show_default=True,
    help="Namespace of jobs whose metadata has none.",
)
@click.option(
    "--project",
    default=None,
    help=f"Pub/Sub project when a job's pipelineOptions has none ({DEFAULT_PROJECT}).",
)
@click.option(
    "--with-service-monitor",
    is_flag=True,
    help="Render as if the Prometheus operator's CRDs were installed.",
)
@click.option("--with-keda", is_flag=True, help="Render as if KEDA were installed.")
def render(
    files: tuple[Path, ...],
    namespace: str,
    project: str | None,
    with_service_monitor: bool,
    with_keda: bool,
) -> None:
    """Print the child manifests the operator would apply, as YAML (like `helm template`).

    Without a cluster there is no KlioJob uid, so the children carry no ownerReferences; the
    operator sets them when it applies the children.
    """
    facts = ClusterFacts(
        has_service_monitor=with_service_monitor,
        has_keda=with_keda,
        default_project=project or DEFAULT_PROJECT,
    )
    facts = with_environment(facts)  # as the running operator reads it
    documents = _load_documents(files)
    errors: list[str] = []
    jobs: dict[str, tuple[Path, dict[str, Any], Any]] = {}
    for path, document in documents:
        name = (document.get("metadata") or {}).get("name")
        if not name:
            errors.append(f"{path}: KlioJob: metadata.name: required")
            continue
        try:
            jobs[name] = (path, document, parse_spec(document.get("spec")))
        except SpecError as exc:
            errors += [f"{path}: KlioJob {name}: {error}" for error in exc.errors]
    if errors:
        _fail(errors)
    graph = {name: list(spec.parents) for name, (_, _, spec) in jobs.items()}
    rendered: list[dict[str, Any]] = []
    comments: list[str] = []
    warnings: list[str] = []
    for name, (path, document, spec) in jobs.items():
        if path != files[0]:
            continue
        resolution = dag.resolve_parents(name, spec.parents, graph)
        if resolution.cycle:
            errors.append(
                f"{path}: KlioJob {name}: spec.parents: cycle {dag.format_cycle(resolution.cycle)}"
            )
            continue
        if resolution.missing:
            errors.append(
                f"{path}: KlioJob {name}: spec.parents: not found: "
                f"{', '.join(resolution.missing)} (pass the parents' manifests with -f)"
            )
            continue
        job_namespace = (document.get("metadata") or {}).get("namespace") or namespace
        parents = [_parent_info(job_namespace, jobs[p][2], p, jobs, facts) for p in spec.parents]
        try:
            plan = plan_job(Owner(name, job_namespace), spec, parents, facts)
        except PlanningError as exc:
            errors += [f"{path}: KlioJob {name}: {error}" for error in exc.errors]
            continue
        rendered += plan.children
        warnings += [f"{path}: KlioJob {name}: warning: {line}" for line in plan.advice]
        comments += [f"# KlioJob {name}: Pub/Sub topic {t.name}" for t in plan.pubsub.topics]
        comments += [
            f"# KlioJob {name}: Pub/Sub subscription {s.name} on {s.topic}"
            + (f" (dead letters → {s.dead_letter_topic})" if s.dead_letter_topic else "")
            for s in plan.pubsub.subscriptions
        ]
    if errors:
        _fail(errors)
    for line in warnings:
        click.echo(line, err=True)
    click.echo("\n".join(comments))
    click.echo(render_yaml(rendered), nl=False)


@main.command()
@click.option(
    "-j",
    "--job-dir",
    "job_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Klio job directory (klio-job.yaml, run.py); repeat it for each job of one DAG, so "
    "that a job reading what another writes names it as a parent.  [default: .]",
)
@config_file_option  # the options of `klio job run`, for every job given (-c with one -j only)
@override_option
@template_option
@click.option(
    "--runner",
    type=click.Choice(["direct", "dataflow", "flink"]),
    default="direct",
    show_default=True,
    help="spec.runner: direct runs the workers on the cluster; dataflow or flink submits the "
    "pipeline to that engine from a launcher Job.",
)
@click.option("--image", help="The job's image (default: its worker_harness_container_image).")
@click.option("--image-tag", help="Tag of the image, as Klio's --image-tag.")
@click.option("--name", help="metadata.name, if not the job's job_name (with one -j only).")
@click.option("--namespace", "-n", help="metadata.namespace (default: none: kubectl's).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the manifests to this file instead of standard output.",
)
def manifest(
    job_dirs: tuple[Path, ...],
    config_file: Path | None,
    overrides: tuple[str, ...],
    templates: tuple[str, ...],
    runner: Runner,
    image: str | None,
    image_tag: str | None,
    name: str | None,
    namespace: str | None,
    output: Path | None,
) -> None:
    """Print the KlioJob of each Klio job directory, as YAML (`klio job deploy` applies one job's;
    this prints them for review, for a repository of manifests, or for a DAG's jobs at once).

    A job that Klio ran on Kubernetes (DirectGKERunner) keeps what its kubernetes/*.yaml said:
    the Deployment's namespace, replicas, resources, env and service account, and the
    HorizontalPodAutoscaler's bounds and CPU target.

    A job's event input that another job given writes (the same topic, or that job's event file)
    becomes spec.parents; what a KlioJob cannot keep is said on standard error, by field. Every
    manifest printed validates as the operator validates it. Exits 2, naming each field, when a
    config makes no KlioJob.
    """
    from klio_runtime.config import ConfigError, parse_overrides, parse_templates

    job_dirs = job_dirs or (Path("."),)
    if config_file is not None and len(job_dirs) > 1:
        _fail(["--config-file names one job's config; give one job directory"])
    jobs = []
    errors: list[str] = []
    try:
        parsed_overrides = parse_overrides(overrides)
        parsed_templates = parse_templates(templates)
    except ConfigError as exc:
        _fail(exc.errors)
    for job_dir in job_dirs:
        try:
            jobs.append(read_job_dir(job_dir, config_file, parsed_overrides, parsed_templates))
        except ConversionError as exc:
            errors += exc.errors
    if errors:
        _fail(errors)
    choices = ConversionChoices(runner, image, image_tag, name, namespace)
    try:
        conversion = kliojob_manifests(jobs, choices)
    except ConversionError as exc:
        _fail(exc.errors)
    for line in conversion.warnings:
        click.echo(f"warning: {line}", err=True)
    text = render_yaml(conversion.manifests)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
