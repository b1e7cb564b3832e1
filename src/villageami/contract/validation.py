"""Validate northbound messages: JSON Schema (compiled fast path) plus the checks a schema cannot make.

Semantic checks: the unit and value type fit the VMRS key, bitfield extras are consistent, keys are
canonical (the deprecated alias 96.11.1 only warns), ids in the payload match the topic, timestamps
carry an offset, commands expire after they are issued, and v0.1 envelopes (no msgId/seq) warn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

from villageami.contract.envelope import (
    GATEWAY_COMMAND_TYPES,
    METER_COMMAND_TYPES,
    SCHEMA_VERSION,
    MessageKind,
)
from villageami.contract.errors import ContractError, TopicError
from villageami.contract.fastschema import CompiledSchema, json_type
from villageami.contract.schemas_source import PATTERN_NAMES
from villageami.contract.topics import DEFAULT_ROOT, Topic, parse_topic
from villageami.contract.vmrs import (
    RFC3339,
    VMRS,
    ValueType,
    deprecated_alias,
    lookup_key,
    unit_fits,
    value_fits,
)

__all__ = [
    "Problem",
    "UnknownKindError",
    "detect_kind",
    "is_valid",
    "load_schema",
    "schema_validator",
    "validate_message",
]

Severity = Literal["error", "warning"]
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TS_FIELDS = ("ts", "publishedAt", "expiresAt", "bootTs")


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: where (RFC 6901 pointer into the message), what, and how bad."""

    pointer: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.severity}: {self.message}"


class UnknownKindError(ContractError):
    """The message kind could not be told from its fields."""


def is_valid(problems: Iterable[Problem]) -> bool:
    """True when no problem is an error (warnings are allowed)."""
    return all(p.severity != "error" for p in problems)


@cache
def load_schema(kind: MessageKind | str) -> Mapping[str, Any]:
    """The shipped JSON Schema of a message kind (package data ``data/schemas/{kind}.schema.json``)."""
    name = f"data/schemas/{MessageKind(kind).value}.schema.json"
    text = resources.files("villageami.contract").joinpath(name).read_text(encoding="utf-8")
    schema: Mapping[str, Any] = json.loads(text)
    return schema


@cache
def schema_validator(kind: MessageKind | str) -> CompiledSchema:
    """The compiled fast validator of a message kind (built once)."""
    return CompiledSchema(load_schema(MessageKind(kind)), PATTERN_NAMES)


def detect_kind(message: Mapping[str, Any]) -> MessageKind:
    """Tell the kind from the fields present; raises :class:`UnknownKindError` when nothing fits."""
    if not isinstance(message, Mapping):
        raise UnknownKindError(f"a message must be a JSON object, got {type(message).__name__}")
    if "event" in message:
        return MessageKind.EVENT
    if "commandId" in message:
        if "status" in message:
            return MessageKind.COMMAND_RESULT
        return MessageKind.COMMAND
    if "meters" in message:
        return MessageKind.INVENTORY
    if "state" in message and "registers" not in message:
        return MessageKind.STATUS
    if "registers" in message or "meterSerial" in message:
        return MessageKind.TELEMETRY
    raise UnknownKindError(
        "cannot tell the message kind: expected 'registers' (telemetry), 'event', 'commandId', "
        "'state' (status) or 'meters' (inventory); pass the kind explicitly"
    )


def validate_message(
    message: Mapping[str, Any] | Any,
    kind: MessageKind | str = "auto",
    topic: str | Topic | None = None,
    *,
    root: str = DEFAULT_ROOT,
) -> list[Problem]:
    """Every problem of one message, errors and warnings; empty when clean. Never raises on bad input."""
    problems: list[Problem] = []
    parsed_topic: Topic | None = None
    if topic is not None:
        try:
            parsed_topic = topic if isinstance(topic, Topic) else parse_topic(topic, root=root)
        except TopicError as err:
            problems.append(Problem("", str(err)))
    if not isinstance(message, Mapping):
        problems.append(Problem("", f"a message must be a JSON object, got {json_type(message)}"))
        return problems
    if not isinstance(message, dict):
        message = dict(message)

    resolved: MessageKind
    if kind == "auto":
        if parsed_topic is not None:
            resolved = parsed_topic.kind
        else:
            try:
                resolved = detect_kind(message)
            except UnknownKindError as err:
                problems.append(Problem("", str(err)))
                return problems
    else:
        try:
            resolved = MessageKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in MessageKind)
            problems.append(Problem("", f"unknown message kind {kind!r}; use one of auto, {known}"))
            return problems
        if parsed_topic is not None and parsed_topic.kind is not resolved:
            problems.append(
                Problem("", f"topic carries {parsed_topic.kind} messages, but the kind given is {resolved}")
            )

    problems.extend(Problem(p, m) for p, m in schema_validator(resolved).errors(message))
    _semantic(message, resolved, parsed_topic, problems)
    return problems


