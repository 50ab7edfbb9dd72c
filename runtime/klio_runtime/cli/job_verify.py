"""``klio job verify``: check a job directory without running it.

Checks the ``klio-job.yaml`` (every error, by path), that ``run.py`` defines ``run`` and that the
modules it imports at its top level can be found (beside it, or installed); the module is parsed,
never imported, so verifying runs none of the job's code. Then, as Klio's, that the job's Pub/Sub
topics and subscriptions and GCS buckets exist (``--create-resources`` makes the missing ones);
where they cannot be looked for (no credentials, no emulator) it says so and goes on.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from klio_runtime.cli.options import (
    EXIT_FAILED,
    EXIT_INVALID,
    config_file_option,
    credentials_hint,
    job_dir_option,
    override_option,
    template_option,
)
from klio_runtime.config import (
    RUN_FUNCTION_NAMES,
    ConfigError,
    KlioConfig,
    config_path_of,
    entries_not_run_here,
    load_config,
    parse_overrides,
    parse_templates,
    version_1_layout_warnings,
)

RUN_FILE_NAME = "run.py"


def check_run_module(path: Path) -> list[str]:
    """Problems with the job's run module: missing, unparsable, or no usable ``run``."""
    name = path.name
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [f"{name}: no such file in {path.parent} (it must define run(pcoll, config))"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{name}: cannot read: {exc}"]
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return [f"{name}: line {exc.lineno}: {exc.msg}"]
    return _missing_imports(path, tree) + _check_run_function(name, tree)


def _missing_imports(path: Path, tree: ast.Module) -> list[str]:
    """The top-level imports of the module that cannot be found: beside it (the job's own
    modules), beside its directory (the job's package, as ``from my_job import transforms``:
    ``klio job run`` puts both directories on the path) or installed. Only found, never
    imported (a package's own code does not run)."""
    problems = []
    job_dir = path.parent.resolve()
    importable_from = (job_dir, job_dir.parent)
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for module in names:
            top = module.partition(".")[0]
            beside = any(
                (where / f"{top}.py").exists() or (where / top).is_dir()
                for where in importable_from
            )
            if not beside and importlib.util.find_spec(top) is None:
                problems.append(
                    f"{path.name}: line {node.lineno}: no module named {top!r} (not beside "
                    "it, nor installed: is it in job-requirements.txt?)"
                )
    return problems


def _check_run_function(name: str, tree: ast.Module) -> list[str]:
    for function in RUN_FUNCTION_NAMES:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == function:
                return _check_run_signature(name, node)
            if isinstance(node, ast.AsyncFunctionDef) and node.name == function:
                return [
                    f"{name}: line {node.lineno}: {function} must be a plain function, not async"
                ]
            if _binds(node, function):
                return []  # assigned or imported: the signature cannot be checked without importing
    return [f"{name}: defines no top-level function run(pcoll, config)"]


def _binds(node: ast.stmt, function: str) -> bool:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((alias.asname or alias.name) == function for alias in node.names)
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == function for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == function
    return False


def _check_run_signature(name: str, node: ast.FunctionDef) -> list[str]:
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required_keyword_only = [
        arg.arg
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
        if default is None
    ]
    if (len(positional) < 2 and args.vararg is None) or required_keyword_only:
        return [
            f"{name}: line {node.lineno}: {node.name} must accept two arguments, (pcoll, config)"
        ]
    if len(positional) - len(args.defaults) > 2:
        return [
            f"{name}: line {node.lineno}: {node.name} must need only two arguments, (pcoll, config)"
        ]
    return []


def verify_job_dir(
    job_dir: Path,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    templates: Mapping[str, str] | None = None,
) -> tuple[KlioConfig | None, list[str]]:
    """Check a job directory; returns the parsed config (if valid) and every problem found."""
    config_path = config_path_of(job_dir, config_file)
    errors: list[str] = []
    config = None
    try:
        config = load_config(config_path, overrides, templates)
    except ConfigError as exc:
        errors.extend(
            line if line.startswith(str(config_path)) else f"{config_path.name}: {line}"
            for line in exc.errors
        )
    errors.extend(check_run_module(job_dir / RUN_FILE_NAME))
    return config, errors


def look_for_resources(config: KlioConfig) -> list[str]:
    """The job's resources that do not exist, as problems; a warning when they cannot be looked
    for (verifying a config needs no cloud)."""
    from klio_runtime.io.gcs import ensure_emulator_credentials
    from klio_runtime.io.resources import (
        ResourcesUnreachable,
        job_resources,
        missing_resources,
    )

    try:
        resources = job_resources(config)
        if not resources:
            return []
        ensure_emulator_credentials()
        missing = missing_resources(resources)
    except ValueError as exc:
        return [str(exc)]
    except ResourcesUnreachable as exc:
        click.echo(
            f"warning: the job's topics, subscriptions and buckets were not checked: {exc}",
            err=True,
        )
        hint = credentials_hint(exc).strip()
        if hint:
            click.echo(hint, err=True)
        return []
    return [
        f"{res.kind} {res.name} does not exist (--create-resources makes it)" for res in missing
    ]


def make_missing_resources(config: KlioConfig) -> list[str]:
    """Make the job's missing resources, saying what each was; returns the problems."""
    from klio_runtime.io.resources import ensure_resources, job_resources

    try:
        outcomes = ensure_resources(job_resources(config))
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for resource, outcome in outcomes:
        if outcome == "no topic":
            problems.append(f"subscription {resource.name}: its topic is missing or not named")
        else:
            click.echo(f"{outcome}: {resource.kind} {resource.name}")
    return problems


@click.command()
@job_dir_option
@config_file_option
@override_option
@template_option
@click.option(
    "--create-resources",
    is_flag=True,
    help="Make the job's missing Pub/Sub topics and subscriptions and GCS buckets, rather than "
    "report them (as Klio's; honours PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST).",
)
def verify(
    job_dir: Path,
    config_file: Path | None,
    overrides: tuple[str, ...],
    templates: tuple[str, ...],
    create_resources: bool,
) -> None:
    """Check the job's config and run.py, and that its topics, subscriptions and buckets exist;
    print every problem. Exit 2 for a config or run.py problem, 1 for a missing resource."""
    try:
        parsed = parse_overrides(overrides), parse_templates(templates)
    except ConfigError as exc:
        config, errors = None, exc.errors
    else:
        config, errors = verify_job_dir(job_dir, config_file, *parsed)
    code = EXIT_INVALID
    if config is not None and not errors:
        errors = make_missing_resources(config) if create_resources else look_for_resources(config)
        code = EXIT_FAILED
    if errors:
        for line in errors:
            click.echo(f"error: {line}", err=True)
        click.echo(f"{len(errors)} problem(s) in {job_dir}", err=True)
        raise SystemExit(code)
    assert config is not None
    for line in entries_not_run_here(config):  # valid as Klio's, yet `klio job run` refuses
        click.echo(f"warning: {line}", err=True)
    for line in version_1_layout_warnings(config):
        click.echo(f"warning: {line}", err=True)
    click.echo(f"OK: job {config.job_name} in {job_dir} is valid")
