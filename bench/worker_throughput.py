"""Messages/s through `klio worker` (a trivial job) vs a raw pull → publish → ack loop.

Both run as their own process against the same Pub/Sub emulator in the same run, with the same
batch size: N messages wait on the subscription, the clock starts when the consumer says it is
ready (the worker: ``/readyz`` turns 200, polled every 10 ms) and stops when it has acknowledged all
N (its outputs confirmed published first). Prints both rates, their ratio (design.md measured
~0.94x) and each process' peak RSS.

    .venv/bin/python bench/worker_throughput.py [--messages 20000] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from google.cloud import pubsub_v1  # noqa: E402
from klio_runtime.message import new_message, serialize  # noqa: E402

from tests.emulators.pubsub import free_port, running_pubsub_emulator  # noqa: E402

PROJECT = "klio-local"
JOB_DIR = Path(__file__).resolve().parent / "worker_job"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raw_loop(subscription: str, topic: str, count: int, batch: int) -> None:
    """The baseline (run in its own process): pull, publish each, wait, ack; report when done."""
    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()
    print(json.dumps({"ready_at": time.time()}), flush=True)
    done = 0
    while done < count:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": batch},
                                   timeout=5, retry=None)
        received = response.received_messages
        if not received:
            continue
        futures = [publisher.publish(topic, m.message.data, **dict(m.message.attributes))
                   for m in received]
        for future in futures:
            future.result()
        subscriber.acknowledge(request={"subscription": subscription,
                                        "ack_ids": [m.ack_id for m in received]})
        done += len(received)
    print(json.dumps({"done_at": time.time(), "peak_rss_mib": peak_rss_mib(os.getpid())}),
          flush=True)


def _resources(publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient,
               name: str) -> tuple[str, str, str]:
    in_topic = f"projects/{PROJECT}/topics/{name}-in"
    out_topic = f"projects/{PROJECT}/topics/{name}-out"
    sub = f"projects/{PROJECT}/subscriptions/{name}-in"
    publisher.create_topic(name=in_topic)
    publisher.create_topic(name=out_topic)
    subscriber.create_subscription(name=sub, topic=in_topic, ack_deadline_seconds=60)
    return in_topic, out_topic, sub


def _publish(publisher: pubsub_v1.PublisherClient, topic: str, count: int) -> None:
    payloads = [serialize(new_message(f"element-{i}")) for i in range(count)]
    futures = [publisher.publish(topic, data) for data in payloads]
    for future in futures:
        future.result()


def bench_raw(count: int, batch: int) -> dict[str, float]:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    in_topic, out_topic, sub = _resources(publisher, subscriber, f"raw-{uuid.uuid4().hex[:6]}")
    _publish(publisher, in_topic, count)
    process = subprocess.Popen(
        [sys.executable, __file__, "--raw-loop", sub, out_topic, str(count), str(batch)],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    start = json.loads(process.stdout.readline())["ready_at"]
    result = json.loads(process.stdout.readline())
    process.wait(timeout=30)
    seconds = result["done_at"] - start
    return {"seconds": seconds, "rate": count / seconds, "peak_rss_mib": result["peak_rss_mib"]}


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def bench_worker(count: int, batch: int) -> dict[str, float]:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    in_topic, out_topic, sub = _resources(publisher, subscriber, f"wrk-{uuid.uuid4().hex[:6]}")
    _publish(publisher, in_topic, count)
    health, metrics = free_port(), free_port()
    klio = Path(sys.executable).parent / "klio"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(klio), "worker", "--job-dir", str(JOB_DIR), "--probe-host", "127.0.0.1",
             "--health-port", str(health), "--metrics-port", str(metrics),
             "--max-messages", str(batch), "--max-wait-ms", "50", "--log-level", "warning",
             "-O", f"job_config.events.inputs[0].subscription={sub}",
             "-O", f"job_config.events.outputs[0].topic={out_topic}"],
            stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while _get(f"http://127.0.0.1:{health}/readyz") != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"worker not ready:\n{log.read().decode()}")
                time.sleep(0.01)
            start = time.time()
            deadline = time.monotonic() + 300
            while _metric(metrics, "klio_worker_acked_total") < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not acknowledge every message in 300 s")
                time.sleep(0.02)
            seconds = time.time() - start
            rss = peak_rss_mib(process.pid)
            batches = _metric(metrics, "klio_worker_batches_total")
        finally:
            process.terminate()
            process.wait(timeout=60)
    return {"seconds": seconds, "rate": count / seconds, "peak_rss_mib": rss,
            "batches": batches}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-loop":
        raw_loop(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with running_pubsub_emulator() as host:
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        raw = bench_raw(args.messages, args.batch)
        worker = bench_worker(args.messages, args.batch)
    print(f"messages: {args.messages}, batch: {args.batch} (Pub/Sub emulator, same run)")
    print(f"raw pull→publish→ack loop: {raw['rate']:8.0f} msg/s ({raw['seconds']:.2f} s), "
          f"peak RSS {raw['peak_rss_mib']:.0f} MiB")
    print(f"klio worker (trivial job):  {worker['rate']:8.0f} msg/s ({worker['seconds']:.2f} s, "
          f"{worker['batches']:.0f} batches), peak RSS {worker['peak_rss_mib']:.0f} MiB")
    print(f"ratio worker/raw: {worker['rate'] / raw['rate']:.2f}x")


if __name__ == "__main__":
    main()
