"""Turn what a driver read (``KeyRead``, meter units, scaler applied) into VMRS register entries.

Pure functions, no state: the gateway adds stateful plausibility (a cumulative register going down, clock
drift against its own clock) on top. Rules (docs/contract.md G9, G11-G14):

* numbers are converted to the VMRS unit (Wh -> kWh, kW -> W, MWh -> kWh, ...) and rounded to 3 decimals;
  a unit that cannot be converted omits the key rather than publish a wrong number;
* the disconnect register maps the meter's code through the profile's table to connected / disconnected /
  ready_for_reconnection;
* 96.5.0 keeps the raw integer as ``value``, adds ``raw`` (hex), and with a profile bit table ``flags`` and
  ``unmappedBits``; without a table there are no flags and the quality is ``suspect``;
* the clock becomes ISO 8601 with the meter's UTC offset;
* a key the meter refused is omitted (with the reason kept for logs); a meter that did not answer at all is
  published as ``comms_lost`` by repeating the last known entry (:func:`comms_lost`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from villageami.contract.envelope import Quality, register_entry
from villageami.contract.vmrs import (
    CREDIT_KEY,
    DISCONNECT_KEY,
    ENERGY_EXPORT_KEY,
    ENERGY_IMPORT_KEY,
    TAMPER_KEY,
    VMRS,
    ValueType,
    is_currency_code,
)
from villageami.meters.driver import KeyRead
from villageami.meters.profile import Profile
from villageami.meters.units import convert_unit

__all__ = ["Normalised", "VmrsReading", "comms_lost", "convert_unit", "normalise", "normalise_all"]

DECIMALS = 3


@dataclass(frozen=True, slots=True)
class VmrsReading:
    """One VMRS register entry before it becomes JSON. ``to_entry`` builds the contract's dict."""

    key: str
    value: Any
    unit: str
    quality: Quality
    read_at: datetime
    reason: str | None = None
    raw: str | None = None
    flags: tuple[str, ...] | None = None
    unmapped_bits: int | None = None
    logical_name: str | None = None

    def to_entry(self, *, include_read_at: bool = True) -> dict[str, Any]:
        return register_entry(
            self.key,
            self.value,
            self.unit,
            self.quality,
            read_at=self.read_at if include_read_at else None,
            reason=self.reason,
            raw=self.raw,
            flags=self.flags,
            unmapped_bits=self.unmapped_bits,
            logical_name=self.logical_name,
        )


@dataclass(frozen=True, slots=True)
class Normalised:
    """The result for a set of reads: entries to publish, and keys left out with the reason."""

    readings: list[VmrsReading] = field(default_factory=list)
    omitted: dict[str, str] = field(default_factory=dict)

    def entries(self, *, include_read_at: bool = True) -> list[dict[str, Any]]:
        return [r.to_entry(include_read_at=include_read_at) for r in self.readings]


class _Omit(Exception):
    """Internal: this key is not published; the message says why."""


def _round(value: float | int) -> float | int:
    if isinstance(value, int):
        return value
    rounded = round(value, DECIMALS)
    return rounded + 0.0  # turns -0.0 into 0.0


def _logical_name(read: KeyRead) -> str | None:
    # The DLMS driver sets source to "A-B:C.D.E.F/class/attr"; keep the logical name part (G10).
    if read.source and ":" in read.source and "/" in read.source and not read.source.startswith("modbus"):
        return read.source.split("/", 1)[0]
    return None


_DECIMAL_TEXT = re.compile(r"[+-]?\d+(\.\d+)?")


