"""Klio's `klio job deploy`, `stop` and `delete`, run as commands against the extended kmock API
server with the real operator: a KlioJob applied, suspended, resumed and deleted, and the
operator's Deployment following each."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import pytest
import yaml
from klio_operator.kube import KINDS, resource_path

from tests.kube.emulator import KlioKubernetesEmulator, running_emulator
from tests.operator.harness import NS, PROJECT, operator_under_test

pytestmark = pytest.mark.usefixtures("pubsub_clean")
KLIO = str(Path(sys.executable).parent / "klio")
CONFIG = f"""
version: 2
job_name: tagger
pipeline_options:
  streaming: true
  runner: DirectGKERunner
  project: {PROJECT}
  worker_harness_container_image: reg.example/klio/tagger
job_config:
  events:
    inputs:
      - type: pubsub
        topic: projects/{PROJECT}/topics/tracks
    outputs:
      - type: pubsub
        topic: projects/{PROJECT}/topics/tagged
"""
DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tagger, namespace: {NS}}}
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: tagger
        image: reg.example/klio/tagger
        resources: {{requests: {{cpu: 250m}}}}
"""


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    context = {"cluster": "emulator", "user": "anyone"}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": server}}],
                "users": [{"name": "anyone", "user": {}}],
                "contexts": [{"name": "emulator", "context": context}],
                "current-context": "emulator",
            }
        )
    )
    return path


async def klio(
    env: dict[str, str], *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        KLIO,
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


KLIOJOBS = "/".join(KINDS["KlioJob"])


async def send(api: KlioKubernetesEmulator, method: str, path: str, body: Any) -> None:
    async with api.request(method, path, json=body) as response:
        assert response.status < 300, await response.text()


def stored(api: KlioKubernetesEmulator, namespace: str, name: str) -> dict[str, Any]:
    return next(
        o
        for o in api.live_objects(KLIOJOBS)
        if (o["metadata"]["name"], o["metadata"].get("namespace")) == (name, namespace)
    )


def replicas(op: Any) -> int | None:
    deployment = op.objects("Deployment").get("tagger")
    return None if deployment is None else deployment["spec"].get("replicas")


async def test_deploy_stop_deploy_and_delete_act_on_the_jobs_kliojob(tmp_path: Path) -> None:
    job = tmp_path / "tagger"
    (job / "kubernetes").mkdir(parents=True)
    (job / "klio-job.yaml").write_text(CONFIG)
    (job / "kubernetes" / "deployment.yaml").write_text(DEPLOYMENT)
    async with operator_under_test() as op:
        await op.context.pubsub.ensure_topic(f"projects/{PROJECT}/topics/tracks")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig(tmp_path, str(op.api.url)))}

        async def scenario() -> None:
            code, out, err = await klio(env, "job", "deploy", "-j", str(job), "--image-tag", "v2")
            assert code == 0, err
            assert f"KlioJob {NS}/tagger created" in out  # the namespace its Deployment named
            spec = op.objects("KlioJob")["tagger"]["spec"]
            assert spec["image"] == "reg.example/klio/tagger:v2"
            assert spec["threadPoolSize"] == 1 and spec["resources"] == {
                "requests": {"cpu": "250m"}
            }
            await op.wait(lambda: replicas(op) == 2, "the operator's Deployment, 2 workers")
            image = op.objects("Deployment")["tagger"]["spec"]["template"]["spec"]["containers"][0]
            assert image["image"] == "reg.example/klio/tagger:v2"

            code, out, err = await klio(env, "job", "stop", "-j", str(job), "--region", "x")
            assert code == 0, err
            assert op.objects("KlioJob")["tagger"]["spec"]["suspend"] is True
            await op.wait(lambda: replicas(op) == 0, "workers scaled to zero")

            code, out, err = await klio(env, "job", "deploy", "-j", str(job), "--image-tag", "v3")
            assert code == 0, err
            assert f"KlioJob {NS}/tagger updated" in out
            assert op.objects("KlioJob")["tagger"]["spec"]["suspend"] is False
            await op.wait(lambda: replicas(op) == 2, "resumed, on the new image")

            # asked first: "no" keeps the job
            code, _, _ = await klio(env, "job", "delete", "-j", str(job), stdin=b"n\n")
            assert code == 1
            assert "tagger" in op.objects("KlioJob")
            code, out, err = await klio(env, "job", "delete", "-j", str(job), "--yes")
            assert code == 0, err
            assert f"KlioJob {NS}/tagger deleted" in out
            await op.wait(lambda: "tagger" not in op.objects("KlioJob"), "the KlioJob gone")

        await op.run(scenario)


async def test_without_a_cluster_deploy_says_so(tmp_path: Path) -> None:
    job = tmp_path / "tagger"
    job.mkdir()
    (job / "klio-job.yaml").write_text(CONFIG)
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "absent")}
    code, _, err = await klio(env, "job", "deploy", "-j", str(job))
    assert code == 2
    assert "error: no cluster to act on" in err


