"""``klio job create``'s templates and the code that fills them."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
FILES = {
    "klio-job.yaml.tmpl": "klio-job.yaml",
    "run.py.tmpl": "run.py",
    "transforms.py.tmpl": "transforms.py",
    "Dockerfile.tmpl": "Dockerfile",
    "tests/test_transforms.py.tmpl": "tests/test_transforms.py",
}
KEPT_IF_PRESENT = {
    # Klio's quickstart has the user write the elements file; a project may have its .gitignore
    "input_elements.txt.tmpl": "{{job_name}}_input_elements.txt",
    "gitignore.tmpl": ".gitignore",
}
RECEIVED_LINE = {
    "batch": "\"Received '%s' from file '%s'\" % (element, event_input.file_pattern)",
    "streaming": "\"Received '%s' from Pub/Sub topic '%s'\" % (element, event_input.topic)",
}
"""What the scaffold's transform logs for each element, as Klio's scaffolds word it."""


class ScaffoldError(ValueError):
    """The job cannot be created (a bad name, a job already there)."""


def create_job(
    job_dir: Path,
    job_name: str,
    base_image: str = "klio-runtime:latest",
    job_type: str = "batch",
    project: str | None = None,
    region: str | None = None,
) -> list[Path]:
    """Write a runnable job into ``job_dir`` (created if need be; a job must not be there
    already); returns the files written.

    ``batch`` reads ``<job>_input_elements.txt`` (Klio's name; two sample lines unless the file
    is there) and runs offline; ``streaming`` reads and writes Pub/Sub topics
    named after the job in ``project`` (Klio's layout: ``<job>-input``, its subscription
    ``<job>-input-<job>``, ``<job>-output``).
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
    extra = "".join(
        f"  {key}: {value}\n" for key, value in (("project", project), ("region", region)) if value
    )
    values = {
        "job_name": job_name,
        "base_image": base_image,
        "project": project or "",
        "pipeline_extra": extra,
        "received_line": RECEIVED_LINE[job_type],
    }
    files = dict(FILES)
    optional = dict(KEPT_IF_PRESENT)
    if job_type == "streaming":
        optional.pop("input_elements.txt.tmpl")
        files["klio-job.streaming.yaml.tmpl"] = files.pop("klio-job.yaml.tmpl")
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
