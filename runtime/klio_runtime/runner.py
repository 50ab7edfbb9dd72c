"""Run a job directory: load config and ``run.py``, map the runner, run, summarize.

Batch runs use Beam's in-process FnApiRunner when the config says ``DirectRunner`` (or Klio's
``DirectGKERunner``, or nothing): Beam 2.77's ``DirectRunner`` would first try to download Prism.
Any other runner and every other pipeline option pass through to Beam unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from klio_runtime.config import (
    CONFIG_FILE_NAME,
    FileEventInput,
    FileEventOutput,
    KlioConfig,
    load_config,
)
from klio_runtime.io.gcs import ensure_emulator_credentials
from klio_runtime.pipeline import RunFn, build_pipeline

LOCAL_RUNNERS = {None, "", "DirectRunner", "DirectGKERunner", "FnApiRunner"}
BATCH_RUNNER = "FnApiRunner"


class JobLoadError(RuntimeError):
    """The job directory cannot be run (no run.py, no ``run`` function, import error)."""


def beam_options(
    config: KlioConfig, runner: str | None = None, extra: Mapping[str, Any] | None = None
) -> PipelineOptions:
    """Beam options from ``pipeline_options`` (+ ``extra``); local runners → FnApiRunner (batch)."""
    values = dict(config.pipeline_options.as_dict())
    values.update(extra or {})
    chosen = runner if runner is not None else values.get("runner")
    values["runner"] = BATCH_RUNNER if chosen in LOCAL_RUNNERS else chosen
    if values["runner"] == BATCH_RUNNER:
        values["streaming"] = False
    values = {k: v for k, v in values.items() if v is not None}
    if values.get("streaming") is False:
        values.pop("streaming")
    return PipelineOptions.from_dictionary(values)


def resolve_paths(config: KlioConfig, job_dir: Path) -> KlioConfig:
    """A copy whose relative local locations are relative to ``job_dir`` (as Klio's are)."""
    out = config.model_copy(deep=True)

    def fix(location: str) -> str:
        if "://" in location or os.path.isabs(location):
            return location
        return str((job_dir / location).resolve()) if location not in ("", ".") else str(job_dir)

    for inp in out.job_config.events.inputs:
        if isinstance(inp, FileEventInput):
            inp.location = fix(inp.location)
    for outp in out.job_config.events.outputs:
        if isinstance(outp, FileEventOutput):
            outp.location = fix(outp.location)
    for data in [*out.job_config.data.inputs, *out.job_config.data.outputs]:
        if data.type == "file":
            data.location = fix(data.location)
    dead = getattr(out.job_config, "dead_letter_location", None)
    if dead:
        setattr(out.job_config, "dead_letter_location", fix(str(dead)))  # noqa: B010
    return out


def load_run_function(job_dir: Path) -> RunFn:
    """``run`` from ``<job_dir>/run.py``, importable siblings (``import transforms``) included."""
    run_py = job_dir / "run.py"
    if not run_py.is_file():
        raise JobLoadError(f"{run_py}: no such file (a Klio job needs run.py defining run)")
    job_dir_s, parent_s = str(job_dir.resolve()), str(job_dir.resolve().parent)
    for path in (parent_s, job_dir_s):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    _forget_other_jobs_modules(job_dir_s)
    spec = importlib.util.spec_from_file_location("run", run_py)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules["run"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise JobLoadError(f"{run_py}: import failed: {type(err).__name__}: {err}") from err
    run_fn = getattr(module, "run", None)
    if not callable(run_fn):
        raise JobLoadError(f"{run_py}: defines no function `run(pcoll, config)`")
    return run_fn


def _forget_other_jobs_modules(job_dir: str) -> None:
    # Jobs name their modules alike (run, transforms); another job's cached copy must not win.
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name.split(".")[0] in ("run", "transforms") and not file.startswith(job_dir):
            del sys.modules[name]


@dataclass
class JobSummary:
    """What a run did, from the job's Beam metrics."""

    received: int = 0
    processed: int = 0
    output: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_ids: dict[str, list[str]] = field(default_factory=dict)
    dead_letter: dict[str, int] = field(default_factory=dict)
    dead_letter_ids: dict[str, list[str]] = field(default_factory=dict)
    state: str = ""


def _label(name: str) -> tuple[str, str | None]:
    if "[reason=" in name:
        base, _, rest = name.partition("[reason=")
        return base, rest.rstrip("]")
    return name, None


def summarize(result: PipelineResult, job_name: str) -> JobSummary:
    metrics = result.metrics().query(MetricsFilter().with_namespace(job_name))
    summary = JobSummary(state=str(result.state))
    buckets: dict[str, dict[str, int]] = {
        "klio_messages_skipped": summary.skipped,
        "klio_messages_dropped": summary.dropped,
        "klio_dead_letter": summary.dead_letter,
    }
    for counter in metrics.get("counters", []):
        base, reason = _label(counter.key.metric.name)
        value = int(counter.committed or 0)
        if base == "klio_messages_received":
            summary.received += value
        elif base == "klio_messages_to_run":
            summary.processed += value
        elif base == "klio_messages_output":
            summary.output += value
        elif base in buckets and reason:
            buckets[base][reason] = buckets[base].get(reason, 0) + value
    ids: dict[str, dict[str, set[str]]] = {
        "dropped_ids": defaultdict(set),
        "dead_letter_ids": defaultdict(set),
    }
    for string_set in metrics.get("string_sets", []):
        base, reason = _label(string_set.key.metric.name)
        if base in ids and reason:
            ids[base][reason].update(string_set.committed or ())
    summary.dropped_ids = {k: sorted(v) for k, v in ids["dropped_ids"].items()}
    summary.dead_letter_ids = {k: sorted(v) for k, v in ids["dead_letter_ids"].items()}
    return summary


def load_job(
    job_dir: str | Path = ".",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[KlioConfig, RunFn, Path]:
    """The job's config (paths resolved against the job dir) and its ``run``."""
    directory = Path(job_dir).resolve()
    config_path = Path(config_file) if config_file else directory / CONFIG_FILE_NAME
    config = resolve_paths(load_config(config_path, overrides), directory)
    return config, load_run_function(directory), directory


def run_job(
    config: KlioConfig,
    run_fn: RunFn,
    runner: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
    on_start: Callable[[], None] | None = None,
) -> JobSummary:
    """Build and run the batch pipeline; blocks until done."""
    ensure_emulator_credentials()
    options = beam_options(config, runner, extra_options)
    pipeline = build_pipeline(config, run_fn, options)
    if on_start:
        on_start()
    result = pipeline.run()
    result.wait_until_finish()
    return summarize(result, config.job_name)


def run_in_thread(target: Callable[[], JobSummary]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target`` in a thread; the dict gets ``summary`` or ``error`` (for progress display)."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["summary"] = target()
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=main, name="klio-job-run", daemon=True)
    thread.start()
    return thread, box
