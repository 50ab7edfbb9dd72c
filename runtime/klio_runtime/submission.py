"""Klio's rules for the options of a pipeline submitted to a runner outside this process (its exec's
``KlioPipeline``): packaging files by absolute path, the worker image and its tag, and the worker
defaults Klio gives a Dataflow job.

Pure functions over the option values; :func:`klio_runtime.runner.beam_options` applies them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from klio_runtime.config import (
    DATAFLOW_DEFAULT_REGION,
    WORKER_DISK_TYPES,
    ConfigError,
    KlioRunner,
    worker_disk_type_path,
)

DATAFLOW_RUNNER = KlioRunner.DATAFLOW_RUNNER.value
FNAPI_EXPERIMENT = "beam_fn_api"

KLIO_DATAFLOW_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "region": DATAFLOW_DEFAULT_REGION,
        "num_workers": 2,
        "autoscaling_algorithm": "NONE",
        "disk_size_gb": 32,
        "worker_machine_type": "n1-standard-2",
    }
)
"""What Klio's config gives a Dataflow job that leaves these out (its KlioPipelineConfig)."""

_PACKAGING_FILES = ("setup_file", "requirements_file")
_LEGACY_IMAGE = "worker_harness_container_image"


def submission_options(values: Mapping[str, Any], image_tag: str | None = None) -> dict[str, Any]:
    """``values`` (Beam option names, the job's ``pipeline_options`` first) as Klio submits them.

    - ``setup_file`` / ``requirements_file``: absolute (Beam's stager changes into the setup
      file's directory, and a bare ``setup.py`` has none), relative to the working directory,
      which is the job's (see :func:`klio_runtime.runner.resolve_paths`). With either, the
      worker image is dropped: the job is installed on the runner's own image.
    - Otherwise, with the ``beam_fn_api`` experiment, the worker image gets ``image_tag``.
    - On Dataflow: Klio's worker defaults (:data:`KLIO_DATAFLOW_DEFAULTS`) where unset, and a
      short ``worker_disk_type`` as the resource path Klio makes of it.

    Raises:
        klio_runtime.config.ConfigError: a setup or requirements file beside the
            ``beam_fn_api`` experiment (a job is packaged one way or the other, as Klio
            refuses it), naming the field.
    """
    out = dict(values)
    packaged = [key for key in _PACKAGING_FILES if out.get(key)]
    fnapi = FNAPI_EXPERIMENT in (out.get("experiments") or [])
    if fnapi and packaged:
        raise ConfigError(
            [
                f"pipeline_options.{key}: not with the {FNAPI_EXPERIMENT} experiment (as in "
                "Klio, a job is packaged either in its worker image or by its setup and "
                "requirements files)"
                for key in packaged
            ]
        )
    for key in packaged:
        out[key] = os.path.abspath(str(out[key]))
    if packaged:
        out.pop(_LEGACY_IMAGE, None)
    elif fnapi and image_tag and out.get(_LEGACY_IMAGE):
        out[_LEGACY_IMAGE] = tagged_image(str(out[_LEGACY_IMAGE]), image_tag)
    if out.get("runner") == DATAFLOW_RUNNER:
        for key, value in KLIO_DATAFLOW_DEFAULTS.items():
            if out.get(key) is None:
                out[key] = value
        disk = out.get("worker_disk_type")
        if disk in WORKER_DISK_TYPES:
            out["worker_disk_type"] = worker_disk_type_path(out.get("project"), out["region"], disk)
    return out


def tagged_image(image: str, tag: str) -> str:
    """``image`` with its tag (if any) replaced by ``tag``; a registry's port is kept."""
    return f"{untagged_image(image)}:{tag}"


def untagged_image(image: str) -> str:
    """``image`` without its tag or digest; a registry's port is kept."""
    name, _, last = image.rpartition("/")
    repository = last.split(":", 1)[0].split("@", 1)[0]
    return f"{name}/{repository}" if name else repository
