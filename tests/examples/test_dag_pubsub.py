"""The example DAG as a cluster runs it, without the cluster: the worker configs come from
`klio-operator render` of examples/kliojobs, the topics and subscriptions from the operator's
own AsyncPubSubAdmin on the real Pub/Sub emulator, the data from the GCS emulator
(gs://klio-demo, as the manifests say), and each job is a real `klio worker` process running
its examples/<job> dir.

Top-down: `klio message publish --top-down` to track-ingest's topic runs all four. Bottom-up:
for a track with only its loudness JSON, `klio message publish --bottom-up` to track-report makes
exactly the missing chain (track-ingest → spectrograms → track-report); loudness, whose output
exists, does not run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from google.api_core import exceptions as gexc
from klio_operator.cli import main as operator_cli
from klio_runtime.io.gcs import ensure_emulator_credentials, storage_client

from tests.emulators.pubsub import free_port
from tests.examples.dag import (
    EXAMPLES,
    JOB_DIRS,
    JOB_NAMES,
    KLIOJOBS,
    TONE_PEAK_DBFS,
    TONE_RMS_DBFS,
    check_flac,
    check_loudness,
    check_png,
    check_report,
)
from tests.operator.harness import apply_plans, pubsub_plans, remove_plans, worker_inputs
from tests.worker.helpers import PubSub, wait_for

pytestmark = pytest.mark.slow
PROJECT = "klio-local"
BUCKET = "klio-demo"
MANIFESTS = {
    "track-ingest": KLIOJOBS / "01-track-ingest.yaml",
    "spectrograms": KLIOJOBS / "02-spectrograms.yaml",
    "loudness": KLIOJOBS / "03-loudness.yaml",
    "track-report": KLIOJOBS / "04-track-report.yaml",
}
OUTPUTS = {  # data output of each job, as the manifests name them
    "track-ingest": "audio/{}.flac",
    "spectrograms": "spectrograms/{}.png",
    "loudness": "loudness/{}.json",
    "track-report": "reports/{}.html",
}
DEADLINE = 90.0


class Worker:
    """`klio worker` on a rendered config and an example job dir, with its own probe ports."""

    def __init__(self, config: Path, job_dir: Path, env: dict[str, str]) -> None:
        self.health_port, self.metrics_port = free_port(), free_port()
        self.log_path = config.with_suffix(".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "klio"), "worker", "--config-file", str(config),
             "--job-dir", str(job_dir), "--health-port", str(self.health_port),
             "--metrics-port", str(self.metrics_port), "--probe-host", "127.0.0.1",
             "--max-wait-ms", "50"],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM: the worker drains its in-flight batch and exits (``stop`` waits for it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def render(namespace: str, job: str) -> tuple[dict[str, Any], dict[str, str]]:
    """`klio-operator render` of one job (the others resolve its parents): the ConfigMap's
    klio-job.yaml and the worker container's literal environment."""
    others = [p for name, p in MANIFESTS.items() if name != job]
    args = ["render", "--project", PROJECT, "-n", namespace, "-f", str(MANIFESTS[job])]
    for path in others:
        args += ["-f", str(path)]
    result = CliRunner().invoke(operator_cli, args)
    assert result.exit_code == 0, result.output
    return worker_inputs([d for d in yaml.safe_load_all(result.output) if d])


@dataclass
class ClusterDag:
    tmp: Path
    configs: dict[str, Path]
    workers: dict[str, Worker]
    bucket: Any

    def blob(self, job: str, element: str) -> Any:
        return self.bucket.blob(OUTPUTS[job].format(element))

    def exists(self, job: str, element: str) -> bool:
        return bool(self.blob(job, element).exists())

    def read(self, job: str, element: str) -> bytes:
        return bytes(self.blob(job, element).download_as_bytes())

    def url(self, job: str, element: str) -> str:
        return f"gs://{BUCKET}/{OUTPUTS[job].format(element)}"

    def publish(self, job: str, element: str, *flags: str) -> None:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "klio"), "message", "publish",
             "--config-file", str(self.configs[job]), *flags, element],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr

    def wait_for_report(self, element: str) -> None:
        def done() -> bool:
            for worker in self.workers.values():
                if worker.process.poll() is not None:
                    raise AssertionError(f"a worker exited:\n{worker.log()}")
            return self.exists("track-report", element)

        try:
            wait_for(done, DEADLINE, f"the report of {element}", every=0.2)
        except AssertionError:
            logs = "\n".join(f"--- {n}\n{w.log()[-3000:]}" for n, w in self.workers.items())
            raise AssertionError(f"no report of {element} within {DEADLINE}s\n{logs}") from None

    def requests_sent(self, job: str, parent: str) -> float:
        """Bottom-up requests ``job``'s worker has published to ``parent`` (its /metrics)."""
        url = f"http://127.0.0.1:{self.workers[job].metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        name = f'klio_worker_bottom_up_requests_total{{job="{job}",parent="{parent}"}} '
        values = [float(line[len(name):]) for line in text.splitlines() if line.startswith(name)]
        return values[0] if values else 0.0

    def runs(self, job: str, element: str) -> int:
        """How often `job` did its work for `element` (each job logs one line per run)."""
        marker = {"track-ingest": f"ingested {element} ", "loudness": f"loudness of {element}:",
                  "track-report": f"report of {element} written"}[job]
        return self.workers[job].log().count(marker)


