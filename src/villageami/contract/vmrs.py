"""The Village Minimum Register Set (VMRS) catalogue, loaded from package data ``data/vmrs.json``.

The catalogue holds the 12 registers of upstream vmrs-registers.json (0.1-draft) plus the optional L2/L3
voltages 52.7.0 and 72.7.0, each with its provenance and villageami's changes (G10-G13, G26).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Any

from villageami.contract.errors import ObisError, UnknownRegisterError
from villageami.contract.obis import Obis, parse_obis

__all__ = [
    "CLOCK_KEY",
    "CREDIT_KEY",
    "DISCONNECT_KEY",
    "SERIAL_KEY",
    "TAMPER_KEY",
    "VMRS",
    "Alias",
    "IntervalClass",
    "Requirement",
    "Tier",
    "ValueType",
    "VmrsRegister",
    "canonical_key",
    "deprecated_alias",
    "is_currency_code",
    "lookup_key",
    "unit_fits",
    "value_fits",
]

DISCONNECT_KEY = "0.0.96.3.10.255"
TAMPER_KEY = "96.5.0"
CREDIT_KEY = "96.8.0"
CLOCK_KEY = "0.0.0"
SERIAL_KEY = "0.0.96.1.1.255"
ENERGY_IMPORT_KEY = "1.8.0"
ENERGY_EXPORT_KEY = "2.8.0"
POWER_KEY = "1.7.0"
VOLTAGE_L1_KEY = "32.7.0"
FREQUENCY_KEY = "14.7.0"

_CURRENCY = re.compile(r"[A-Z]{3}")
# RFC 3339 date-time with a mandatory offset (Z or ±hh:mm); fractional seconds optional.
RFC3339 = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)


class Tier(StrEnum):
    """VMRS certainty tier."""

    A = "A"  # standard OBIS code (IEC 62056-6-1)
    B = "B"  # common COSEM/AMI practice, vendor ICD needed
    C = "C"  # ISV working proposal


class Requirement(StrEnum):
    """Whether a meter must publish the register (G26: one enum instead of bool-or-string)."""

    TRUE = "true"
    FALSE = "false"
    IF_PREPAID = "if-prepaid"
    IF_NET_METERED = "if-net-metered"


class IntervalClass(StrEnum):
    BILLING = "billing"
    INSTANTANEOUS = "instantaneous"
    EVENT = "event"
    SYNC = "sync"
    STATIC = "static"


class ValueType(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    DATETIME = "datetime"
    TEXT = "text"
    ENUM = "enum"
    BITFIELD = "bitfield"


@dataclass(frozen=True, slots=True)
class Alias:
    key: str
    deprecated: bool
    note: str


@dataclass(frozen=True, slots=True)
class VmrsRegister:
    """One VMRS register. ``units`` lists every unit allowed on the wire; ``unit`` is the usual one."""

    key: str
    name: str
    unit: str
    tier: Tier
    required: Requirement
    interval: IntervalClass
    value_type: ValueType
    aliases: tuple[Alias, ...]
    alternatives: tuple[str, ...]
    provenance: Mapping[str, Any]
    units: tuple[str, ...] = ()
    currency_allowed: bool = False
    enum: tuple[str, ...] | None = None
    logical_names: tuple[str, ...] = ()

    @property
    def obis(self) -> Obis:
        """The OBIS code the key spells (short keys get the implied A, B, F)."""
        return parse_obis(self.key)


def _load() -> tuple[dict[str, VmrsRegister], Mapping[str, Any]]:
    text = resources.files("villageami.contract").joinpath("data/vmrs.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    registers: dict[str, VmrsRegister] = {}
    for entry in doc["registers"]:
        required = entry["required"]
        registers[entry["key"]] = VmrsRegister(
            key=entry["key"],
            name=entry["name"],
            unit=entry["unit"],
            tier=Tier(entry["tier"]),
            required=Requirement(str(required).lower() if isinstance(required, bool) else required),
            interval=IntervalClass(entry["interval"]),
            value_type=ValueType(entry["valueType"]),
            aliases=tuple(Alias(a["key"], a["deprecated"], a["note"]) for a in entry["aliases"]),
            alternatives=tuple(entry["alternatives"]),
            provenance=MappingProxyType(entry["provenance"]),
            units=tuple(entry["units"]),
            currency_allowed=entry["currencyAllowed"],
            enum=tuple(entry["enum"]) if entry["enum"] is not None else None,
            logical_names=tuple(entry["logicalNames"]),
        )
    return registers, MappingProxyType(doc)


_REGISTERS, CATALOGUE = _load()
VMRS: Mapping[str, VmrsRegister] = MappingProxyType(_REGISTERS)

_ALIASES: dict[str, tuple[str, bool]] = {
    alias.key: (reg.key, alias.deprecated) for reg in _REGISTERS.values() for alias in reg.aliases
}
_BY_OBIS: dict[Obis, str] = {
    parse_obis(name): reg.key for reg in _REGISTERS.values() for name in reg.logical_names
}


def lookup_key(code: str | Obis) -> str | None:
    """The canonical key for a key, alias, or OBIS code in any spelling; None when none maps.

    Raises :class:`ObisError` for text that is not an OBIS code at all.
    """
    if isinstance(code, Obis):
        return _BY_OBIS.get(code)
    text = code.strip() if isinstance(code, str) else code
    if isinstance(text, str):
        if text in _REGISTERS:
            return text
        if text in _ALIASES:
            return _ALIASES[text][0]
    # Only listed logical names map: 96.1.0, 96.8.0 and 96.11.5 have none, because their short keys spell
    # COSEM objects that mean something else on real meters (see their provenance in data/vmrs.json).
    return _BY_OBIS.get(parse_obis(text))


def canonical_key(text: str | Obis) -> str:
    """The canonical VMRS key; raises :class:`UnknownRegisterError` (or ObisError) when nothing maps."""
    try:
        key = lookup_key(text)
    except ObisError as err:
        raise UnknownRegisterError(f"not a VMRS key or OBIS code: {text!r}") from err
    if key is None:
        raise UnknownRegisterError(f"OBIS code {str(text)!r} does not map to a VMRS register")
    return key


def deprecated_alias(text: str) -> str | None:
    """The canonical key when ``text`` is a deprecated alias (``96.11.1``), else None."""
    hit = _ALIASES.get(text)
    return hit[0] if hit is not None and hit[1] else None


def is_currency_code(unit: str) -> bool:
    """An ISO 4217 alphabetic code by shape (three upper-case letters)."""
    return _CURRENCY.fullmatch(unit) is not None


def unit_fits(register: VmrsRegister, unit: str) -> bool:
    """Whether ``unit`` is allowed for the register (G11: credit in kWh or an ISO 4217 code)."""
    return unit in register.units or (register.currency_allowed and is_currency_code(unit))


def value_fits(register: VmrsRegister, value: object) -> str | None:
    """None when the value fits the register's value type, else a plain reason."""
    vt = register.value_type
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if vt is ValueType.NUMBER:
        if not is_number:
            return f"{register.key} needs a number, got {_json_type(value)}"
        if not math.isfinite(value):  # type: ignore[arg-type]
            return f"{register.key} needs a finite number (JSON has no NaN or Infinity), got {value}"
        return None
    if vt is ValueType.INTEGER or vt is ValueType.BITFIELD:
        ok = is_number and (isinstance(value, int) or float(value).is_integer())  # type: ignore[arg-type]
        if not ok:
            return f"{register.key} needs an integer, got {_json_type(value)}"
        if vt is ValueType.BITFIELD and value < 0:  # type: ignore[operator]
            return f"{register.key} is a bitfield and needs a non-negative integer, got {value}"
        return None
    if vt is ValueType.DATETIME:
        if not isinstance(value, str):
            return f"{register.key} needs an RFC 3339 date-time string, got {_json_type(value)}"
        if RFC3339.fullmatch(value) is None:
            return f"{register.key} needs an RFC 3339 date-time with offset (Z or ±hh:mm), got {value!r}"
        return None
    if vt is ValueType.ENUM:
        allowed = register.enum or ()
        if value not in allowed or not isinstance(value, str):
            return f"{register.key} must be one of {', '.join(allowed)}; got {value!r}"
        return None
    return None if isinstance(value, str) else f"{register.key} needs a string, got {_json_type(value)}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return f"string {value!r}"
    return type(value).__name__