async def test_stop_delete_and_deploy_where_klio_users_would_meet_them(tmp_path: Path) -> None:
    job = tmp_path / "tagger"
    (job / "kubernetes").mkdir(parents=True)
    (job / "klio-job.yaml").write_text(CONFIG)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    async with running_emulator() as api:
        # two kubeconfig files, as kubectl merges them: the context is in the second
        other = tmp_path / "other-kubeconfig"
        other.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": []}))
        files = f"{other}{os.pathsep}{kubeconfig(tmp_path, str(api.url))}"
        env = {**os.environ, "KUBECONFIG": files}

        code, _, err = await klio(env, "job", "stop", "-j", str(job))
        assert code == 1
        assert "no KlioJob default/tagger in the cluster: `klio job deploy` makes it" in err

        # a KlioJob first applied by hand, with fields the job directory does not say
        by_hand = {
            "apiVersion": "klio.io/v1alpha1",
            "kind": "KlioJob",
            "metadata": {"name": "tagger", "namespace": "default"},
            "spec": {
                "image": "reg.example/klio/tagger:v1",
                "replicas": 5,
                "dataOutputs": [{"location": "gs://b/old"}],
            },
        }
        await send(api, "POST", resource_path("KlioJob", "default"), by_hand)
        code, out, err = await klio(env, "job", "deploy", "-j", str(job), "--image-tag", "v2")
        assert code == 0, err
        assert "KlioJob default/tagger updated" in out
        spec = stored(api, "default", "tagger")["spec"]
        assert "dataOutputs" not in spec and "replicas" not in spec  # the directory is the spec
        assert spec["image"] == "reg.example/klio/tagger:v2"

        # the server fills in the schema's defaults: the same job deployed again is unchanged
        defaulted = {**spec, "mode": "streaming", "runner": "direct", "retries": 0}
        await send(api, "PATCH", resource_path("KlioJob", "default", "tagger"), {"spec": defaulted})
        code, out, err = await klio(env, "job", "deploy", "-j", str(job), "--image-tag", "v2")
        assert code == 0, err
        assert "KlioJob default/tagger unchanged" in out

        # Klio's --job-name needs no job directory
        code, out, err = await klio(
            env, "job", "stop", "--job-name", "tagger", "--region", "r", cwd=empty
        )
        assert code == 0, err
        assert stored(api, "default", "tagger")["spec"]["suspend"] is True

        # a name the config's job_name cannot be; a Deployment's namespace that is no name
        code, out, err = await klio(env, "job", "deploy", "-j", str(job), "--name", "tagger-b")
        assert code == 0, err
        assert "tagger-b" in {o["metadata"]["name"] for o in api.live_objects(KLIOJOBS)}
        (job / "kubernetes" / "deployment.yaml").write_text(
            DEPLOYMENT.replace(f"namespace: {NS}", "namespace: Team_A")
        )
        code, _, err = await klio(env, "job", "deploy", "-j", str(job))
        assert code == 2
        assert "metadata.namespace: 'Team_A' is not a namespace name" in err

        code, _, err = await klio(env, "job", "deploy", "-j", str(job), "--direct-runner")
        assert code == 2
        assert "`klio job run --direct-runner`" in err


async def test_an_answer_that_is_not_the_api_servers_is_said_plainly(tmp_path: Path) -> None:
    async def html(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            status=502, text="<html>bad gateway</html>", content_type="text/html"
        )

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", html)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        job = tmp_path / "tagger"
        job.mkdir()
        (job / "klio-job.yaml").write_text(CONFIG)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))}
        code, _, err = await klio(env, "job", "stop", "-j", str(job))
        assert code == 1
        assert "an answer that is not JSON (text/html)" in err
        assert "Traceback" not in err
    finally:
        await runner.cleanup()


async def test_a_job_klio_job_create_made_deploys_with_the_image_built(tmp_path: Path) -> None:
    code, _, err = await klio(
        dict(os.environ),
        "job",
        "create",
        "--job-name",
        "fresh",
        "--gcp-project",
        PROJECT,
        "--use-defaults",
        "--output",
        str(tmp_path / "fresh"),
    )
    assert code == 0, err
    async with running_emulator() as api:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig(tmp_path, str(api.url)))}
        job = str(tmp_path / "fresh")
        code, _, err = await klio(env, "job", "deploy", "-j", job)
        assert code == 2
        assert "pipeline_options.worker_harness_container_image: not set" in err
        assert "--image" in err
        code, out, err = await klio(env, "job", "deploy", "-j", job, "--image", "fresh:1")
        assert code == 0, err
        assert "KlioJob default/fresh created" in out
        spec = stored(api, "default", "fresh")["spec"]
        assert spec["image"] == "fresh:1" and spec["mode"] == "batch"


async def test_delete_asks_only_about_a_kliojob_that_is_there(tmp_path: Path) -> None:
    job = tmp_path / "tagger"
    job.mkdir()
    (job / "klio-job.yaml").write_text(CONFIG)
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "absent")}
    code, out, err = await klio(env, "job", "delete", "-j", str(job), stdin=b"y\n")
    assert code == 2 and "Delete KlioJob" not in out  # no cluster: said before asking
    assert "error: no cluster to act on" in err
    async with running_emulator() as api:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig(tmp_path, str(api.url)))}
        code, out, _ = await klio(env, "job", "delete", "-j", str(job))  # nothing on stdin
        assert code == 0
        assert out.strip() == "KlioJob default/tagger was not there"
