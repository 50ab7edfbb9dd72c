"""The example job images: each Dockerfile builds FROM the runtime base image, copies only files
that exist (every Python module of the job among them) to where the base image runs jobs, and
keeps the base's worker entrypoint; each KlioJob example names an image the Makefile builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.docker.dockerfile import copy_sources, parse
from tests.examples.dag import EXAMPLES, JOB_DIRS, KLIOJOBS, REPO

BASE_IMAGE = "klio-runtime:0.1.0"  # the Makefile's `images` target tags the runtime image so
APP_DIR = "/usr/src/app/"  # the runtime image's WORKDIR and PYTHONPATH (docker/runtime.Dockerfile)
DOCKERFILES = sorted(EXAMPLES.glob("*/Dockerfile"))


def test_the_dag_jobs_have_dockerfiles() -> None:
    assert {p.parent.name for p in DOCKERFILES} >= set(JOB_DIRS)


def test_the_base_image_is_the_one_the_makefile_builds() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert f"-t {BASE_IMAGE} ." in makefile
    runtime = parse(REPO / "docker" / "runtime.Dockerfile")
    assert runtime.stages[-1].last("WORKDIR").value + "/" == APP_DIR  # type: ignore[union-attr]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_job_image_is_the_runtime_plus_the_job(path: Path) -> None:
    dockerfile = parse(path)
    assert len(dockerfile.stages) == 1
    stage = dockerfile.stages[0]
    assert dockerfile.resolve(stage.base) == BASE_IMAGE
    assert stage.last("ENTRYPOINT") is None and stage.last("CMD") is None, (
        "the operator runs the base image's `klio worker` command")
    copies = [i for i in stage.instructions if i.keyword == "COPY"]
    assert copies
    copied: set[str] = set()
    for ins in copies:
        assert ins.value.split()[-1] == APP_DIR, ins.value
        for source in copy_sources(ins):
            assert (path.parent / source).is_file(), f"{path}: COPY {source}: no such file"
            copied.add(source)
    modules = {p.name for p in path.parent.glob("*.py")}
    assert {"run.py", "klio-job.yaml"} <= copied
    assert modules <= copied, f"{path}: not copied: {sorted(modules - copied)}"


def test_each_kliojob_names_an_example_image() -> None:
    built = {f"klio-examples/{p.parent.name.replace('_', '-')}:0.1.0" for p in DOCKERFILES}
    for manifest in sorted(KLIOJOBS.glob("*.yaml")):
        image = yaml.safe_load(manifest.read_text())["spec"]["image"]
        assert image in built, f"{manifest.name}: {image} is not built by `make example-images`"


def test_each_job_config_names_its_image_so_manifest_makes_the_kliojob_examples() -> None:
    """`klio-operator manifest` of the DAG's job directories gives the KlioJob examples' images
    (the config's `worker_harness_container_image`) and parents (track_report's local run reads
    only its last parent's events, so only that one is found from its config)."""
    operator = str(Path(sys.executable).parent / "klio-operator")
    args = [arg for path in DOCKERFILES for arg in ("-j", str(path.parent))]
    done = subprocess.run(
        [operator, "manifest", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    made = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(done.stdout)}
    examples = [yaml.safe_load(p.read_text()) for p in sorted(KLIOJOBS.glob("*.yaml"))]
    assert {e["metadata"]["name"] for e in examples} == set(made)
    for example in examples:
        spec = made[example["metadata"]["name"]]
        assert spec["image"] == example["spec"]["image"]
        assert set(spec.get("parents") or []) <= set(example["spec"].get("parents") or [])
    assert made["spectrograms"]["parents"] == made["loudness"]["parents"] == ["track-ingest"]
