"""Klio's Dataflow/GKE commands say what does their work here, and exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from klio_runtime.cli import main


@pytest.mark.parametrize(
    ("args", "pointer"),
    [
        (["job", "deploy", "--image-tag", "v1"], "klio-operator manifest -j ."),
        (["job", "stop", "-j", "x"], "spec.suspend: true"),
        (["job", "delete", "--force"], "kubectl delete kliojob NAME"),
        (["image", "build", "--image-tag", "v1"], "docker build -t IMAGE ."),
    ],
)
def test_klios_deploy_stop_delete_and_image_build_point_elsewhere(
    args: list[str], pointer: str
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert f"`klio {' '.join(args[:2])}` is not a command here: " in result.stderr
    assert pointer in result.stderr
