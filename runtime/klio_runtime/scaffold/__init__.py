"""``klio job create``'s templates and the code that fills them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml


def _release() -> str:
    try:
        return metadata.version("klio-k8s")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "latest"


BASE_IMAGE = f"klio-runtime:{_release()}"
"""The runtime image a created job builds FROM: the one this release's Makefile tags."""
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
FILES = {
    "klio-job.yaml.tmpl": "klio-job.yaml",
    "run.py.tmpl": "run.py",
    "transforms.py.tmpl": "transforms.py",
    "Dockerfile.tmpl": "Dockerfile",
    "job-requirements.txt.tmpl": "job-requirements.txt",
    "tests/test_transforms.py.tmpl": "tests/test_transforms.py",
}
KEPT_IF_PRESENT = {
    # Klio's quickstart has the user write the elements file; a project may have its .gitignore
    "input_elements.txt.tmpl": "{{job_name}}_input_elements.txt",
    "gitignore.tmpl": ".gitignore",
    "README.md.tmpl": "README.md",  # Klio's create writes one too
}
RECEIVED_LINE = {
    "batch": "\"Received '%s' from file '%s'\" % (element, event_input.file_pattern)",
    "streaming": "\"Received '%s' from Pub/Sub topic '%s'\" % (element, event_input.topic)",
}
"""What the scaffold's transform logs for each element, as Klio's scaffolds word it."""


class ScaffoldError(ValueError):
    """The job cannot be created (a bad name, a job already there)."""


@dataclass(frozen=True)
class JobIO:
    """Where a created job's events and data are, as Klio's ``job create`` options name them
    (``--input-topic`` / ``--batch-event-input``, ``--input-data-location`` /
    ``--batch-data-input``, and the outputs'); None is Klio's default for the job type."""

    event_input: str | None = None
    event_output: str | None = None
    data_input: str | None = None
    data_output: str | None = None

    def filled(self, job_name: str, job_type: str, project: str) -> dict[str, str]:
        """The template values, Klio's defaults where nothing was given. A streaming job's data
        is named only when given: Klio's defaults are buckets, which an offline run (or one on
        the Pub/Sub emulator alone) cannot make."""
        data: tuple[str | None, str | None]
        if job_type == "batch":
            events = (f"./{job_name}_input_elements.txt", f"./{job_name}_output_elements")
            data = (f"./{job_name}-input", f"./{job_name}-output")
        else:
            topics = f"projects/{project}/topics/{job_name}"
            events, data = (f"{topics}-input", f"{topics}-output"), (None, None)
        event_input = self.event_input or events[0]
        # Klio's: the input topic's name and the job's, in the job's project
        topic_name = event_input.rstrip("/").rpartition("/")[2]
        return {
            "event_input": event_input,
            "event_output": self.event_output or events[1],
            "subscription": f"projects/{project}/subscriptions/{topic_name}-{job_name}",
            "dead_letter_topic": f"projects/{project}/topics/{job_name}-dead-letter",
            "data_section": _data_section(self.data_input or data[0], self.data_output or data[1]),
        }


def _data_section(data_input: str | None, data_output: str | None) -> str:
    """``job_config.data`` as Klio's templates write it (``gcs`` for a ``gs://`` location, else
    ``file``): existence checks off until the job is ready for them."""
    if data_input is None and data_output is None:
        return ""
    lines = ["  data:"]
    for direction, location in (("inputs", data_input), ("outputs", data_output)):
        if location is None:
            continue
        lines += [
            f"    {direction}:",
            f"      - type: {'gcs' if location.startswith('gs://') else 'file'}",
            f"        location: {location}",
            f"        # Remove/set to false when the job is ready for {direction[:-1]} existence "
            "checks",
            "        skip_klio_existence_check: true",
        ]
    return "\n".join(lines) + "\n"


def create_job(
    job_dir: Path,
    job_name: str,
    base_image: str = BASE_IMAGE,
    job_type: str = "batch",
    project: str | None = None,
    io: JobIO = JobIO(),  # frozen: one default is shared
    pipeline_options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a runnable job into ``job_dir`` (created if need be; a job must not be there
    already); returns the files written.

    ``batch`` reads ``<job>_input_elements.txt`` (Klio's name; two sample lines unless the file
    is there) and runs offline; ``streaming`` reads and writes Pub/Sub topics
    named after the job in ``project`` (Klio's layout: ``<job>-input``, its subscription
    ``<job>-input-<job>``, ``<job>-output``). ``io`` moves them; ``pipeline_options`` (e.g.
    ``region``, ``num_workers``) are written beside the runner. Data entries are Klio's, with
    their existence checks off until the job is ready for them.
    """
    if not JOB_NAME.match(job_name) or len(job_name) > 63:
        raise ScaffoldError(
            f"job name {job_name!r}: use lower-case letters, digits and '-', starting with a "
            "letter (a DNS-1123 label, so the operator can name its Kubernetes objects after it)"
        )
    if job_type not in ("batch", "streaming"):
        raise ScaffoldError(f"job type {job_type!r}: batch or streaming")
    if job_type == "streaming" and not project:
        raise ScaffoldError("a streaming job needs --gcp-project: its topics live there")
    templates = resources.files(__package__).joinpath("templates")
    options = {"project": project, **(pipeline_options or {})}
    extra = yaml.safe_dump(
        {key: value for key, value in options.items() if value is not None},
        sort_keys=False,
        default_flow_style=False,
    )
    values = {
        "job_name": job_name,
        "base_image": base_image,
        "pipeline_extra": "".join(f"  {line}\n" for line in extra.splitlines() if line != "{}"),
        "received_line": RECEIVED_LINE[job_type],
        **io.filled(job_name, job_type, project or ""),
    }
    files = dict(FILES)
    optional = dict(KEPT_IF_PRESENT)
    if job_type == "streaming":
        optional.pop("input_elements.txt.tmpl")
        files["klio-job.streaming.yaml.tmpl"] = files.pop("klio-job.yaml.tmpl")
    elif io.event_input:  # the user's own elements file: nothing to seed
        optional.pop("input_elements.txt.tmpl")
    present = sorted(target for target in files.values() if (job_dir / target).exists())
    if present:
        raise ScaffoldError(f"{job_dir}: already has {', '.join(present)} (a job is there)")
    for source, target in optional.items():
        target = target.replace("{{job_name}}", job_name)
        if not (job_dir / target).exists():
            files[source] = target
    written = []
    for source, target in files.items():
        text = templates.joinpath(source).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = job_dir / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
