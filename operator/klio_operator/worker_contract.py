"""What the operator expects of a worker container: its command, files, ports and paths.

One place for the contract between the pods the operator renders and the runtime's worker, so
both sides (and the docs) agree. The worker reads its config from `CONFIG_PATH`, serves
liveness on `HEALTH_PORT`/`LIVENESS_PATH` and readiness on `READINESS_PATH`, exports
Prometheus metrics on `METRICS_PORT`/`METRICS_PATH`, and on SIGTERM stops pulling, finishes and
acknowledges in-flight messages, then exits within `terminationGracePeriodSeconds`.
"""

from __future__ import annotations

from typing import Final

CONFIG_DIR: Final = "/etc/klio"
CONFIG_FILE: Final = "klio-job.yaml"
CONFIG_PATH: Final = f"{CONFIG_DIR}/{CONFIG_FILE}"

WORKER_COMMAND: Final = ("klio", "worker", "--config-file", CONFIG_PATH)
"""Streaming and batch workers (runner `direct`): pull, run, publish, ack."""
LAUNCHER_COMMAND: Final = ("klio", "job", "run", "--config-file", CONFIG_PATH)
"""Runners `dataflow` / `flink`: submit the pipeline with the job's pipelineOptions, then exit."""

HEALTH_PORT: Final = 8080
LIVENESS_PATH: Final = "/healthz"
READINESS_PATH: Final = "/readyz"
METRICS_PORT: Final = 9090
METRICS_PATH: Final = "/metrics"

SCRATCH_DIR: Final = "/tmp"
"""Writable scratch space (an emptyDir): the root filesystem is read-only."""
SCRATCH_ENV: Final = (
    # Caches that would otherwise be written under a read-only $HOME (numba via librosa,
    # matplotlib for plots, anything following XDG).
    ("NUMBA_CACHE_DIR", f"{SCRATCH_DIR}/numba-cache"),
    ("MPLCONFIGDIR", f"{SCRATCH_DIR}/matplotlib"),
    ("XDG_CACHE_HOME", f"{SCRATCH_DIR}/cache"),
)

DRAIN_SECONDS: Final = 60
"""Grace a worker gets to drain after SIGTERM, beyond the job's per-element timeout."""

# Environment the operator sets on every worker (besides the job's own env).
ENV_JOB_NAME: Final = "KLIO_JOB_NAME"
ENV_NAMESPACE: Final = "KLIO_NAMESPACE"
ENV_POD_NAME: Final = "KLIO_POD_NAME"
ENV_DEAD_LETTER_TOPIC: Final = "KLIO_DEAD_LETTER_TOPIC"
ENV_PUBSUB_PROJECT: Final = "KLIO_PUBSUB_PROJECT"

PARENTS_KEY: Final = "parents"
"""`job_config` key listing the parents a worker asks for missing data (bottom-up): entries
`{job_name, gcp_project, topic, data_input}` (klio_runtime.worker.bottom_up.parents_of)."""
