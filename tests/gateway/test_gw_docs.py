"""docs/gateway.md stays true: its example is the shipped one and passes `gateway check`; every config field
and every metric is documented."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.gateway.config import json_schema
from villageami.gateway.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gateway.md"
EXAMPLE = ROOT / "examples" / "gateway.yaml"


def test_doc_example_is_the_shipped_example() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks == [EXAMPLE.read_text(encoding="utf-8")]


def test_shipped_example_passes_gateway_check(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.yaml"
    shutil.copy(EXAMPLE, config_file)
    broker = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["broker"]
    # The secrets it names are site files; stand-ins beside the copy let the check pass on them.
    for name in [broker["passwordFile"], *broker["tls"].values()]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("stand-in\n")
    result = CliRunner().invoke(build_app(), ["gateway", "check", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "6 meter(s), 3 serial bus(es)" in result.output


def test_shipped_example_names_every_config_field() -> None:
    """ "A full example": every field of the schema appears in it (so the doc's reference table does too)."""
    schema = json_schema()
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

    def missing(node: Any, props: dict[str, Any], where: str) -> list[str]:
        out: list[str] = []
        for name, spec in props.items():
            path = f"{where}.{name}" if where else name
            if not isinstance(node, dict) or name not in node:
                out.append(path)
                continue
            ref = (
                spec.get("$ref")
                or next((a["$ref"] for a in spec.get("anyOf", []) if "$ref" in a), None)
                or spec.get("items", {}).get("$ref")
            )
            if ref is None:
                continue
            target = schema["$defs"][ref.rsplit("/", 1)[1]]
            if "properties" not in target:
                continue
            children = node[name] if isinstance(node[name], list) else [node[name]]
            found = [missing(child, target["properties"], path) for child in children]
            # A list satisfies a field when any of its entries carries it.
            out += sorted(set.intersection(*(set(f) for f in found))) if found else []
        return out

    absent = set(missing(example, schema["properties"], ""))
    assert absent == {"broker.password"}, "password and passwordFile exclude each other; the doc says so"


def test_doc_reference_lists_every_field_and_metric() -> None:
    text = DOC.read_text(encoding="utf-8")
    schema = json_schema()
    names = set(schema["properties"])
    for definition in schema["$defs"].values():
        names |= set(definition.get("properties", {}))
    undocumented = sorted(n for n in names if f"`{n}`" not in text and f".{n}`" not in text)
    assert not undocumented, undocumented
    exposed = generate_latest(GatewayMetrics().registry).decode()
    families = set(re.findall(r"^# TYPE (\S+) ", exposed, flags=re.MULTILINE))
    documented = set(re.findall(r"^\| `(villageami_[a-z_]+)`", text, flags=re.MULTILINE))
    assert documented == {f for f in families if not f.endswith("_created")}
