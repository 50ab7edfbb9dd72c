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
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from klio_runtime.cli.options import (
    EXIT_FAILED,
    JobOptions,
    fail,
    job_and_config_options,
    job_config_options,
    refuse_config,
)

if TYPE_CHECKING:
    from klio_operator.from_klio import KlioJobDir
    from klio_operator.kube import KubeApi

T = TypeVar("T")
namespace_option = click.option(
    "--namespace",
    "-n",
    default=None,
    help="The KlioJob's namespace (default: its kubernetes/deployment.yaml's, else the current "
    "kubeconfig context's).",
)


def _operator_package() -> None:
    try:
        import klio_operator.from_klio  # noqa: F401
        import kubernetes  # noqa: F401
    except ImportError as err:
        fail(
            f"this command needs the operator's package ({err.name} is missing): "
            "pip install 'klio-k8s[operator]'"
        )


def _read_job(job: JobOptions) -> KlioJobDir:
    _operator_package()
    from klio_operator.from_klio import ConversionError
    from klio_operator.klio_job_dirs import read_job_dir

    try:
        return job.loaded_with(read_job_dir)  # locations as written, for the job's image
    except ConversionError as err:
        refuse_config(err)


def _named(job: JobOptions, namespace: str | None, job_name: str | None) -> tuple[str, str]:
    """The name and namespace of the KlioJob to stop or delete: ``--job-name`` (no job directory
    needed, as in Klio), else the config's job_name; ``-n``, else the namespace its
    ``kubernetes/deployment.yaml`` names (as ``deploy`` put it there), else the context's."""
    _operator_package()
    from klio_operator.from_klio_kubernetes import kubernetes_settings
    from klio_operator.klio_job_dirs import kubernetes_objects
    from klio_operator.kube import current_namespace

    if job_name:
        return job_name, namespace or current_namespace()
    config = job.load_config()  # a config error is refused by field, as every job command does
    if namespace:
        return config.job_name, namespace
    objects, _ = kubernetes_objects(job.job_dir)  # a file that cannot be read names no namespace
    return config.job_name, kubernetes_settings(objects).namespace or current_namespace()


def _on_the_cluster(work: Callable[[KubeApi], Awaitable[T]]) -> T:
    """Run ``work`` against the API server of the current kubeconfig context (in a pod: its
    service account's); no cluster, or one that refuses, exits with the reason."""
    import aiohttp
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
        fail(f"no cluster to act on (KUBECONFIG or ~/.kube/config): {err}")
    except KubeApiError as err:
        crd = " (is the KlioJob CRD installed? helm install klio ./helm/klio)"
        hint = crd if err.status == 404 else ""
        fail(f"the API server refused: {err}{hint}", EXIT_FAILED)
    except (OSError, aiohttp.ClientError) as err:
        fail(f"cannot reach the API server: {err}", EXIT_FAILED)


def _same_spec(stored: Any, wanted: dict[str, Any]) -> bool:
    """Whether the stored spec says what ``wanted`` does, once both have the schema's defaults
    (an API server fills them in: the stored spec is never the same dict as the one sent)."""
    from klio_operator.models import SpecError, parse_spec

    try:
        return parse_spec(stored).to_wire() == parse_spec(wanted).to_wire()
    except SpecError:
        return False


def _absent(namespace: str, name: str) -> NoReturn:
    fail(f"no KlioJob {namespace}/{name} in the cluster: `klio job deploy` makes it", EXIT_FAILED)


