"""``klio_core.config``: Klio's import path for the job config; the classes are ours.

``KlioConfig(raw_config_data, raw_overrides=None, raw_templates=None)`` works as Klio users call it:
``raw_config_data`` is the parsed ``klio-job.yaml`` (a mapping) or its YAML text, templates are
``KEY=VALUE`` strings filling ``$KEY`` / ``${KEY}``, overrides are ``PATH=VALUE`` strings where an
event or data IO may be named as Klio names it (``job_config.events.inputs.file1.location``: the
second ``file`` input) or by index (``job_config.events.inputs[1].location``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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

# Klio's names for the two sections.
KlioJobConfig = JobConfig
KlioPipelineConfig = PipelineOptions


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
