"""Shared helpers of the runtime tests: configs, messages, metric readings."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import ReadFromPubSub, WriteToPubSub
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from klio_runtime.config import KlioConfig, parse_config
from klio_runtime.context import KlioContext, bind_context
from klio_runtime.message import KlioMessage, new_message, parse, serialize
from klio_runtime.metrics import process_hub


def make_config(job_config: dict[str, Any] | None = None, **top: Any) -> KlioConfig:
    """A config with a unique job name (metrics are per job name within the test process)."""
    data: dict[str, Any] = {
        "job_name": f"t-{uuid.uuid4().hex[:10]}",
        "pipeline_options": {"streaming": False},
    }
    data.update(top)
    data["job_config"] = job_config or {}
    return parse_config(data)


def bound(config: KlioConfig) -> KlioContext:
    ctx = KlioContext(config)
    bind_context(ctx)
    return ctx


def msg_bytes(element: str, payload: bytes = b"", **flags: Any) -> bytes:
    return serialize(new_message(element, payload, **flags))


def parsed(data: bytes) -> KlioMessage:
    return parse(data)


def dropped(config: KlioConfig, reason: str) -> float:
    return process_hub().value("klio_messages_dropped_total", job=config.job_name, reason=reason)


def beam_pubsub_io(pipeline: beam.Pipeline) -> dict[str, list[Any]]:
    """A pipeline's Beam Pub/Sub sources and sinks: ``read``: ``(kind, path)`` of each source
    (kind ``subscription`` or ``topic``), ``write``: each sink's topic."""
    found: dict[str, list[Any]] = {"read": [], "write": []}

    class Visit(PipelineVisitor):
        def visit_transform(self, node: AppliedPTransform) -> None:
            transform = node.transform
            if isinstance(transform, ReadFromPubSub):
                source = transform._source
                found["read"].append(
                    ("subscription", source.full_subscription)
                    if source.full_subscription
                    else ("topic", source.full_topic)
                )
            elif isinstance(transform, WriteToPubSub):
                found["write"].append(transform.full_topic)

        enter_composite_transform = visit_transform

    pipeline.visit(Visit())
    return found


KLIO = str(Path(sys.executable).parent / "klio")
"""The ``klio`` command of the environment the tests run in."""


def klio_in(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``klio ARGS`` run in ``cwd`` as a user would, its output captured as text."""
    return subprocess.run(
        [KLIO, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=None if env is None else dict(env),
        check=False,
    )
