"""Meter units -> VMRS units: one table shared by normalisation and profile validation.

Spellings are folded to a canonical form case-insensitively (``kwh``, ``WH``, ``hz``), except where the case
carries the meaning: ``m`` is milli and ``M`` is mega, so a unit starting with either is trusted only as
spelled exactly (``mWh`` must never be read as ``MWh``, a factor of 10**9).
"""

from __future__ import annotations

__all__ = ["canonical_unit", "convert_unit", "convertible"]

# (from, to) -> factor; identity conversions are implied.
_FACTORS: dict[tuple[str, str], float] = {
    ("Wh", "kWh"): 1e-3,
    ("MWh", "kWh"): 1e3,
    ("kW", "W"): 1e3,
    ("MW", "W"): 1e6,
    ("mW", "W"): 1e-3,
    ("kV", "V"): 1e3,
    ("mV", "V"): 1e-3,
    ("kHz", "Hz"): 1e3,
    ("mHz", "Hz"): 1e-3,
}
# How the same unit is spelled elsewhere (DLMS unit enum names, IEC 62056-21 readouts). No m/M-prefixed
# entries: their case is their meaning.
_SPELLINGS = {"kwh": "kWh", "wh": "Wh", "w": "W", "kw": "kW", "v": "V", "hz": "Hz", "kv": "kV", "khz": "kHz"}
_KNOWN = {u for pair in _FACTORS for u in pair}


def canonical_unit(unit: str) -> str:
    """The table's spelling of ``unit`` (unchanged when unknown)."""
    if unit in _KNOWN or unit[:1] in ("m", "M"):
        return unit
    return _SPELLINGS.get(unit.lower(), unit)


def convert_unit(value: float | int, unit: str, target: str) -> float | int:
    """``value`` in ``unit`` expressed in ``target``; ValueError when they are different quantities."""
    src = canonical_unit(unit)
    if src == target:
        return value
    factor = _FACTORS.get((src, target))
    if factor is None:
        raise ValueError(f"cannot convert {unit} to {target}")
    if isinstance(value, int) and factor < 1:
        # Exact for integer counters (Wh -> kWh): one correctly rounded division, not a product with an
        # inexact 0.001.
        return value / round(1 / factor)
    return value * factor


def convertible(unit: str, target: str) -> bool:
    src = canonical_unit(unit)
    return src == target or (src, target) in _FACTORS
