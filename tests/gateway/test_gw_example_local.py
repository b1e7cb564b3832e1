"""examples/gateway-local.yaml (the config the README runs) must pass `villageami gateway check`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from villageami.cli import build_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway-local.yaml"


def test_local_example_passes_gateway_check() -> None:
    result = CliRunner().invoke(build_app(), ["gateway", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "3 meter(s)" in result.output
