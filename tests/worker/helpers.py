"""Helpers of the worker tests: Pub/Sub resources, job configs, worker processes, waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from google.cloud import pubsub_v1
from klio_runtime.message import KlioMessage, parse

from tests.emulators.pubsub import free_port

PROJECT = "klio-local"
JOB_DIR = Path(__file__).parent / "job"
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; at the deadline, fail naming
    ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def topic(name: str) -> str:
    return f"projects/{PROJECT}/topics/{name}"


def subscription(name: str) -> str:
    return f"projects/{PROJECT}/subscriptions/{name}"


class PubSub:
    """Creates topics/subscriptions (deleted by ``cleanup``), publishes and drains."""

    def __init__(self) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.topics: list[str] = []
        self.subscriptions: list[str] = []

    def topic(self, name: str) -> str:
        path = topic(name)
        self.publisher.create_topic(name=path)
        self.topics.append(path)
        return path

    def subscribe(self, topic_path: str, name: str, ack_deadline: int = 10) -> str:
        path = subscription(name)
        self.subscriber.create_subscription(name=path, topic=topic_path,
                                            ack_deadline_seconds=ack_deadline)
        self.subscriptions.append(path)
        return path

    def publish(self, topic_path: str, datas: Iterable[bytes], **attributes: str) -> list[str]:
        futures = [self.publisher.publish(topic_path, data, **attributes) for data in datas]
        return [future.result(timeout=30) for future in futures]

    def drain(self, sub: str) -> list[pubsub_v1.types.PubsubMessage]:
        """Whatever is available now, acknowledged."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # return_immediately
            response = self.subscriber.pull(
                request={"subscription": sub, "max_messages": 1000, "return_immediately": True},
                timeout=10)
        if response.received_messages:
            self.subscriber.acknowledge(request={
                "subscription": sub,
                "ack_ids": [m.ack_id for m in response.received_messages]})
        return [m.message for m in response.received_messages]

    def collect(self, sub: str, count: int, timeout: float,
                key: Callable[[Any], str] | None = None) -> dict[str, Any]:
        """Distinct messages (by ``key``, default the element id) until ``count`` are seen."""
        key = key or (lambda m: parse(m.data).data.element.decode())
        seen: dict[str, Any] = {}

        def enough() -> bool:
            for message in self.drain(sub):
                seen.setdefault(key(message), message)
            return len(seen) >= count

        wait_for(enough, timeout, f"{count} messages on {sub} (have {len(seen)}: {seen.keys()})")
        return seen

    def cleanup(self) -> None:
        for sub in self.subscriptions:
            self.subscriber.delete_subscription(request={"subscription": sub})
        for path in self.topics:
            self.publisher.delete_topic(request={"topic": path})
        self.subscriber.close()


def write_config(directory: Path, name: str, in_sub: str, out_topic: str,
                 job_config: dict[str, Any] | None = None) -> Path:
    """A streaming klio-job.yaml for the test job: reads ``in_sub``, publishes to
    ``out_topic``."""
    config = {
        "version": 2,
        "job_name": name,
        "pipeline_options": {"project": PROJECT, "streaming": True},
        "job_config": {
            "events": {
                "inputs": [{"type": "pubsub", "subscription": in_sub}],
                "outputs": [{"type": "pubsub", "topic": out_topic}],
            },
            "setup_log": str(directory / f"{name}.setup.log"),
            "processed_log": str(directory / f"{name}.processed.log"),
            **(job_config or {}),
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


class WorkerProcess:
    """``klio worker`` as a subprocess, with its own health and metrics ports."""

    def __init__(self, config: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.log_path = config.with_suffix(f".{uuid.uuid4().hex[:6]}.log")
        command = [
            str(Path(sys.executable).parent / "klio"),
            "worker", "--config-file", str(config), "--job-dir", str(JOB_DIR),
            "--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port),
            "--probe-host", "127.0.0.1", "--max-wait-ms", "50", *extra,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in wait)
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def url(self, path: str) -> str:
        port = self.metrics_port if path == "/metrics" else self.health_port
        return f"http://127.0.0.1:{port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            return self.get("/readyz")[0] == 200

        wait_for(ready, timeout, f"worker {self.config.name} ready", every=0.1)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait(10)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def audit_jobs(msg: KlioMessage) -> list[str]:
    return [item.klio_job.job_name for item in msg.metadata.job_audit_log]
