"""Time for the Klio operator to bring N KlioJobs (a DAG) to Ready, beside a no-op kopf operator.

Both operators run as their own processes (`klio-operator run` and `kopf run` of a file with
no-op create and delete handlers) against the same extended kmock API emulator (tests/kube) in
this process; the Klio operator also talks to Google's real Pub/Sub emulator.

Like with like: both are kopf operators with a finalizer (a delete handler), the same emulator,
the same jobs created the same way, timed from the first create until every job is done.
"Done" for the no-op: kopf recorded the job as handled (its last-handled annotation). "Ready"
for Klio: the KlioJob's `Ready` condition is True, which means its parents resolved, its
Pub/Sub topics and subscriptions exist on the emulator, its ConfigMap, Deployment and Service
are applied, and its Deployment reports every desired worker ready and updated (the bench plays
the Deployment controller: it marks each new Deployment's workers ready). Prints both times,
their ratio (goal <= 3x), API requests per job, each operator's CPU and resident memory after
the N jobs.

    .venv/bin/python bench/operator_reconcile.py [--jobs 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klio_operator.settings import STORAGE_PREFIX

from tests.emulators.pubsub import delete_everything, free_port, running_pubsub_emulator
from tests.kube.emulator import KlioKubernetesEmulator, running_emulator

NS = "bench"
LAST_HANDLED = f"{STORAGE_PREFIX}/last-handled-configuration"
KJ_PATH = f"/apis/klio.io/v1alpha1/namespaces/{NS}/kliojobs"
NOOP_OPERATOR = """
import kopf
from klio_operator.settings import configure_settings

# Importing klio_operator registered the Klio handlers on the default registry: start clean,
# keeping kopf's own login through the kubernetes client (which that registry carried).
kopf.set_default_registry(kopf.OperatorRegistry())
kopf.on.login()(kopf.login_via_client)

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    configure_settings(settings)  # the Klio operator's kopf settings: like with like
    settings.peering.standalone = True

@kopf.on.create("klio.io", "v1alpha1", "kliojobs")
def noop(**_):
    pass

@kopf.on.delete("klio.io", "v1alpha1", "kliojobs")
def noop_cleanup(**_):
    pass
"""


def dag_specs(count: int) -> list[tuple[str, dict[str, Any]]]:
    """A forest of small DAGs: every fifth job a root; others have one or two earlier parents."""
    jobs: list[tuple[str, dict[str, Any]]] = []
    for index in range(count):
        name = f"job-{index:04d}"
        spec: dict[str, Any] = {
            "image": "registry.example/klio/bench:1",
            "dataOutputs": [{"location": f"gs://bench/{name}"}],
        }
        position = index % 5
        if position == 0:
            spec["eventInputs"] = [{"type": "file", "location": f"gs://bench/ids/{name}.txt"}]
        else:
            base = index - position
            parents = {f"job-{base + position - 1:04d}"}
            if position >= 2:
                parents.add(f"job-{base:04d}")  # a second parent: the DAG's root
            spec["parents"] = sorted(parents)
        jobs.append((name, spec))
    return jobs


def kubeconfig(directory: Path, url: str) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [
                    {"name": "bench", "context": {"cluster": "emulator", "user": "bench"}}
                ],
                "current-context": "bench",
            }
        )
    )
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WARM_ROUNDS = 3
"""Rounds of 200 jobs' admin calls before timing. The JVM's cost per round falls until about
the second (measured with C1 only, as tests/emulators/pubsub.py starts it: 1.4, 0.55, 0.49,
0.42, 0.47 s of CPU); without warming, the emulator's compiler took a third of the Klio run's
CPU."""


async def warm_pubsub_emulator(jobs: int = 200) -> None:
    """Admin calls of the bench's kind before any timing: the emulator's JVM compiles its hot
    paths on first use (a cold start that the real Pub/Sub does not have)."""
    from klio_operator.planning import PubSubPlan, SubscriptionPlan, TopicPlan
    from klio_operator.pubsub_admin import AsyncPubSubAdmin

    admin = AsyncPubSubAdmin()
    project = "projects/klio-local"
    try:
        for index in range(jobs):
            out, dead = f"{project}/topics/warm-{index}", f"{project}/topics/warm-{index}-dl"
            subscription = SubscriptionPlan(f"{project}/subscriptions/warm-{index}", out, dead)
            plan = PubSubPlan((TopicPlan(out), TopicPlan(dead)), (subscription,))
            await admin.apply(plan)
            await admin.remove([subscription.name], [out, dead])
    finally:
        await admin.close()


def pubsub_pid(host: str) -> int:
    """The Pub/Sub emulator's JVM serving `host` (its CPU counts beside the operators')."""
    port_flag = f"--port={host.rsplit(':', 1)[1]}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                arguments = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if port_flag in arguments and any(a.endswith(b".jar") for a in arguments):
                return int(proc.name)
    raise RuntimeError(f"no Pub/Sub emulator process serves {host}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def create_jobs(
    client: aiohttp.ClientSession, jobs: list[tuple[str, dict[str, Any]]]
) -> None:
    for name, spec in jobs:
        body = {
            "apiVersion": "klio.io/v1alpha1",
            "kind": "KlioJob",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
        async with client.post(KJ_PATH, data=json.dumps(body)) as response:
            if response.status != 200:
                raise RuntimeError(f"create {name}: {response.status} {await response.text()}")


async def play_deployment_controller(
    api: KlioKubernetesEmulator, client: aiohttp.ClientSession, stop: asyncio.Event
) -> None:
    """Mark every new Deployment's workers ready, as the real controller would."""
    done: set[str] = set()
    while not stop.is_set():
        for deployment in api.live_objects("apps/v1/deployments"):
            meta = deployment["metadata"]
            key = f"{meta['name']}@{meta['generation']}"
            if key in done:
                continue
            replicas = deployment["spec"].get("replicas", 1)
            status = {
                "observedGeneration": meta["generation"],
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
            }
            path = f"/apis/apps/v1/namespaces/{NS}/deployments/{meta['name']}/status"
            async with client.patch(
                path,
                data=json.dumps({"status": status}),
                headers={"Content-Type": "application/merge-patch+json"},
            ):
                done.add(key)
        await asyncio.sleep(0.05)


