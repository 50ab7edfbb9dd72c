"""Klio's `klio image build` says what does its work here, and exits 2."""

from __future__ import annotations

from click.testing import CliRunner
from klio_runtime.cli import main


def test_klios_image_build_points_at_docker_build() -> None:
    result = CliRunner().invoke(main, ["image", "build", "--image-tag", "v1"])
    assert result.exit_code == 2
    assert "`klio image build` is not a command here: " in result.stderr
    assert "docker build -t IMAGE ." in result.stderr
