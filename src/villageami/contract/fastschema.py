"""A fast validator for our own JSON Schemas: the schema is compiled once into Python closures.

It implements exactly the Draft 2020-12 keywords our schemas use (listed in ``schemas_source``) and raises
:class:`SchemaError` at compile time for any other keyword, so it can never silently skip a rule.
``jsonschema`` stays the reference: tests/contract check both agree on every valid and invalid case.

Errors are ``(pointer, message)`` pairs. Unlike jsonschema, which reports a missing or unexpected
property at the enclosing object, we point at the property itself (``/registers/0/unit``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from villageami.contract.errors import SchemaError

__all__ = ["CompiledSchema", "compile_schema", "render_pointer"]

# A path is a linked list of (parent, key) tuples built only as deep as the walk goes; the pointer text
# is rendered only when an error is reported, which keeps the accept path cheap.
Path = tuple[Any, ...] | None
Errors = list[tuple[Path, str]]
Check = Callable[[Any, Path, Errors], None]

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "format", "examples", "default", "deprecated"}
)


def render_pointer(path: Path) -> str:
    """RFC 6901 JSON pointer of a path."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(str(key).replace("~", "~0").replace("/", "~1"))
    return "".join("/" + p for p in reversed(parts))


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value (as jsonschema words it)."""
    t = type(value)
    if value is None:
        return "null"
    if t is bool:
        return "boolean"
    if t is int:
        return "integer"
    if t is float:
        return "number"
    if t is str:
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return t.__name__


def _is_type(value: Any, name: str) -> bool:
    # isinstance, so str/int subclasses (StrEnum members) count like jsonschema counts them; bool is never
    # an integer or number in JSON.
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list | tuple)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    raise SchemaError(f"unknown JSON type {name!r} in schema")


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers; 1 == 1.0."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Compiler:
    def __init__(self, root: Mapping[str, Any], pattern_names: Mapping[str, str]) -> None:
        self.root = root
        self.pattern_names = pattern_names
        self.defs: dict[str, Check] = {}
        self.compiling: set[str] = set()

    def ref(self, target: str) -> Check:
        prefix = "#/$defs/"
        if not target.startswith(prefix):
            raise SchemaError(f"only local '#/$defs/...' references are supported, got {target!r}")
        name = target[len(prefix) :]
        if name in self.defs:
            return self.defs[name]
        if name in self.compiling:  # recursive reference: bind late
            return lambda v, p, e: self.defs[name](v, p, e)
        self.compiling.add(name)
        try:
            schema = self.root["$defs"][name]
        except KeyError:
            raise SchemaError(f"dangling reference {target!r}") from None
        self.defs[name] = self.node(schema)
        self.compiling.discard(name)
        return self.defs[name]

    def node(self, schema: Any) -> Check:
        if schema is True:
            return _accept
        if schema is False:
            return _reject
        if not isinstance(schema, Mapping):
            raise SchemaError(f"a schema must be an object or boolean, got {_short(schema)}")
        checks: list[Check] = []
        unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
        if unknown:
            raise SchemaError(f"fast validator does not implement keyword(s) {sorted(unknown)}")
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        if "type" in schema:
            checks.append(_type_check(schema["type"]))
        if "enum" in schema:
            checks.append(_enum_check(schema["enum"]))
        if "const" in schema:
            checks.append(_const_check(schema["const"]))
        string_checks = [k for k in ("pattern", "minLength", "maxLength") if k in schema]
        if string_checks:
            checks.append(_string_check(schema, self.pattern_names))
        if "minimum" in schema or "maximum" in schema:
            checks.append(_number_check(schema.get("minimum"), schema.get("maximum")))
        if {"properties", "required", "additionalProperties"} & schema.keys():
            checks.append(self.object_check(schema))
        if {"items", "minItems", "maxItems", "uniqueItems"} & schema.keys():
            checks.append(self.array_check(schema))
        if "allOf" in schema:
            checks.extend(self.node(s) for s in schema["allOf"])
        if "anyOf" in schema:
            checks.append(self.any_of([self.node(s) for s in schema["anyOf"]]))
        if "if" in schema:
            checks.append(self.conditional(schema))
        elif "then" in schema or "else" in schema:
            pass  # without "if", then/else have no effect (2020-12 §10.2.2)
        if not checks:
            return _accept
        if len(checks) == 1:
            return checks[0]
        return _sequence(checks)

    def object_check(self, schema: Mapping[str, Any]) -> Check:
        props = {name: self.node(sub) for name, sub in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        additional_schema = schema.get("additionalProperties", True)
        forbid_extra = additional_schema is False
        additional = None if additional_schema in (True, False) else self.node(additional_schema)

        def check(value: Any, path: Path, errors: Errors) -> None:
            if not isinstance(value, dict):
                return
            for name in required:
                if name not in value:
                    errors.append(((path, name), f"required field {name!r} is missing"))
            for key, item in value.items():
                sub = props.get(key)
                if sub is not None:
                    sub(item, (path, key), errors)
                elif forbid_extra:
                    errors.append(((path, key), f"unexpected field {key!r}"))
                elif additional is not None:
                    additional(item, (path, key), errors)

        return check

    def array_check(self, schema: Mapping[str, Any]) -> Check:
        items = self.node(schema["items"]) if "items" in schema else None
        min_items = schema.get("minItems")
        max_items = schema.get("maxItems")
        unique = schema.get("uniqueItems", False)

        def check(value: Any, path: Path, errors: Errors) -> None:
            if not isinstance(value, list | tuple):
                return
            n = len(value)
            if min_items is not None and n < min_items:
                errors.append((path, f"needs at least {min_items} item(s), has {n}"))
            if max_items is not None and n > max_items:
                errors.append((path, f"allows at most {max_items} item(s), has {n}"))
            if unique:
                for i in range(1, n):
                    if any(_json_equal(value[i], value[j]) for j in range(i)):
                        errors.append(((path, i), f"duplicate item {_short(value[i])}"))
            if items is not None:
                for i, item in enumerate(value):
                    items(item, (path, i), errors)

        return check

    def any_of(self, branches: list[Check]) -> Check:
        def check(value: Any, path: Path, errors: Errors) -> None:
            outcomes: list[Errors] = []
            for branch in branches:
                found: Errors = []
                branch(value, path, found)
                if not found:
                    return
                outcomes.append(found)
            # Report the branch that got furthest (its errors are not just a type mismatch at this level).
            for found in outcomes:
                if not any(p is path and m.startswith("must be") for p, m in found):
                    errors.extend(found)
                    return
            kinds = [m[len("must be ") :].split(", got ")[0] for f in outcomes for p, m in f if p is path]
            if len(kinds) == len(outcomes):
                errors.append((path, f"must be {' or '.join(kinds)}, got {json_type(value)}"))
            else:
                errors.append((path, f"{_short(value)} matches none of the allowed forms"))

        return check

    def conditional(self, schema: Mapping[str, Any]) -> Check:
        condition = self.node(schema["if"])
        then = self.node(schema["then"]) if "then" in schema else None
        otherwise = self.node(schema["else"]) if "else" in schema else None

        def check(value: Any, path: Path, errors: Errors) -> None:
            probe: Errors = []
            condition(value, path, probe)
            branch = then if not probe else otherwise
            if branch is not None:
                branch(value, path, errors)

        return check


_KEYWORDS = frozenset(
    {
        "$ref",
        "$defs",
        "type",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "allOf",
        "anyOf",
        "if",
        "then",
        "else",
    }
)


def _accept(value: Any, path: Path, errors: Errors) -> None:
    return None


def _reject(value: Any, path: Path, errors: Errors) -> None:
    errors.append((path, "no value is allowed here"))


def _sequence(checks: list[Check]) -> Check:
    if len(checks) == 2:
        first, second = checks

        def check_two(value: Any, path: Path, errors: Errors) -> None:
            first(value, path, errors)
            second(value, path, errors)

        return check_two

    def check(value: Any, path: Path, errors: Errors) -> None:
        for c in checks:
            c(value, path, errors)

    return check


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list, tuple),
    "boolean": (bool,),
    "null": (type(None),),
}


def _type_check(spec: str | list[str]) -> Check:
    names = [spec] if isinstance(spec, str) else list(spec)
    for name in names:
        _is_type(None, name)  # validates the name at compile time
    wanted = " or ".join(names)
    # Exact Python types accepted without further thought (bool is not int here: JSON has no such overlap).
    accepted = frozenset(t for name in names for t in _PY_TYPES[name])

    def check(value: Any, path: Path, errors: Errors) -> None:
        if type(value) in accepted:
            return
        if not any(_is_type(value, n) for n in names):
            errors.append((path, f"must be {wanted}, got {json_type(value)}"))

    return check


def _enum_check(options: list[Any]) -> Check:
    listing = ", ".join(str(o) for o in options)
    if all(type(o) is str for o in options):
        allowed = frozenset(options)

        def check_str(value: Any, path: Path, errors: Errors) -> None:
            if not isinstance(value, str) or value not in allowed:
                errors.append((path, f"must be one of {listing}; got {_short(value)}"))

        return check_str

    def check(value: Any, path: Path, errors: Errors) -> None:
        if not any(_json_equal(value, o) for o in options):
            errors.append((path, f"must be one of {listing}; got {_short(value)}"))

    return check


def _const_check(expected: Any) -> Check:
    if type(expected) is str:

        def check_str(value: Any, path: Path, errors: Errors) -> None:
            if not isinstance(value, str) or value != expected:
                errors.append((path, f"must be {expected!r}; got {_short(value)}"))

        return check_str

    def check(value: Any, path: Path, errors: Errors) -> None:
        if not _json_equal(value, expected):
            errors.append((path, f"must be {expected!r}; got {_short(value)}"))

    return check


def _string_check(schema: Mapping[str, Any], pattern_names: Mapping[str, str]) -> Check:
    pattern = re.compile(schema["pattern"]).search if "pattern" in schema else None
    source = schema.get("pattern")
    expected = pattern_names.get(source, f"matching {source}") if source is not None else ""
    min_len = schema.get("minLength")
    max_len = schema.get("maxLength")

    def check(value: Any, path: Path, errors: Errors) -> None:
        if not isinstance(value, str):
            return
        if min_len is not None and len(value) < min_len:
            errors.append((path, f"must be at least {min_len} character(s) long"))
        if max_len is not None and len(value) > max_len:
            errors.append((path, f"must be at most {max_len} characters long, has {len(value)}"))
        if pattern is not None and pattern(value) is None:
            errors.append((path, f"{_short(value)} is not {expected}"))

    return check


def _number_check(minimum: float | None, maximum: float | None) -> Check:
    def check(value: Any, path: Path, errors: Errors) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if minimum is not None and value < minimum:
            errors.append((path, f"must be >= {minimum}, got {value}"))
        if maximum is not None and value > maximum:
            errors.append((path, f"must be <= {maximum}, got {value}"))

    return check


class CompiledSchema:
    """A compiled schema: ``errors(instance)`` returns ``[(pointer, message), ...]``, empty when valid."""

    def __init__(self, schema: Mapping[str, Any], pattern_names: Mapping[str, str] | None = None) -> None:
        """``pattern_names`` gives plain words for patterns ("a UUID") used in error messages."""
        self.schema = schema
        self._check = _Compiler(schema, pattern_names or {}).node(schema)

    def raw_errors(self, instance: Any) -> Errors:
        errors: Errors = []
        self._check(instance, None, errors)
        return errors

    def errors(self, instance: Any) -> list[tuple[str, str]]:
        return [(render_pointer(path), message) for path, message in self.raw_errors(instance)]

    def is_valid(self, instance: Any) -> bool:
        return not self.raw_errors(instance)


def compile_schema(
    schema: Mapping[str, Any], pattern_names: Mapping[str, str] | None = None
) -> CompiledSchema:
    return CompiledSchema(schema, pattern_names)
