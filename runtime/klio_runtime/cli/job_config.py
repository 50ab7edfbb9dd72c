"""``klio job config show|get|set|unset``: read and edit a job's ``klio-job.yaml``, as Klio's."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from klio_runtime.cli.options import config_file_option, job_dir_option, refuse_config
from klio_runtime.config import (
    ConfigError,
    apply_overrides,
    config_path_of,
    config_value,
    dump_config,
    parse_config,
    parse_overrides,
    read_config_data,
    remove_config_key,
)

TOP_LEVEL_ORDER = ("version", "job_name", "pipeline_options", "job_config")
"""How Klio orders the sections it shows; any other top-level key follows."""


@click.group("config")
def config() -> None:
    """Show, get, set and unset the job's configuration values (its klio-job.yaml)."""


def _problems(data: dict[str, Any]) -> list[str]:
    """What makes a config mapping invalid here (nothing: valid)."""
    try:
        parse_config(data)
    except ConfigError as err:
        return list(err.errors)
    return []


def _effective(path: Path, keep_unset: bool = False) -> dict[str, Any]:
    """The validated config with our defaults filled in, in Klio's section order (with
    ``keep_unset``, the settings it leaves unset too, as None). A config this runtime cannot
    run (e.g. Klio's BigQuery IO) is shown as the file has it, with a warning."""
    data = read_config_data(path)
    try:
        dumped = dump_config(parse_config(data), keep_unset)
    except ConfigError as err:
        click.echo(
            f"warning: {path} is not valid here ({'; '.join(err.errors[:3])}): showing the file"
            " as it is, without defaults",
            err=True,
        )
        dumped = data
    ordered = {key: dumped[key] for key in TOP_LEVEL_ORDER if key in dumped}
    ordered.update((key, value) for key, value in dumped.items() if key not in ordered)
    return ordered


def _write(path: Path, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Write an edit unless it makes the config less valid: an edit that adds a problem leaves
    the file as it was; one to a config that was already invalid here (Klio IO this runtime
    does not run) is written if it adds none."""
    existing = _problems(before)
    added = [problem for problem in _problems(after) if problem not in existing]
    if added:
        raise ConfigError(added)
    path.write_text(
        yaml.safe_dump(after, sort_keys=False, default_flow_style=False, allow_unicode=True),
        encoding="utf-8",
    )


@config.command("show")
@job_dir_option
@config_file_option
def show(job_dir: Path, config_file: Path | None) -> None:
    """Print the job's effective configuration (defaults filled in) as YAML."""
    try:
        effective = _effective(config_path_of(job_dir, config_file))
    except ConfigError as err:
        refuse_config(err)
    yaml.safe_dump(effective, sys.stdout, sort_keys=False, default_flow_style=False)


@config.command("get")
@job_dir_option
@config_file_option
@click.argument("section_property", metavar="SECTION.PROPERTY")
def get(job_dir: Path, config_file: Path | None, section_property: str) -> None:
    """Print one value of the effective configuration as JSON, e.g. pipeline_options.streaming
    or job_config.events.inputs.file0.location (list items also as [0] or .0); null for a
    setting this runtime knows that the file leaves unset."""
    try:
        effective = _effective(config_path_of(job_dir, config_file), keep_unset=True)
        value = config_value(effective, section_property)
    except ConfigError as err:
        refuse_config(err)
    click.echo(json.dumps(value, indent=2, default=str))  # str: a YAML date, say


@config.command("set")
@job_dir_option
@config_file_option
@click.argument("target_to_value", nargs=-1, required=True, metavar="SECTION.PROPERTY=VALUE...")
def set_(job_dir: Path, config_file: Path | None, target_to_value: tuple[str, ...]) -> None:
    """Set values in klio-job.yaml: true/false, null, numbers and [a, b] get their types, other
    values stay text. An index one past a list's end appends. The edit must not make the config
    invalid. The file is rewritten: its comments are not kept (as with Klio's)."""
    path = config_path_of(job_dir, config_file)
    try:
        data = read_config_data(path)
        edited = copy.deepcopy(data)
        values = parse_overrides(target_to_value, "set", custom_as_text=False)
        apply_overrides(edited, values, "set")
        _write(path, data, edited)
    except ConfigError as err:
        refuse_config(err)


@config.command("unset")
@job_dir_option
@config_file_option
@click.argument("section_property", metavar="SECTION.PROPERTY")
def unset(job_dir: Path, config_file: Path | None, section_property: str) -> None:
    """Remove a value from klio-job.yaml (nothing to do if it is not set); the edit must not make
    the config invalid. The file is rewritten: its comments are not kept (as with Klio's)."""
    path = config_path_of(job_dir, config_file)
    try:
        data = read_config_data(path)
        edited = copy.deepcopy(data)
        if not remove_config_key(edited, section_property):
            click.echo(f"{section_property}: not set in {path}; nothing to unset", err=True)
            return
        _write(path, data, edited)
    except ConfigError as err:
        refuse_config(err)
