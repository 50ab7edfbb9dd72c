"""``klio_core.config``: Klio's import path for the job config; the classes are ours.

``KlioConfig(raw_config_data, raw_overrides=None, raw_templates=None)`` works as Klio users call it:
``raw_config_data`` is the parsed ``klio-job.yaml`` (a mapping) or its YAML text, templates are
``KEY=VALUE`` strings filling ``$KEY`` / ``${KEY}``, overrides are ``PATH=VALUE`` strings where an
event or data IO may be named as Klio names it (``job_config.events.inputs.file1.location``: the
second ``file`` input) or by index (``job_config.events.inputs[1].location``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import yaml
from klio_runtime import config as _config
from klio_runtime.config import (
    ConfigError,
    JobConfig,
    PipelineOptions,
    dump_config,
    load_config,
    parse_config,
)
from pydantic import ValidationError


class _Section(type):
    """Klio's section classes: ``KlioJobConfig(config_dict, job_name=None, version=None)`` builds
    ours from a raw mapping, as Klio's constructor does; ``isinstance`` holds for ours, and any
    other attribute is our class's."""

    _model: type[JobConfig] | type[PipelineOptions]

    def __call__(
        cls,
        config_dict: Mapping[str, Any] | None = None,
        job_name: str | None = None,
        version: int | None = None,
        **fields: Any,
    ) -> Any:
        try:
            section = cls._model.model_validate({**dict(config_dict or {}), **fields})
        except ValidationError as exc:
            raise ConfigError(_config.format_validation_errors(exc)) from None
        if isinstance(section, JobConfig):
            section._job_name = job_name or ""
            section._version = version or _config.SUPPORTED_VERSION
        elif job_name is not None and section.job_name is None:
            section.__dict__["job_name"] = job_name  # read-only, as KlioConfig sets it
        return section

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls._model)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls._model)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._model, name)


class KlioJobConfig(metaclass=_Section):
    """Klio's name for ``job_config`` (our :class:`klio_runtime.config.JobConfig`)."""

    _model = JobConfig


class KlioPipelineConfig(metaclass=_Section):
    """Klio's name for ``pipeline_options`` (our :class:`klio_runtime.config.PipelineOptions`)."""

    _model = PipelineOptions


class KlioConfig(_config.KlioConfig):
    """A whole ``klio-job.yaml``; also constructible from a raw mapping, as Klio's was."""

    def __init__(
        self,
        raw_config_data: Mapping[str, Any] | str | None = None,
        /,
        raw_overrides: Iterable[str] | None = None,
        raw_templates: Iterable[str] | None = None,
        config_skip_preprocessing: bool = False,
        **fields: Any,
    ) -> None:
        if raw_config_data is None:
            super().__init__(**fields)
            return
        if fields:
            raise TypeError(
                f"KlioConfig: give the config as one mapping or as fields, not both "
                f"(got fields {sorted(fields)})"
            )
        data = (
            dict(raw_config_data)
            if config_skip_preprocessing and isinstance(raw_config_data, Mapping)
            else _preprocess(raw_config_data, raw_templates or (), raw_overrides or ())
        )
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_config.format_validation_errors(exc)) from None

    def as_dict(self) -> dict[str, Any]:
        """The config as a plain mapping (Klio's ``as_dict``)."""
        return dump_config(self)

    def write_to_file(self, path_or_stream: str | os.PathLike[str] | IO[str]) -> None:
        """Write the config as YAML to a file path or a writable text stream (Klio's)."""
        text = yaml.safe_dump(self.as_dict(), default_flow_style=False, sort_keys=False)
        if isinstance(path_or_stream, str | os.PathLike):
            Path(path_or_stream).write_text(text, encoding="utf-8")
        else:
            path_or_stream.write(text)


def _preprocess(
    raw: Mapping[str, Any] | str, templates: Iterable[str], overrides: Iterable[str]
) -> dict[str, Any]:
    # Klio templates every config, given templates or not: a $KEY with no value is an error
    # and $$ is a $.
    text = raw if isinstance(raw, str) else yaml.safe_dump(dict(raw))
    text = _config.fill_templates(text, _config.parse_templates(templates), "config")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): must be a mapping, got {type(data).__name__}"])
    _config.apply_overrides(data, _config.parse_overrides(overrides))
    return data


__all__ = [
    "ConfigError",
    "KlioConfig",
    "KlioJobConfig",
    "KlioPipelineConfig",
    "dump_config",
    "load_config",
    "parse_config",
]