def _finite_number(value: object) -> float | int:
    # Readouts (IEC 62056-21) print plain digits such as "001234" when the data set has no unit or point;
    # drivers keep them as text so serials keep their leading zeros.
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        text = value.strip()
        value = float(text) if "." in text else int(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Omit(f"expected a number, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Omit(f"not a finite number: {value!r}")
    return value


def _profile_unit(read: KeyRead, profile: Profile | None) -> str | None:
    """The profile's unit for an IEC 62056-21 data set printed without ``*unit`` (Modbus and DLMS drivers
    already apply their profile unit)."""
    if profile is None or not (read.source or "").startswith("iec21:"):
        return None
    entry = profile.registers.get(read.key)
    return entry.iec21.unit if entry is not None and entry.iec21 is not None else None


def _number(read: KeyRead, target: str) -> tuple[float | int, Quality, str | None]:
    value = _finite_number(read.value)
    if read.unit is None:
        return _round(value), Quality.SUSPECT, f"meter gave no unit; assumed {target}"
    try:
        converted = convert_unit(value, read.unit, target)
    except ValueError as err:
        raise _Omit(str(err)) from None
    return _round(converted), Quality.GOOD, None


def _credit(read: KeyRead, profile: Profile | None) -> tuple[float | int, str, Quality, str | None]:
    unit = read.unit or (profile.credit_unit if profile else None)
    if unit is not None and is_currency_code(unit):
        return _round(float(_finite_number(read.value))), unit, Quality.GOOD, None
    number, quality, reason = _number(read if read.unit else replace(read, unit=unit), "kWh")
    return number, "kWh", quality, reason


def _disconnect(read: KeyRead, profile: Profile | None) -> str:
    value = read.value
    if isinstance(value, str) and value in (VMRS[DISCONNECT_KEY].enum or ()):
        return value
    if isinstance(value, bool):
        # COSEM output_state: TRUE = connected, FALSE = disconnected (IEC 62056-6-2 class 70).
        return "connected" if value else "disconnected"
    if isinstance(value, int):
        if profile is None or profile.disconnect is None:
            raise _Omit(f"disconnect code {value} but the profile has no disconnect table")
        state = profile.disconnect.values.get(value)
        if state is None:
            known = ", ".join(f"{k}={v}" for k, v in sorted(profile.disconnect.values.items()))
            raise _Omit(f"disconnect code {value} is not in the profile's table ({known})")
        return state
    raise _Omit(f"disconnect value {value!r} is neither a code nor a state")


def _tamper(read: KeyRead, profile: Profile | None) -> VmrsReading:
    value = read.value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Omit(f"96.5.0 must be a non-negative integer bitfield, got {value!r}")
    raw = f"0x{value:0{max(4, (value.bit_length() + 7) // 8 * 2)}X}"
    if profile is None or profile.tamper is None:
        return VmrsReading(
            key=TAMPER_KEY,
            value=value,
            unit="bitfield",
            quality=Quality.SUSPECT,
            read_at=read.read_at,
            reason="no tamper bit table for this meter model",
            raw=raw,
            logical_name=_logical_name(read),
        )
    table = profile.tamper.bits
    flags = tuple(name for bit, name in sorted(table.items()) if value >> bit & 1)
    mask = sum(1 << bit for bit in table)
    unmapped = value & ~mask
    return VmrsReading(
        key=TAMPER_KEY,
        value=value,
        unit="bitfield",
        quality=Quality.GOOD if unmapped == 0 else Quality.SUSPECT,
        read_at=read.read_at,
        reason=None if unmapped == 0 else f"bits {unmapped:#x} are not in the profile's tamper table",
        raw=raw,
        flags=flags,
        unmapped_bits=unmapped,
        logical_name=_logical_name(read),
    )


def _clock(read: KeyRead) -> tuple[str, Quality, str | None]:
    value: object = read.value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            text = value.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            return text, Quality.SUSPECT, "meter clock gives no UTC offset; shown as UTC"
        return value.isoformat(timespec="seconds"), Quality.GOOD, None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Omit(f"clock value {value!r} is not ISO 8601") from None
        return _clock(replace(read, value=parsed))  # type: ignore[arg-type]  # datetime is not a Scalar
    raise _Omit(f"clock value {value!r} is not a date-time")


def normalise(read: KeyRead, profile: Profile | None = None) -> VmrsReading:
    """One read -> one VMRS entry. Raises ValueError (with the reason) when the key must be omitted."""
    try:
        return _normalise(read, profile)
    except _Omit as omit:
        raise ValueError(f"{read.key}: {omit}") from None


def _normalise(read: KeyRead, profile: Profile | None) -> VmrsReading:
    register = VMRS.get(read.key)
    if register is None:
        raise _Omit("not a VMRS key")
    if read.error is not None or read.value is None:
        raise _Omit(read.error or "no value")
    if read.unit is None and (unit := _profile_unit(read, profile)) is not None:
        read = replace(read, unit=unit)
    logical_name = _logical_name(read)

    def make(value: Any, unit: str, quality: Quality, reason: str | None = None) -> VmrsReading:
        return VmrsReading(
            key=read.key,
            value=value,
            unit=unit,
            quality=quality,
            read_at=read.read_at,
            reason=reason,
            logical_name=logical_name,
        )

    vt = register.value_type
    if read.key == TAMPER_KEY:
        return _tamper(read, profile)
    if read.key == DISCONNECT_KEY:
        return make(_disconnect(read, profile), "enum", Quality.GOOD)
    if read.key == CREDIT_KEY:
        number, unit, quality, reason = _credit(read, profile)
        return make(number, unit, quality, reason)
    if vt is ValueType.NUMBER:
        number, quality, reason = _number(read, register.unit)
        if number < 0 and read.key in (ENERGY_IMPORT_KEY, ENERGY_EXPORT_KEY):
            # A cumulative energy register cannot be negative: a sign or word-order fault, not a reading.
            raise _Omit(f"negative cumulative energy {number} {register.unit} (meter gave {read.value!r})")
        return make(number, register.unit, quality, reason)
    if vt is ValueType.DATETIME:
        text, quality, reason = _clock(read)
        return make(text, register.unit, quality, reason)
    if vt is ValueType.INTEGER:
        value = read.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Omit(f"expected an integer, got {value!r}")
        return make(value, register.unit, Quality.GOOD)
    # text / event registers
    scalar: object = read.value
    if isinstance(scalar, bytes):
        scalar = scalar.decode("ascii", errors="replace")
    elif isinstance(scalar, float) and scalar.is_integer():
        scalar = int(scalar)
    text = str(scalar).strip()
    if not text:
        raise _Omit("empty text")
    return make(text, register.unit, Quality.GOOD)


def normalise_all(
    reads: Mapping[str, KeyRead] | Sequence[KeyRead], profile: Profile | None = None
) -> Normalised:
    """Normalise many reads; keys that cannot be published go to ``omitted`` with the reason."""
    items = list(reads.values()) if isinstance(reads, Mapping) else list(reads)
    result = Normalised()
    for read in items:
        try:
            result.readings.append(_normalise(read, profile))
        except _Omit as omit:
            result.omitted[read.key] = str(omit)
    return result


def comms_lost(last: VmrsReading, reason: str = "meter unreachable") -> VmrsReading:
    """The last known entry repeated with quality comms_lost and its original readAt (G14, G24)."""
    return replace(last, quality=Quality.COMMS_LOST, reason=reason)