@pytest.fixture(scope="module")
def cluster_dag(
    pubsub_emulator: str, gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterDag]:
    tmp = tmp_path_factory.mktemp("cluster-dag")
    namespace = f"ns{uuid.uuid4().hex[:8]}"
    ensure_emulator_credentials()
    client = storage_client()
    try:
        bucket = client.create_bucket(BUCKET)
    except gexc.Conflict:
        bucket = client.bucket(BUCKET)
    pubsub = PubSub()
    new_tracks = yaml.safe_load(MANIFESTS["track-ingest"].read_text())["spec"]["eventInputs"][0]
    with contextlib.suppress(gexc.AlreadyExists):  # the team's own topic (not the operator's)
        pubsub.publisher.create_topic(name=new_tracks["topic"])
    specs = {name: yaml.safe_load(path.read_text())["spec"] for name, path in MANIFESTS.items()}
    plans = pubsub_plans(namespace, specs)
    apply_plans(plans.values())
    configs: dict[str, Path] = {}
    workers: dict[str, Worker] = {}
    try:
        for job_dir in JOB_DIRS:
            job = JOB_NAMES[job_dir]
            config, env = render(namespace, job)
            configs[job] = tmp / f"{job}.klio-job.yaml"
            configs[job].write_text(yaml.safe_dump(config))
            workers[job] = Worker(configs[job], EXAMPLES / job_dir, env)
        for job, worker in workers.items():
            wait_for(worker.ready, 60, f"worker {job} ready", every=0.1)
        yield ClusterDag(tmp, configs, workers, bucket)
    finally:
        for worker in workers.values():  # all drain at once
            worker.terminate()
        for worker in workers.values():
            worker.stop()
        remove_plans(plans.values())
        pubsub.publisher.delete_topic(request={"topic": new_tracks["topic"]})
        pubsub.cleanup()


def test_rendered_configs_wire_the_dag(cluster_dag: ClusterDag) -> None:
    report = yaml.safe_load(cluster_dag.configs["track-report"].read_text())["job_config"]
    assert [p["job_name"] for p in report["parents"]] == ["spectrograms", "loudness"]
    assert [p["data_input"] for p in report["parents"]] == [0, 1]
    assert [i["location"] for i in report["data"]["inputs"]] == [
        f"gs://{BUCKET}/spectrograms", f"gs://{BUCKET}/loudness"]
    spectrograms = yaml.safe_load(cluster_dag.configs["spectrograms"].read_text())["job_config"]
    assert (spectrograms["n_fft"], spectrograms["hop_length"]) == (2048, 512)
    assert spectrograms["parents"][0]["job_name"] == "track-ingest"


def test_top_down_runs_all_four(cluster_dag: ClusterDag) -> None:
    dag = cluster_dag
    element = f"td-{uuid.uuid4().hex[:8]}"
    dag.publish("track-ingest", element, "--top-down")
    dag.wait_for_report(element)

    check_flac(dag.read("track-ingest", element))
    png = dag.read("spectrograms", element)
    check_png(png)
    loudness = check_loudness(dag.read("loudness", element), element, TONE_RMS_DBFS,
                              TONE_PEAK_DBFS)
    check_report(dag.read("track-report", element).decode(), element, png,
                 dag.url("spectrograms", element), dag.url("loudness", element), loudness)
    assert dag.runs("track-ingest", element) == 1
    assert dag.runs("loudness", element) == 1


def test_bottom_up_remakes_only_the_missing_chain(cluster_dag: ClusterDag) -> None:
    """A track whose loudness exists but whose audio and spectrogram are gone: asking
    track-report alone runs track-ingest, spectrograms and track-report, and not loudness."""
    dag = cluster_dag
    element = f"bu-{uuid.uuid4().hex[:8]}"
    facts = {"track": element, "rms_dbfs": TONE_RMS_DBFS, "peak_dbfs": TONE_PEAK_DBFS,
             "duration_seconds": 2.0, "sample_rate": 22050}
    dag.blob("loudness", element).upload_from_string(json.dumps(facts).encode())
    generation = dag.bucket.get_blob(OUTPUTS["loudness"].format(element)).generation
    asked_before = {p: dag.requests_sent("track-report", p) for p in ("spectrograms", "loudness")}

    dag.publish("track-report", element, "--bottom-up")
    dag.wait_for_report(element)

    assert dag.runs("track-ingest", element) == 1  # asked for by spectrograms
    check_png(dag.read("spectrograms", element))
    assert dag.runs("track-report", element) == 1
    assert dag.runs("loudness", element) == 0, "loudness ran though its output existed"
    assert dag.bucket.get_blob(OUTPUTS["loudness"].format(element)).generation == generation
    assert dag.requests_sent("track-report", "spectrograms") == asked_before["spectrograms"] + 1
    assert dag.requests_sent("track-report", "loudness") == asked_before["loudness"]
    assert dag.requests_sent("spectrograms", "track-ingest") >= 1
    check_report(dag.read("track-report", element).decode(), element,
                 dag.read("spectrograms", element), dag.url("spectrograms", element),
                 dag.url("loudness", element), facts)
