"""``klio job deploy``, ``klio job stop`` and ``klio job delete``: Klio's commands, on Kubernetes.

Klio deployed, stopped and deleted a job on Dataflow (or, with ``DirectGKERunner``, as a
Deployment). Here a KlioJob is the job, in the cluster of the current kubeconfig context, and the
operator does the rest: ``deploy`` applies the KlioJob that ``klio-operator manifest`` makes of the
job directory (and resumes a stopped one), ``stop`` suspends it (its workers scale to zero, its
subscriptions keep the backlog), ``delete`` deletes it (the operator removes the topics and
subscriptions it made). The KlioJob's shape lives in the operator's package, so these need the
``operator`` extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from klio_runtime.cli.options import (
    EXIT_INVALID,
    config_file_option,
    force_build_option,
    job_dir_option,
    override_option,
    template_option,
)

if TYPE_CHECKING:
    from klio_operator.from_klio import KlioJobDir
    from klio_operator.kube import KubeApi

T = TypeVar("T")
EXIT_FAILED = 1
namespace_option = click.option(
    "--namespace",
    "-n",
    default=None,
    help="The KlioJob's namespace (default: its kubernetes/deployment.yaml's, else the current "
    "kubeconfig context's).",
)


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _read_job(
    job_dir: Path, config_file: Path | None, overrides: tuple[str, ...], templates: tuple[str, ...]
) -> KlioJobDir:
    try:
        from klio_operator.from_klio import ConversionError
        from klio_operator.klio_job_dirs import read_job_dir
    except ImportError as err:
        _fail(
            f"this command needs the operator's package ({err.name} is missing): "
            "pip install 'klio-k8s[operator]'"
        )
    from klio_runtime.config import ConfigError, parse_overrides, parse_templates

    try:
        return read_job_dir(
            job_dir, config_file, parse_overrides(overrides), parse_templates(templates)
        )
    except (ConfigError, ConversionError) as err:
        for line in err.errors:
            click.echo(f"config error: {line}", err=True)
        raise SystemExit(EXIT_INVALID) from err


def _where(job: KlioJobDir, namespace: str | None) -> tuple[str, str]:
    """The KlioJob's name and namespace, as ``deploy`` names them."""
    from klio_operator.from_klio_kubernetes import kubernetes_settings
    from klio_operator.kube import current_namespace

    found = namespace or kubernetes_settings(job.kubernetes).namespace or current_namespace()
    return job.config.job_name, found


def _on_the_cluster(work: Callable[[KubeApi], Awaitable[T]]) -> T:
    """Run ``work`` against the API server of the current kubeconfig context (in a pod: its
    service account's); no cluster, or one that refuses, exits with the reason."""
    from klio_operator.kube import KubeApi, KubeApiError
    from kubernetes.config import ConfigException

    async def run() -> T:
        api = KubeApi.from_environment()
        try:
            return await work(api)
        finally:
            await api.close()

    try:
        return asyncio.run(run())
    except ConfigException as err:
        _fail(f"no cluster to act on (KUBECONFIG or ~/.kube/config): {err}")
    except KubeApiError as err:
        hint = (
            " (is the KlioJob CRD installed? helm install klio ./helm/klio)"
            if (err.status == 404)
            else ""
        )
        _fail(f"the API server refused: {err}{hint}", EXIT_FAILED)
    except OSError as err:
        _fail(f"cannot reach the API server: {err}", EXIT_FAILED)