# --------------------------------------------------------------------------- semantic checks


def _semantic(
    message: dict[str, Any], kind: MessageKind, topic: Topic | None, problems: list[Problem]
) -> None:
    _check_version(message, kind, problems)
    for field in ("feederId", "gatewayId", "meterSerial"):
        value = message.get(field)
        if isinstance(value, str) and _ID.fullmatch(value) is None and not problems_at(problems, "/" + field):
            problems.append(Problem("/" + field, f"{value!r} must be 1-64 characters of A-Z a-z 0-9 . _ -"))
    for field in _TS_FIELDS:
        _check_ts(message.get(field), "/" + field, problems)
    registers = message.get("registers")
    if isinstance(registers, list):
        _check_registers(registers, problems)
    if topic is not None:
        _check_topic(message, kind, topic, problems)
    if kind is MessageKind.COMMAND:
        _check_command(message, topic, problems)
    elif kind is MessageKind.INVENTORY:
        _check_inventory(message, problems)


def problems_at(problems: list[Problem], pointer: str) -> bool:
    return any(p.pointer == pointer for p in problems)


def _check_version(message: dict[str, Any], kind: MessageKind, problems: list[Problem]) -> None:
    version = message.get("schemaVersion")
    if version is None:
        problems.append(
            Problem("/schemaVersion", "no schemaVersion: read as the upstream 0.1 draft", "warning")
        )
        version = "0.1"
    if not isinstance(version, str):
        return
    if version == "0.1" and kind is MessageKind.TELEMETRY:
        missing = [f for f in ("msgId", "seq") if f not in message]
        if missing:
            problems.append(
                Problem(
                    "/" + missing[0],
                    f"deprecated v0.1 envelope without {' and '.join(missing)}: duplicates and gaps cannot "
                    f"be detected (G7); producers should send schemaVersion {SCHEMA_VERSION} "
                    "with msgId and seq",
                    "warning",
                )
            )
    try:
        minor = int(version.split(".")[1]) if version.startswith("0.") else None
    except (IndexError, ValueError):
        minor = None
    if minor is not None and minor > int(SCHEMA_VERSION.split(".")[1]):
        problems.append(
            Problem(
                "/schemaVersion",
                f"schemaVersion {version} is newer than this validator ({SCHEMA_VERSION})",
                "warning",
            )
        )


def _check_ts(value: Any, pointer: str, problems: list[Problem]) -> None:
    # The schema pattern already requires an offset; fullmatch also rejects a trailing newline, which a
    # JSON Schema "$" lets through.
    if isinstance(value, str) and RFC3339.fullmatch(value) is None and not problems_at(problems, pointer):
        problems.append(Problem(pointer, f"{value!r} is not an RFC 3339 date-time with offset (Z or ±hh:mm)"))


