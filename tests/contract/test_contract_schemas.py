"""JSON Schemas: shipped copies, published copies, and the fast validator against jsonschema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from contract_cases import INVALID, VALID, upstream_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from villageami.contract import schemas_source
from villageami.contract.errors import SchemaError, VillageAmiError
from villageami.contract.fastschema import compile_schema, render_pointer
from villageami.contract.validation import load_schema, schema_validator

REPO = Path(__file__).resolve().parents[2]
PACKAGE_SCHEMAS = REPO / "src" / "villageami" / "contract" / "data" / "schemas"
DOCS_SCHEMAS = REPO / "docs" / "schemas"
KINDS = sorted(schemas_source.SCHEMA_BUILDERS)


def test_every_kind_has_a_schema_file() -> None:
    assert sorted(p.name for p in PACKAGE_SCHEMAS.glob("*.schema.json")) == sorted(
        f"{k}.schema.json" for k in KINDS
    )


@pytest.mark.parametrize("kind", KINDS)
def test_published_copy_is_identical(kind: str) -> None:
    name = f"{kind}.schema.json"
    assert (DOCS_SCHEMAS / name).read_bytes() == (PACKAGE_SCHEMAS / name).read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_schema_is_generated_from_source(kind: str) -> None:
    shipped = (PACKAGE_SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert shipped == schemas_source.render(schemas_source.SCHEMA_BUILDERS[kind]()), (
        "regenerate: python -m villageami.contract.schemas_source docs/schemas"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    schema = load_schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _reference_pointers(kind: str, message: Any) -> set[str]:
    """jsonschema's error locations, with missing/unexpected properties pointed at like ours."""
    validator = jsonschema.Draft202012Validator(load_schema(kind))
    pointers: set[str] = set()

    def escape(part: object) -> str:
        return "/" + str(part).replace("~", "~0").replace("/", "~1")

    for error in validator.iter_errors(message):
        base = "".join(escape(p) for p in error.absolute_path)
        if error.validator == "required":
            pointers.update(base + escape(n) for n in error.validator_value if n not in error.instance)
        elif error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            pointers.update(base + escape(n) for n in error.instance if n not in known)
        else:
            pointers.add(base)
    return pointers


def _agree(kind: str, message: Any) -> None:
    ours = {pointer for pointer, _ in schema_validator(kind).errors(message)}
    reference = _reference_pointers(kind, message)
    assert bool(ours) == bool(reference), f"ours {ours} vs jsonschema {reference}"

    def covered(a: str, others: set[str]) -> bool:
        return any(a == b or a.startswith(b + "/") or b.startswith(a + "/") for b in others)

    assert all(covered(p, reference) for p in ours), f"ours {ours} vs jsonschema {reference}"
    assert all(covered(p, ours) for p in reference), f"ours {ours} vs jsonschema {reference}"


@pytest.mark.parametrize("name", sorted(VALID))
def test_agree_on_valid(name: str) -> None:
    kind, message = VALID[name]
    _agree(kind, message)


def test_agree_on_upstream_example() -> None:
    _agree("telemetry", upstream_example())


@pytest.mark.parametrize("case", [c for c in INVALID if c.kind != "auto"], ids=lambda c: c.name)
def test_agree_on_invalid(case: Any) -> None:
    _agree(case.kind, case.message)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
interesting_text = st.sampled_from(
    [
        "",
        "0.1",
        "0.2",
        "1.8.0",
        "good",
        "comms_lost",
        "2026-06-22T14:30:00Z",
        "a/b",
        "online",
        "offline",
        "set_mode",
        "disconnect",
        "auto",
        "0x1F",
        "cover_open",
        "kWh",
        "3f1c2b7a-8e4d-4f6a-9b1c-5d2e7f8a9b0c",
    ]
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(VALID)),
    data=st.data(),
    replacement=json_values | interesting_text,
    delete=st.booleans(),
)
def test_agree_on_random_mutations(name: str, data: st.DataObject, replacement: Any, delete: bool) -> None:
    kind, original = VALID[name]
    message = copy.deepcopy(original)
    path = data.draw(st.sampled_from(_paths(message)[1:]))
    parent: Any = message
    for part in path[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    _agree(kind, message)


def test_compiler_refuses_unknown_keywords() -> None:
    with pytest.raises(SchemaError, match="patternProperties") as info:
        compile_schema({"type": "object", "patternProperties": {"^x": {}}})
    assert isinstance(info.value, VillageAmiError)


def test_compiler_refuses_remote_refs() -> None:
    with pytest.raises(SchemaError, match=r"other\.json"):
        compile_schema({"$ref": "other.json#/x"})


def test_pointer_escaping() -> None:
    assert render_pointer(((None, "a/b"), "c~d")) == "/a~1b/c~0d"
    assert render_pointer(None) == ""


def test_json_equality_rules_for_enum_and_const() -> None:
    # JSON Schema: true is not 1, and 1.0 equals 1.
    validator = compile_schema({"enum": [1, 3]})
    assert validator.is_valid(1.0) and not validator.is_valid(True)
    const = compile_schema({"const": False})
    assert const.is_valid(False) and not const.is_valid(0)


def test_integer_type_accepts_whole_floats_like_jsonschema() -> None:
    schema = {"type": "integer"}
    for value in (1, 1.0, 1.5, True, "1"):
        assert compile_schema(schema).is_valid(value) == jsonschema.Draft202012Validator(schema).is_valid(
            value
        )


def test_schema_files_parse_as_json() -> None:
    for path in PACKAGE_SCHEMAS.glob("*.json"):
        assert json.loads(path.read_text(encoding="utf-8"))["$id"].endswith(path.name)


def _patterns(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
        return found.union(*(_patterns(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_patterns(v) for v in node))
    return set()


def test_every_pattern_has_plain_words_for_errors() -> None:
    used = set().union(*(_patterns(load_schema(kind)) for kind in KINDS))
    assert used <= set(schemas_source.PATTERN_NAMES), used - set(schemas_source.PATTERN_NAMES)