@click.command()
@job_and_config_options
@namespace_option
@click.option("--name", default=None, help="The KlioJob's name, if not the job's job_name.")
@click.option(
    "--image",
    default=None,
    help="The job's image, if not its worker_harness_container_image (the one you built from "
    "its Dockerfile).",
)
@click.option("--update/--no-update", default=None, hidden=True, help="Accepted for Klio's CLI.")
@click.option(
    "--direct-runner", is_flag=True, hidden=True, help="Klio's: run here (`klio job run`)."
)
def deploy(
    job: JobOptions,
    namespace: str | None,
    name: str | None,
    image: str | None,
    update: bool | None,
    direct_runner: bool,
) -> None:
    """Deploy the job as a KlioJob to the cluster of the current kubeconfig context (create it,
    or replace its spec, resuming it if stopped): the operator runs its workers. The KlioJob
    is the one `klio-operator manifest` prints; no image is built (`docker build`)."""
    if direct_runner:
        fail("--direct-runner runs the job here, not on a cluster: `klio job run --direct-runner`")
    source = _read_job(job)
    from klio_operator.from_klio import ConversionChoices, ConversionError, kliojob_manifests
    from klio_operator.kube import current_namespace

    choices = ConversionChoices(
        image=image, image_tag=job.image_tag, name=name, namespace=namespace
    )
    try:
        conversion = kliojob_manifests([source], choices)
    except ConversionError as err:
        refuse_config(err)
    for line in conversion.warnings:
        click.echo(f"warning: {line}", err=True)
    (manifest,) = conversion.manifests
    metadata = manifest["metadata"]
    metadata.setdefault("namespace", current_namespace())
    manifest["spec"]["suspend"] = False  # Klio's deploy starts the job: a stopped one resumes
    where = f"{metadata['namespace']}/{metadata['name']}"

    async def deploy_it(api: KubeApi) -> str:
        from klio_operator.kube import resource_path

        path = resource_path("KlioJob", metadata["namespace"], metadata["name"])
        current = await api.get(path)
        if current is None:
            await api.create(resource_path("KlioJob", metadata["namespace"]), manifest)
            return "created"
        if _same_spec(current.get("spec"), manifest["spec"]):
            return "unchanged"
        # The job directory is the whole of the spec: what it no longer says goes too.
        await api.json_patch(path, [{"op": "replace", "path": "/spec", "value": manifest["spec"]}])
        return "updated"

    outcome = _on_the_cluster(deploy_it)
    click.echo(
        f"KlioJob {where} {outcome}: kubectl get kliojob {metadata['name']}"
        f" -n {metadata['namespace']}"
    )


@click.command()
@job_config_options
@namespace_option
@click.option("--job-name", default=None, help="The job's name, with no job directory (Klio's).")
@click.option("--region", default=None, hidden=True, help="Accepted for Klio's CLI.")
@click.option("--gcp-project", default=None, hidden=True, help="Accepted for Klio's CLI.")
def stop(
    job: JobOptions,
    namespace: str | None,
    job_name: str | None,
    region: str | None,
    gcp_project: str | None,
) -> None:
    """Stop the job's KlioJob: spec.suspend, so its workers scale to zero and its subscriptions
    keep the backlog (nothing is lost). `klio job deploy` resumes it."""
    from klio_operator.kube import resource_path

    name, where = _named(job, namespace, job_name)
    path = resource_path("KlioJob", where, name)

    async def stop_it(api: KubeApi) -> bool:
        if await api.get(path) is None:
            return False
        await api.merge_patch(path, {"spec": {"suspend": True}})
        return True

    if not _on_the_cluster(stop_it):
        _absent(where, name)
    click.echo(
        f"KlioJob {where}/{name} stopped: its workers scale to zero and its subscriptions keep"
        " the backlog; `klio job deploy` resumes it"
    )


@click.command()
@job_config_options
@namespace_option
@click.option("--job-name", default=None, help="The job's name, with no job directory.")
@click.option("--yes", "--force", "-y", "yes", is_flag=True, help="Do not ask first.")
def delete(
    job: JobOptions,
    namespace: str | None,
    job_name: str | None,
    yes: bool,
) -> None:
    """Delete the job's KlioJob: its workers stop, and the operator deletes the Pub/Sub topics
    and subscriptions it made for it (messages waiting in them are lost; the job's data stays)."""
    from klio_operator.kube import resource_path

    name, where = _named(job, namespace, job_name)
    path = resource_path("KlioJob", where, name)

    async def find(api: KubeApi) -> bool:
        return await api.get(path) is not None

    if not _on_the_cluster(find):  # the cluster is there and so is the job, before asking
        click.echo(f"KlioJob {where}/{name} was not there")
        return
    if not yes:
        click.confirm(
            f"Delete KlioJob {where}/{name}, with the topics and subscriptions the operator made"
            " for it (and the messages waiting in them)?",
            abort=True,
        )

    async def delete_it(api: KubeApi) -> bool:
        return await api.delete(path)

    if _on_the_cluster(delete_it):
        click.echo(f"KlioJob {where}/{name} deleted")
    else:
        click.echo(f"KlioJob {where}/{name} was not there")