def _check_registers(registers: list[Any], problems: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for index, entry in enumerate(registers):
        if not isinstance(entry, dict):
            continue
        base = f"/registers/{index}"
        obis = entry.get("obis")
        if not isinstance(obis, str):
            continue
        _check_ts(entry.get("readAt"), base + "/readAt", problems)
        try:
            key = lookup_key(obis)
        except ContractError:
            key = None  # the schema pattern already reported it
        if key is None:
            if not problems_at(problems, base + "/obis"):
                problems.append(
                    Problem(
                        base + "/obis", f"{obis!r} is not a VMRS register; consumers may ignore it", "warning"
                    )
                )
            continue
        if key != obis:
            if deprecated_alias(obis) == key:
                problems.append(
                    Problem(base + "/obis", f"{obis!r} is a deprecated alias: use {key!r} (G10)", "warning")
                )
            else:
                problems.append(
                    Problem(base + "/obis", f"{obis!r} must be written as the VMRS key {key!r} (G10)")
                )
        if key in seen:
            problems.append(
                Problem(base + "/obis", f"register {key} appears twice (first at /registers/{seen[key]})")
            )
        else:
            seen[key] = index
        register = VMRS[key]
        unit = entry.get("unit")
        if isinstance(unit, str) and not unit_fits(register, unit):
            allowed = " or ".join(register.units) + (
                " or an ISO 4217 code" if register.currency_allowed else ""
            )
            problems.append(Problem(base + "/unit", f"unit {unit!r} does not fit {key}: use {allowed}"))
        if "value" in entry:
            reason = value_fits(register, entry["value"])
            if reason is not None and not problems_at(problems, base + "/value"):
                problems.append(Problem(base + "/value", reason))
        _check_bitfield(entry, key, register.value_type, base, problems)


def _check_bitfield(
    entry: dict[str, Any], key: str, value_type: ValueType, base: str, problems: list[Problem]
) -> None:
    extras = [f for f in ("raw", "flags", "unmappedBits") if f in entry]
    if value_type is not ValueType.BITFIELD:
        for field in extras:
            problems.append(
                Problem(f"{base}/{field}", f"{field} belongs to bitfield registers only, not {key}")
            )
        return
    value = entry.get("value")
    if type(value) is not int or value < 0:
        return
    raw = entry.get("raw")
    if isinstance(raw, str) and raw.startswith("0x"):
        try:
            if int(raw, 16) != value:
                problems.append(Problem(base + "/raw", f"raw {raw} is not the value {value} (0x{value:X})"))
        except ValueError:
            pass
    unmapped = entry.get("unmappedBits")
    if type(unmapped) is int and unmapped & ~value:
        problems.append(
            Problem(
                base + "/unmappedBits", f"unmappedBits 0x{unmapped:X} has bits not set in value 0x{value:X}"
            )
        )


def _check_topic(message: dict[str, Any], kind: MessageKind, topic: Topic, problems: list[Problem]) -> None:
    expected = {"feederId": topic.feeder_id, "gatewayId": topic.gateway_id}
    if topic.meter_serial is not None:
        expected["meterSerial"] = topic.meter_serial
    for field, wanted in expected.items():
        if message.get(field) is None:
            continue  # a missing id is a schema error (commands may omit ids); null serial: below
        if message[field] != wanted:
            problems.append(
                Problem("/" + field, f"{field} {message[field]!r} does not match the topic's {wanted!r}")
            )
    if kind is MessageKind.COMMAND_RESULT:
        serial = message.get("meterSerial")
        if topic.meter_serial is None and serial is not None:
            problems.append(Problem("/meterSerial", "a gateway-level result carries meterSerial null"))
        if topic.meter_serial is not None and "meterSerial" in message and serial is None:
            problems.append(
                Problem("/meterSerial", f"a meter result needs meterSerial {topic.meter_serial!r}")
            )


def _parse_dt(value: Any) -> datetime | None:
    if not isinstance(value, str) or RFC3339.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None


def _check_command(message: dict[str, Any], topic: Topic | None, problems: list[Problem]) -> None:
    issued, expires = _parse_dt(message.get("ts")), _parse_dt(message.get("expiresAt"))
    if issued is not None and expires is not None and expires <= issued:
        problems.append(Problem("/expiresAt", "expiresAt must be later than ts (G20)"))
    command_type = message.get("type")
    if topic is not None and isinstance(command_type, str):
        if topic.meter_serial is None and command_type in METER_COMMAND_TYPES:
            problems.append(Problem("/type", f"{command_type} is a meter command: send it on a meter topic"))
        if topic.meter_serial is not None and command_type in GATEWAY_COMMAND_TYPES:
            problems.append(
                Problem("/type", f"{command_type} is a gateway command: send it on the gateway topic")
            )
    params = message.get("params")
    if command_type == "set_credit_display" and isinstance(params, dict):
        unit = params.get("unit")
        if isinstance(unit, str) and not unit_fits(VMRS["96.8.0"], unit):
            problems.append(Problem("/params/unit", f"credit unit {unit!r} must be kWh or an ISO 4217 code"))
    if command_type == "read_now" and isinstance(params, dict) and isinstance(params.get("registers"), list):
        for index, key in enumerate(params["registers"]):
            if isinstance(key, str) and key not in VMRS:
                problems.append(Problem(f"/params/registers/{index}", f"{key!r} is not a VMRS key"))


def _check_inventory(message: dict[str, Any], problems: list[Problem]) -> None:
    meters = message.get("meters")
    if not isinstance(meters, list):
        return
    serials: dict[str, int] = {}
    for index, meter in enumerate(meters):
        if not isinstance(meter, dict):
            continue
        serial = meter.get("meterSerial")
        if isinstance(serial, str):
            if serial in serials:
                problems.append(
                    Problem(
                        f"/meters/{index}/meterSerial",
                        f"meter {serial!r} is listed twice (first at /meters/{serials[serial]})",
                    )
                )
            serials.setdefault(serial, index)
        keys = meter.get("registers")
        if isinstance(keys, list):
            for k_index, key in enumerate(keys):
                if isinstance(key, str) and key not in VMRS:
                    problems.append(
                        Problem(
                            f"/meters/{index}/registers/{k_index}",
                            f"{key!r} is not a VMRS key",
                            "warning",
                        )
                    )
