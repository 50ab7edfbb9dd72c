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
    "ids.txt.tmpl": "ids.txt",
    "gitignore.tmpl": ".gitignore",
    "tests/test_transforms.py.tmpl": "tests/test_transforms.py",
}


class ScaffoldError(ValueError):
    """The job cannot be created (bad name, directory not empty)."""


def create_job(job_dir: Path, job_name: str, base_image: str = "klio-runtime:latest") -> list[Path]:
    """Write a runnable job into ``job_dir`` (created; must be empty); returns the files written."""
    if not JOB_NAME.match(job_name) or len(job_name) > 63:
        raise ScaffoldError(
            f"job name {job_name!r}: use lower-case letters, digits and '-', starting with a "
            "letter (a DNS-1123 label, so the operator can name its Kubernetes objects after it)"
        )
    if job_dir.exists() and any(job_dir.iterdir()):
        raise ScaffoldError(f"{job_dir}: directory is not empty")
    templates = resources.files(__package__).joinpath("templates")
    written = []
    for source, target in FILES.items():
        text = templates.joinpath(source).read_text(encoding="utf-8")
        text = text.replace("{{job_name}}", job_name).replace("{{base_image}}", base_image)
        path = job_dir / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