@click.command()
@job_dir_option
@config_file_option
@override_option
@template_option
@click.option("--image-tag", default=None, help="Tag of the job's image, as Klio's.")
@force_build_option
@namespace_option
@click.option("--update/--no-update", default=None, hidden=True, help="Accepted for Klio's CLI.")
@click.option("--direct-runner", is_flag=True, hidden=True, help="Accepted for Klio's CLI.")
def deploy(
    job_dir: Path,
    config_file: Path | None,
    overrides: tuple[str, ...],
    templates: tuple[str, ...],
    image_tag: str | None,
    force_build: bool,
    namespace: str | None,
    update: bool | None,
    direct_runner: bool,
) -> None:
    """Deploy the job as a KlioJob to the cluster of the current kubeconfig context (create it,
    or update it in place, resuming it if stopped): the operator runs its workers. The KlioJob
    is the one `klio-operator manifest` prints; no image is built (`docker build`)."""
    from klio_operator.from_klio import ConversionChoices, ConversionError, kliojob_manifests
    from klio_operator.kube import apply

    job = _read_job(job_dir, config_file, overrides, templates)
    name, where = _where(job, namespace)
    try:
        conversion = kliojob_manifests(
            [job], ConversionChoices(image_tag=image_tag, namespace=where)
        )
    except ConversionError as err:
        for line in err.errors:
            click.echo(f"config error: {line}", err=True)
        raise SystemExit(EXIT_INVALID) from err
    for line in conversion.warnings:
        click.echo(f"warning: {line}", err=True)
    (manifest,) = conversion.manifests
    manifest["spec"]["suspend"] = False  # Klio's deploy starts the job: a stopped one resumes

    async def deploy_it(api: KubeApi) -> str:
        outcome, _ = await apply(api, manifest)
        return outcome

    outcome = _on_the_cluster(deploy_it)
    click.echo(f"KlioJob {where}/{name} {outcome}: kubectl get kliojob {name} -n {where}")


@click.command()
@job_dir_option
@config_file_option
@override_option
@template_option
@namespace_option
@click.option("--job-name", default=None, help="The job's name, if not its config's job_name.")
@click.option("--region", default=None, hidden=True, help="Accepted for Klio's CLI.")
@click.option("--gcp-project", default=None, hidden=True, help="Accepted for Klio's CLI.")
def stop(
    job_dir: Path,
    config_file: Path | None,
    overrides: tuple[str, ...],
    templates: tuple[str, ...],
    namespace: str | None,
    job_name: str | None,
    region: str | None,
    gcp_project: str | None,
) -> None:
    """Stop the job's KlioJob: spec.suspend, so its workers scale to zero and its subscriptions
    keep the backlog (nothing is lost). `klio job deploy` resumes it."""
    from klio_operator.kube import resource_path

    job = _read_job(job_dir, config_file, overrides, templates)
    name, where = _where(job, namespace)
    name = job_name or name

    async def stop_it(api: KubeApi) -> Any:
        return await api.merge_patch(
            resource_path("KlioJob", where, name), {"spec": {"suspend": True}}
        )

    _on_the_cluster(stop_it)
    click.echo(
        f"KlioJob {where}/{name} stopped: its workers scale to zero and its subscriptions keep"
        " the backlog; `klio job deploy` resumes it"
    )


@click.command()
@job_dir_option
@config_file_option
@override_option
@template_option
@namespace_option
@click.option("--yes", "--force", "-y", "yes", is_flag=True, help="Do not ask first.")
def delete(
    job_dir: Path,
    config_file: Path | None,
    overrides: tuple[str, ...],
    templates: tuple[str, ...],
    namespace: str | None,
    yes: bool,
) -> None:
    """Delete the job's KlioJob: its workers stop, and the operator deletes the Pub/Sub topics
    and subscriptions it made for it (messages waiting in them are lost; the job's data stays)."""
    from klio_operator.kube import resource_path

    job = _read_job(job_dir, config_file, overrides, templates)
    name, where = _where(job, namespace)
    if not yes:
        click.confirm(
            f"Delete KlioJob {where}/{name}, with the topics and subscriptions the operator made"
            " for it (and the messages waiting in them)?",
            abort=True,
        )

    async def delete_it(api: KubeApi) -> bool:
        return await api.delete(resource_path("KlioJob", where, name))

    if _on_the_cluster(delete_it):
        click.echo(f"KlioJob {where}/{name} deleted")
    else:
        click.echo(f"KlioJob {where}/{name} was not there")
