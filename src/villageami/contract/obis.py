"""OBIS codes (IEC 62056-6-1): parse every common spelling into one value, format back to each.

Spellings accepted by :func:`parse_obis`:

=====================  ====================  =============================================
spelling               example               notes
=====================  ====================  =============================================
short (C.D.E)          ``1.8.0``             VMRS / IEC 62056-21 style; A, B, F implied
IEC (A-B:C.D.E*F)      ``1-0:1.8.0*255``     ``*F`` optional (F defaults to 255)
logical name           ``1-0:1.8.0.255``     the COSEM "logical name" text form
dotted (A.B.C.D.E.F)   ``1.0.1.8.0.255``     six groups, as in VMRS ``0.0.96.3.10.255``
hex                    ``0100010800FF``      the 6 bytes of the COSEM logical name
=====================  ====================  =============================================

The short form leaves A (medium), B (channel) and F (billing period) implicit. We fill them as
IEC 62056-21 data readouts mean them: B = 0, F = 255 (current value), and A = 0 ("abstract") when C is
0 or 93..99 (general purpose, service and status objects), else A = 1 (electricity).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from villageami.contract.errors import ObisError

__all__ = ["Obis", "ObisError", "ObisSpelling", "parse_obis", "vmrs_key_for"]


class ObisSpelling(StrEnum):
    """The text forms :meth:`Obis.format` can produce."""

    SHORT = "short"
    IEC = "iec"
    LOGICAL_NAME = "logical_name"
    DOTTED = "dotted"
    HEX = "hex"


_GROUP = r"(\d{1,3})"
_SHORT = re.compile(rf"{_GROUP}\.{_GROUP}\.{_GROUP}")
_DOTTED = re.compile(rf"{_GROUP}\.{_GROUP}\.{_GROUP}\.{_GROUP}\.{_GROUP}\.{_GROUP}")
# A-B:C.D.E, A-B:C.D.E*F, A-B:C.D.E.F
_IEC = re.compile(rf"{_GROUP}-{_GROUP}:{_GROUP}\.{_GROUP}\.{_GROUP}(?:[.*]{_GROUP})?")
_HEX = re.compile(r"[0-9A-Fa-f]{12}")

_ABSTRACT_C = frozenset({0, *range(93, 100)})


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """One OBIS code, the six value groups A..F, each 0..255."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "e", "f"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 255:
                raise ObisError(f"OBIS group {name.upper()} must be an integer 0..255, got {value!r}")

    @classmethod
    def from_short(cls, c: int, d: int, e: int) -> Obis:
        """The code a short C.D.E spelling stands for (see the module docstring for implied groups)."""
        return cls(0 if c in _ABSTRACT_C else 1, 0, c, d, e, 255)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Obis:
        """Decode the 6-byte COSEM logical name."""
        raw = bytes(data)
        if len(raw) != 6:
            raise ObisError(f"an OBIS logical name is 6 bytes, got {len(raw)} bytes: {raw.hex()!r}")
        return cls(*raw)

    def to_bytes(self) -> bytes:
        """The 6-byte COSEM logical name."""
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def to_short(self) -> str:
        """``C.D.E`` (lossy: A, B and F are dropped)."""
        return f"{self.c}.{self.d}.{self.e}"

    def to_iec(self) -> str:
        """``A-B:C.D.E*F``."""
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}*{self.f}"

    def to_logical_name(self) -> str:
        """``A-B:C.D.E.F``, e.g. ``1-0:1.8.0.255``."""
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}.{self.f}"

    def to_dotted(self) -> str:
        """``A.B.C.D.E.F``, e.g. ``0.0.96.3.10.255``."""
        return f"{self.a}.{self.b}.{self.c}.{self.d}.{self.e}.{self.f}"

    def to_hex(self) -> str:
        """Twelve upper-case hex digits, e.g. ``0100010800FF``."""
        return self.to_bytes().hex().upper()

    @property
    def is_short_form(self) -> bool:
        """True when :meth:`to_short` loses nothing (A, B, F are what a short spelling implies)."""
        return self == Obis.from_short(self.c, self.d, self.e)

    def format(self, spelling: ObisSpelling | str) -> str:
        """Render in one of the :class:`ObisSpelling` forms."""
        match ObisSpelling(spelling):
            case ObisSpelling.SHORT:
                return self.to_short()
            case ObisSpelling.IEC:
                return self.to_iec()
            case ObisSpelling.LOGICAL_NAME:
                return self.to_logical_name()
            case ObisSpelling.DOTTED:
                return self.to_dotted()
            case ObisSpelling.HEX:
                return self.to_hex()

    def __str__(self) -> str:
        return self.to_logical_name()


def _groups(match: re.Match[str], text: str) -> list[int]:
    values = [int(g) for g in match.groups() if g is not None]
    for value in values:
        if value > 255:
            raise ObisError(f"OBIS value groups are 0..255; {value} in {text!r} is out of range")
    return values


def parse_obis(text: str) -> Obis:
    """Parse any spelling listed in the module docstring. Raises :class:`ObisError` naming the input."""
    if not isinstance(text, str):
        raise ObisError(f"an OBIS code must be given as text, got {type(text).__name__}: {text!r}")
    stripped = text.strip()
    if (m := _SHORT.fullmatch(stripped)) is not None:
        return Obis.from_short(*_groups(m, text))
    if (m := _DOTTED.fullmatch(stripped)) is not None:
        return Obis(*_groups(m, text))
    if (m := _IEC.fullmatch(stripped)) is not None:
        a, b, c, d, e, *f = _groups(m, text)
        return Obis(a, b, c, d, e, f[0] if f else 255)
    if _HEX.fullmatch(stripped) is not None:
        return Obis.from_bytes(bytes.fromhex(stripped))
    raise ObisError(
        f"not an OBIS code: {text!r} (expected e.g. '1.8.0', '1-0:1.8.0*255', '1-0:1.8.0.255', "
        "'1.0.1.8.0.255' or '0100010800FF')"
    )


def vmrs_key_for(code: str | Obis) -> str | None:
    """The canonical VMRS key a code maps to, or None if it maps to none.

    Text that is itself a VMRS key or alias (``96.11.1``) maps directly; other text is parsed as OBIS
    (raising :class:`ObisError` when it is not one) and looked up by its full logical name.
    """
    from villageami.contract.vmrs import lookup_key  # the catalogue imports this module

    return lookup_key(code)
