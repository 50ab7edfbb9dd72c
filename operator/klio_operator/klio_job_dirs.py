"""Reading Klio job directories for their KlioJobs: the config as written (templated and
overridden as `klio job run` does) and the objects of ``kubernetes/*.yaml``. The IO beside the
pure conversion of :mod:`klio_operator.from_klio`; `klio-operator manifest` and `klio job deploy`
both read jobs here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from klio_runtime.config import ConfigError, config_path_of, load_config

from klio_operator.from_klio import ConversionError, KlioJobDir


def read_job_dir(
    job_dir: Path,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    templates: Mapping[str, str] | None = None,
) -> KlioJobDir:
    """One job directory, to convert. Raises ConversionError naming the directory and, by field
    or file, each problem of its config and of its ``kubernetes/*.yaml``."""
    try:
        config = load_config(config_path_of(job_dir, config_file), overrides, templates)
    except ConfigError as exc:
        raise ConversionError([f"{job_dir}: {line}" for line in exc.errors]) from exc
    objects, unread = kubernetes_objects(job_dir)
    if unread:
        raise ConversionError([f"{job_dir}: {line}" for line in unread])
    return KlioJobDir(str(job_dir), str(job_dir.resolve()), config, objects)


def kubernetes_objects(job_dir: Path) -> tuple[tuple[tuple[str, Any], ...], list[str]]:
    """The documents of a job's ``kubernetes/*.yaml`` (Klio's DirectGKERunner deployed them),
    each with its file's path from the job directory, and the files that cannot be read."""
    found: list[tuple[str, Any]] = []
    unread: list[str] = []
    for path in sorted((job_dir / "kubernetes").glob("*.yaml")):
        name = f"kubernetes/{path.name}"
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            unread.append(f"{name}: cannot read: {exc}")
            continue
        except yaml.YAMLError as exc:
            unread.append(f"{name}: not YAML: {' '.join(str(exc).split())}")
            continue
        found += [(name, document) for document in documents if document is not None]
    return tuple(found), unread
