"""``klio worker``: the container entrypoint the operator renders (worker_contract.WORKER_COMMAND).

With Pub/Sub event inputs it runs the streaming micro-batch worker until SIGTERM; with only file
event inputs it runs the job once as a bounded batch pipeline and exits (a Kubernetes Job).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from klio_runtime.cli.options import config_file_option, job_dir_option, override_option
from klio_runtime.config import ConfigError, parse_overrides
from klio_runtime.worker.settings import ENV_DEAD_LETTER_TOPIC, WorkerSettings

# The contract's ports (klio_operator.worker_contract); Beam and Pub/Sub load only when run.
HEALTH_PORT = 8080
METRICS_PORT = 9090

DEFAULTS = WorkerSettings()


@click.command()
@config_file_option
@job_dir_option
@override_option
@click.option("--health-port", type=int, default=HEALTH_PORT, show_default=True,
              envvar="KLIO_HEALTH_PORT", help="Port of /healthz and /readyz (0: any free).")
@click.option("--metrics-port", type=int, default=METRICS_PORT, show_default=True,
              envvar="KLIO_METRICS_PORT", help="Port of the Prometheus /metrics (0: any free).")
@click.option("--probe-host", default="0.0.0.0", show_default=True, envvar="KLIO_PROBE_HOST",
              help="Address the health and metrics servers listen on.")
@click.option("--max-messages", type=click.IntRange(min=1), default=DEFAULTS.max_messages,
              show_default=True, envvar="KLIO_MAX_MESSAGES", help="Messages per micro-batch.")
@click.option("--target-batch-seconds", type=click.FloatRange(min=0),
              default=DEFAULTS.target_batch_seconds, show_default=True,
              envvar="KLIO_TARGET_BATCH_SECONDS",
              help="A batch holds what runs in about this long at the job's pace (starting at "
                   "one message; 0: always --max-messages).")
@click.option("--max-wait-ms", type=click.IntRange(min=0), default=DEFAULTS.max_wait_ms,
              show_default=True, envvar="KLIO_MAX_WAIT_MS",
              help="How long to gather a batch after its first message.")
@click.option("--max-batch-bytes", type=click.IntRange(min=1), default=DEFAULTS.max_batch_bytes,
              show_default=True, envvar="KLIO_MAX_BATCH_BYTES",
              help="Bytes (data + attributes) held per micro-batch.")
@click.option("--ack-deadline", type=click.IntRange(min=10, max=600),
              default=DEFAULTS.ack_deadline_seconds, show_default=True,
              envvar="KLIO_ACK_DEADLINE_SECONDS",
              help="Seconds each lease extension of in-flight messages grants.")
@click.option("--stall-seconds", type=click.FloatRange(min=1), default=600.0, show_default=True,
              envvar="KLIO_STALL_SECONDS",
              help="/healthz fails when the loop makes no progress (no batch pulled, no "
                   "element begun or finished) for this long; longer when the job's "
                   "timeout_seconds (on each of its retries) needs it.")
@click.option("--dead-letter-topic", envvar=ENV_DEAD_LETTER_TOPIC,
              help="Topic for messages the job cannot process "
                   "(else job_config.dead_letter_topic).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, envvar="KLIO_LOG_LEVEL")
def worker(config_file: Path | None, job_dir: Path, overrides: tuple[str, ...],
           health_port: int, metrics_port: int, probe_host: str, max_messages: int,
           target_batch_seconds: float, max_wait_ms: int, max_batch_bytes: int,
           ack_deadline: int, stall_seconds: float,
           dead_letter_topic: str | None, log_level: str) -> None:
    """Run a Klio job as a worker: pull, run, publish, then acknowledge.

    Messages are acknowledged only after their outputs are published (at-least-once).
    SIGTERM stops pulling, finishes the in-flight batch and exits 0.
    """
    from klio_runtime.context import LOGGER_NAME, show_element_ids  # with Beam: not for --help

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr)
    if log_level != "debug":
        # Beam notes at INFO each string annotation it reads (dozens of lines at every start)
        logging.getLogger("apache_beam.typehints").setLevel(logging.WARNING)
    # the klio logger's own level too (INFO unless set): --log-level debug shows Klio's DEBUG
    # lines; a job that sets its own level when imported still has the last word
    logging.getLogger(LOGGER_NAME).setLevel(log_level.upper())
    for handler in logging.root.handlers:
        show_element_ids(handler)  # other loggers' lines look like the klio logger's own
    from google.api_core.exceptions import GoogleAPICallError

    from klio_runtime.io.pubsub_events import has_pubsub_input
    from klio_runtime.runner import JobLoadError, in_job_directory, load_job, run_job
    from klio_runtime.worker.serve import Probes, serve

    # in the job's directory, as Klio runs a job (in a pod: the image's working directory)
    with in_job_directory(job_dir, config_file) as (directory, config_path):
        try:
            config, run_fn, _ = load_job(directory, config_path, parse_overrides(overrides))
        except (ConfigError, JobLoadError) as err:
            raise click.ClickException(str(err)) from None

        inputs = config.job_config.events.inputs
        if inputs and not has_pubsub_input(config):  # files only: a batch
            summary = run_job(config, run_fn)
            click.echo(f"batch done: received {summary.received}, output {summary.output}, "
                       f"dropped {summary.dropped}, dead letters {summary.dead_letter}")
            return
        if not inputs:
            raise click.ClickException("job_config.events.inputs: no event input to read")

        settings = WorkerSettings(
            max_messages=max_messages, target_batch_seconds=target_batch_seconds,
            max_wait_ms=max_wait_ms, max_batch_bytes=max_batch_bytes,
            ack_deadline_seconds=ack_deadline, lease_every_seconds=ack_deadline / 3,
        )
        probes = Probes(health_port, metrics_port, probe_host, stall_seconds)

        try:
            acked = serve(config, run_fn, settings, probes, dead_letter_topic,
                          announce=lambda line: click.echo(line, err=True))
        except (ConfigError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        except GoogleAPICallError as err:  # e.g. the input topic of a run's subscription is gone
            raise click.ClickException(f"Pub/Sub: {err}") from None
        click.echo(f"klio worker {config.job_name}: drained, exiting "
                   f"(acked {acked:.0f} messages)", err=True)
