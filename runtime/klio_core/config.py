"""``klio_core.config``: Klio's import path for the job config; the classes are ours.

``KlioConfig(raw_config_data, raw_overrides=None, raw_templates=None)`` works as Klio users call it:
``raw_config_data`` is the parsed ``klio-job.yaml`` (a mapping) or its YAML text, templates are
``KEY=VALUE`` strings filling ``$KEY`` / ``${KEY}``, overrides are ``PATH=VALUE`` strings where an
event or data IO may be named as Klio names it (``job_config.events.inputs.file1.location``: the
second ``file`` input) or by index (``job_config.events.inputs[1].location``).
"""

from __future__ import annotations

import copy
import re
import string
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

_IO_NAME = re.compile(
    r"^(?P<section>(?:job_config\.)?(?:events|data)\.(?:inputs|outputs))"
    r"\.(?P<name>[a-z_]+?)(?P<index>\d+)(?P<rest>(?:\.|$).*)"
)


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


def _key_values(pairs: Iterable[str], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"{what} {pair!r}: expected KEY=VALUE"])
        found[key.strip()] = value.strip()
    return found


def _preprocess(
    raw: Mapping[str, Any] | str, templates: Iterable[str], overrides: Iterable[str]
) -> dict[str, Any]:
    values = _key_values(templates, "template")
    if isinstance(raw, str) or values:
        text = raw if isinstance(raw, str) else yaml.safe_dump(dict(raw))
        if values:
            try:
                text = string.Template(text).substitute(**values)
            except (KeyError, ValueError) as exc:
                raise ConfigError([f"template: no value for {exc}"]) from None
        data = yaml.safe_load(text)
    else:
        data = copy.deepcopy(dict(raw))
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): must be a mapping, got {type(data).__name__}"])
    parsed = _config.parse_overrides(
        f"{key}={value}" for key, value in _key_values(overrides, "override").items()
    )
    _config.apply_overrides(data, {_indexed_path(data, p): v for p, v in parsed.items()})
    return data


def _indexed_path(data: Mapping[str, Any], path: str) -> str:
    """Klio's named IO path (``job_config.events.inputs.file1.x``) → ours (``...inputs[1].x``)."""
    match = _IO_NAME.match(path)
    if not match:
        return path
    section = match["section"]
    if not section.startswith("job_config."):
        section = f"job_config.{section}"
    node: Any = data
    for key in section.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    entries = node if isinstance(node, list) else []
    wanted, nth = match["name"], int(match["index"])
    seen = -1
    for position, entry in enumerate(entries):
        if isinstance(entry, Mapping) and str(entry.get("type", "")).lower() == wanted:
            seen += 1
            if seen == nth:
                return f"{section}[{position}]{match['rest']}"
    return path


__all__ = [
    "ConfigError",
    "KlioConfig",
    "KlioJobConfig",
    "KlioPipelineConfig",
    "dump_config",
    "load_config",
    "parse_config",
]