async def measure(
    command: list[str],
    env: dict[str, str],
    jobs: list[tuple[str, dict[str, Any]]],
    done: Callable[[KlioKubernetesEmulator], int],
    controller: bool,
    timeout: float,
) -> tuple[float, float, float, Counter[str]]:
    """Run one operator process, create the jobs, wait until `done` counts all.

    Returns (wall seconds, resident MiB, operator CPU seconds, API requests by kind)."""
    # The API emulator runs in this process: the garbage of the run before (~70k objects) would
    # otherwise be collected during this run, slowing the emulator for whichever side comes next.
    gc.collect()
    # The bench's own client keeps its connections, as a real controller's does; closed before
    # the emulator stops (its shutdown would wait for idle sockets).
    async with (
        running_emulator() as api,
        aiohttp.ClientSession(base_url=str(api.url)) as client,
    ):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**env, "KUBECONFIG": str(kubeconfig(Path(tmp), str(api.url).rstrip("/")))}
            log = open(os.environ.get("BENCH_OPERATOR_LOG", os.devnull), "ab")  # noqa: SIM115
            process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            stop = asyncio.Event()
            player = (
                asyncio.create_task(play_deployment_controller(api, client, stop))
                if controller
                else None
            )
            try:
                # The operator is up once it watches KlioJobs.
                deadline = time.monotonic() + 60
                while "kliojobs" not in api.watched:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{command[0]} did not start watching")
                    await asyncio.sleep(0.05)
                started = time.perf_counter()
                api.tally.clear()
                cpu_before = cpu_seconds(process.pid)
                bench_cpu_before = time.process_time()
                pubsub = pubsub_pid(env["PUBSUB_EMULATOR_HOST"])
                pubsub_cpu_before = cpu_seconds(pubsub)
                await create_jobs(client, jobs)
                deadline = time.monotonic() + timeout
                while done(api) < len(jobs):
                    if process.poll() is not None:
                        raise RuntimeError(f"{command} exited with {process.returncode}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {done(api)}/{len(jobs)} done after {timeout}s")
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - started
                memory = rss_mib(process.pid)
                cpu = cpu_seconds(process.pid) - cpu_before
                tally = Counter(api.tally)
                print(
                    f"  API emulator + bench CPU: {time.process_time() - bench_cpu_before:.2f} s,"
                    f" Pub/Sub emulator CPU: {cpu_seconds(pubsub) - pubsub_cpu_before:.2f} s"
                    f" over {elapsed:.2f} s",
                    flush=True,
                )
            finally:
                stop.set()
                if player is not None:
                    await player
                # py-spy writes its samples on SIGINT; an operator stops on either.
                process.send_signal(signal.SIGINT if "record" in command else signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                log.close()
    return elapsed, memory, cpu, tally


def ready_count(api: KlioKubernetesEmulator) -> int:
    count = 0
    for job in api.live_objects("klio.io/v1alpha1/kliojobs"):
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Ready" and condition["status"] == "True":
                count += 1
    return count


def handled_count(api: KlioKubernetesEmulator) -> int:
    return sum(
        1
        for job in api.live_objects("klio.io/v1alpha1/kliojobs")
        if LAST_HANDLED in (job["metadata"].get("annotations") or {})
    )


async def main(count: int, timeout: float, rounds: int) -> None:
    jobs = dag_specs(count)
    python = sys.executable
    with running_pubsub_emulator() as pubsub_host, tempfile.TemporaryDirectory() as tmp:
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host  # for this process's cleanup too
        noop_file = Path(tmp) / "noop_operator.py"
        noop_file.write_text(NOOP_OPERATOR)
        env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_host, "KLIO_OPERATOR_RETRY_DELAY": "1"}
        noop_command = [
            python,
            "-m",
            "kopf",
            "run",
            "--all-namespaces",
            "--standalone",
            "-q",
            str(noop_file),
        ]
        profile = (
            ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
            if os.environ.get("BENCH_PROFILE")
            else []
        )
        # BENCH_PYSPY=out.txt: sample every thread of the operator with py-spy (collapsed
        # stacks); the CPU figure is then py-spy's, not the operator's.
        pyspy = (
            [
                str(Path(python).parent / "py-spy"),
                "record",
                "-r",
                "200",
                "--threads",
                "--gil",
                "-f",
                "raw",
                "-o",
                os.environ["BENCH_PYSPY"],
                "--",
            ]
            if os.environ.get("BENCH_PYSPY")
            else []
        )
        klio_command = [
            *pyspy,
            python,
            *profile,
            "-m",
            "klio_operator",
            "run",
            "--all-namespaces",
            "--metrics-port",
            "0",
            "--health-port",
            str(free_port()),
            "--log-level",
            "warning",
        ]
        pubsub = pubsub_pid(pubsub_host)
        for warm_round in range(1, WARM_ROUNDS + 1):
            before = cpu_seconds(pubsub)
            await warm_pubsub_emulator()
            print(
                f"Pub/Sub emulator warm-up round {warm_round}:"
                f" {cpu_seconds(pubsub) - before:.2f} s of JVM CPU",
                flush=True,
            )
        print(f"{count} jobs, {rounds} round(s), the two operators interleaved", flush=True)
        noop_runs: list[tuple[float, float, float, Counter[str]]] = []
        klio_runs: list[tuple[float, float, float, Counter[str]]] = []
        for round_number in range(1, rounds + 1):
            noop_runs.append(
                await measure(
                    noop_command, env, jobs, handled_count, controller=False, timeout=timeout
                )
            )
            klio_runs.append(
                await measure(
                    klio_command, env, jobs, ready_count, controller=True, timeout=timeout
                )
            )
            await asyncio.to_thread(delete_everything)
            print(
                f"round {round_number}: no-op {noop_runs[-1][0]:.2f} s,"
                f" klio {klio_runs[-1][0]:.2f} s"
                f", ratio {klio_runs[-1][0] / noop_runs[-1][0]:.2f}x",
                flush=True,
            )
    print(f"KlioJobs (a DAG, {count // 5} roots, up to 2 parents each): {count}")
    print(
        "both sides: kopf with the Klio operator's settings (klio_operator.settings), a finalizer,"
        " standalone, the same API emulator and jobs"
    )
    print(
        f"  the Pub/Sub emulator's JVM warmed first ({WARM_ROUNDS} rounds of 200 jobs' admin"
        " calls, then deleted)"
    )
    print("  no-op: create + delete handlers that do nothing; done = kopf's last-handled mark")
    print(
        "  klio: parents resolved, Pub/Sub topics + subscriptions on the emulator, ConfigMap,"
        " Deployment, Service applied, 2 status writes; done = Ready (workers ready)"
    )
    for who, runs in (
        ("no-op kopf operator, all handled:", noop_runs),
        ("klio-operator, all Ready:", klio_runs),
    ):
        seconds, mib, cpu, _ = _median_run(runs)
        print(
            f"{who:34s} {seconds:7.2f} s   RSS {mib:6.1f} MiB   operator CPU {cpu:6.2f} s"
            f"   (median of {len(runs)}; times {', '.join(f'{r[0]:.2f}' for r in runs)})"
        )
    for who, runs in (("no-op", noop_runs), ("klio", klio_runs)):
        tally = runs[-1][3]
        calls = sum(tally.values()) - tally["CREATE kliojobs"]
        top = ", ".join(f"{kind} {n / count:.1f}" for kind, n in tally.most_common(8))
        print(f"API requests per job, {who}: {calls / count:.1f} ({top})")
    # Beside the goal's wall-time ratio: the operators' own CPU, which the emulators running on
    # the same cores (the API emulator in this process, Pub/Sub's JVM) do not inflate.
    cpu_ratios = sorted(k[2] / n[2] for n, k in zip(noop_runs, klio_runs, strict=True))
    print(
        f"operator CPU klio / no-op: {statistics.median(cpu_ratios):.2f}x median"
        f" (per round: {', '.join(f'{r:.2f}' for r in cpu_ratios)})"
    )
    ratios = sorted(k[0] / n[0] for n, k in zip(noop_runs, klio_runs, strict=True))
    print(
        f"ratio klio / no-op: {statistics.median(ratios):.2f}x median"
        f" (per round: {', '.join(f'{r:.2f}' for r in ratios)}; goal <= 3x)"
    )


def _median_run(
    runs: list[tuple[float, float, float, Counter[str]]],
) -> tuple[float, float, float, Counter[str]]:
    return sorted(runs, key=lambda run: run[0])[(len(runs) - 1) // 2]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="no-op and klio runs, interleaved; the ratio is their median (a 1 s no-op run"
        " varies by up to 2x from round to round)",
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.jobs, arguments.timeout, arguments.rounds))
