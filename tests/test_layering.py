"""Architecture rules: which layer may import which, and licence hygiene of runtime imports."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "villageami"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# Layer -> villageami layers it may import. Data flows meter -> driver -> normalise -> envelope
# -> outbox -> MQTT -> ingest; each layer talks only to its neighbours; nothing below hes imports it.
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "dlms": set(),
    "meters": {"contract", "dlms"},
    "sim": {"contract", "dlms", "meters"},
    "fieldcheck": {"contract", "meters"},
    "gateway": {"contract", "meters"},
    "hes": {"contract"},
}
SHARED = {"errors", "__init__"}  # importable by every layer
FORBIDDEN_PACKAGES = {"gurux_dlms", "dlms_cosem"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_source_tree_exists() -> None:
    assert len(_source_files()) > 5


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_layer_imports(path: Path) -> None:
    rel = path.relative_to(SRC)
    layer = rel.parts[0] if len(rel.parts) > 1 else None
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_PACKAGES, f"{rel} imports {name}: GPL/BSL DLMS stacks are test-only"
        if layer is None or not name.startswith("villageami."):
            continue
        target = name.split(".")[1]
        if target in SHARED or target == layer:
            continue
        assert target in ALLOWED[layer], f"{rel} (layer {layer}) must not import {name}"


def test_runtime_dependencies_are_permissive() -> None:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    lowered = " ".join(deps).lower()
    assert "gurux" not in lowered
    assert "dlms-cosem" not in lowered and "dlms_cosem" not in lowered
