"""A-XDR encoding of COSEM data (IEC 62056-6-2 / Green Book "Data" CHOICE), sans-IO.

``Data(type, value)`` is the typed representation; it round-trips byte-exact:
``decode_data(encode_data(d)) == d`` and ``encode_data(decode_data(b)) == b`` for well-formed ``b``.
``Data.to_python()`` gives plain values (list, int, bytes, str, CosemDateTime ...).

Value representation per type:
  null-data / dont-care: None; array / structure: tuple[Data, ...]; boolean: bool;
  bit-string: str of "0"/"1"; integer types and enum: int; bcd: int (the raw octet);
  float32 / float64: float; octet-string: bytes; visible-string: str (latin-1 octets);
  utf8-string: str; date-time / date / time: CosemDateTime / CosemDate / CosemTime;
  compact-array: CompactArray.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from villageami.dlms.errors import DecodeError, EncodeError

__all__ = [
    "CompactArray",
    "CosemDate",
    "CosemDateTime",
    "CosemTime",
    "Data",
    "DataType",
    "TypeDescription",
    "decode_data",
    "decode_data_at",
    "decode_length",
    "encode_data",
    "encode_length",
    "ln_from_str",
    "ln_to_str",
]


class DataType(IntEnum):
    """COSEM data type tags."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255

    @property
    def label(self) -> str:
        """Green Book name, e.g. ``long-unsigned``."""
        return self.name.lower().replace("_", "-")


# --------------------------------------------------------------------------- lengths


def encode_length(length: int) -> bytes:
    """A-XDR length: one octet below 128, else 0x80|n followed by n big-endian octets."""
    if length < 0:
        raise EncodeError(f"negative A-XDR length {length}")
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def decode_length(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode an A-XDR length at ``pos``; return (length, position after it)."""
    if pos >= len(buf):
        raise DecodeError(f"A-XDR length missing at offset {pos} (data ends)")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 4:
        raise DecodeError(f"A-XDR length with {count} length octets at offset {pos - 1} is not supported")
    if pos + count > len(buf):
        raise DecodeError(f"A-XDR length truncated at offset {pos - 1}")
    return int.from_bytes(buf[pos : pos + count], "big"), pos + count


# --------------------------------------------------------------------------- date and time


def _opt(raw: int, unspecified: int) -> int | None:
    return None if raw == unspecified else raw


def _raw(value: int | None, unspecified: int) -> int:
    return unspecified if value is None else value


@dataclass(frozen=True, slots=True)
class CosemDate:
    """COSEM date (5 octets). ``None`` = not specified (0xFF / 0xFFFF). Month/day keep special values
    (0xFD/0xFE = DST end/begin, last day ...) as plain ints."""

    year: int | None
    month: int | None
    day: int | None
    day_of_week: int | None = None

    def encode_raw(self) -> bytes:
        return struct.pack(
            ">HBBB",
            _raw(self.year, 0xFFFF),
            _raw(self.month, 0xFF),
            _raw(self.day, 0xFF),
            _raw(self.day_of_week, 0xFF),
        )

    @classmethod
    def decode_raw(cls, raw: bytes) -> CosemDate:
        if len(raw) != 5:
            raise DecodeError(f"COSEM date needs 5 octets, got {len(raw)}")
        year, month, day, dow = struct.unpack(">HBBB", raw)
        return cls(_opt(year, 0xFFFF), _opt(month, 0xFF), _opt(day, 0xFF), _opt(dow, 0xFF))

    def to_date(self) -> dt.date:
        if self.year is None or self.month is None or self.day is None:
            raise DecodeError(f"COSEM date {self} has unspecified fields")
        try:
            return dt.date(self.year, self.month, self.day)
        except ValueError as exc:
            raise DecodeError(f"COSEM date {self} is not a calendar date: {exc}") from None


@dataclass(frozen=True, slots=True)
class CosemTime:
    """COSEM time (4 octets). ``None`` = not specified (0xFF)."""

    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None = None

    def encode_raw(self) -> bytes:
        return bytes(
            (
                _raw(self.hour, 0xFF),
                _raw(self.minute, 0xFF),
                _raw(self.second, 0xFF),
                _raw(self.hundredths, 0xFF),
            )
        )

    @classmethod
    def decode_raw(cls, raw: bytes) -> CosemTime:
        if len(raw) != 4:
            raise DecodeError(f"COSEM time needs 4 octets, got {len(raw)}")
        return cls(_opt(raw[0], 0xFF), _opt(raw[1], 0xFF), _opt(raw[2], 0xFF), _opt(raw[3], 0xFF))


DEVIATION_UNSPECIFIED = 0x8000


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """COSEM date-time (12 octets).

    ``deviation`` is minutes UTC minus local time (-60 means UTC+01:00); ``None`` = 0x8000 (not specified).
    ``clock_status`` None = 0xFF (not specified); bit 7 = daylight saving active.
    """

    year: int | None
    month: int | None
    day: int | None
    day_of_week: int | None
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None
    deviation: int | None
    clock_status: int | None

    def encode_raw(self) -> bytes:
        deviation = DEVIATION_UNSPECIFIED if self.deviation is None else self.deviation & 0xFFFF
        return struct.pack(
            ">HBBBBBBBHB",
            _raw(self.year, 0xFFFF),
            _raw(self.month, 0xFF),
            _raw(self.day, 0xFF),
            _raw(self.day_of_week, 0xFF),
            _raw(self.hour, 0xFF),
            _raw(self.minute, 0xFF),
            _raw(self.second, 0xFF),
            _raw(self.hundredths, 0xFF),
            deviation,
            _raw(self.clock_status, 0xFF),
        )

    @classmethod
    def decode_raw(cls, raw: bytes) -> CosemDateTime:
        if len(raw) != 12:
            raise DecodeError(f"COSEM date-time needs 12 octets, got {len(raw)}")
        year, month, day, dow, hour, minute, second, hundredths, deviation, status = struct.unpack(
            ">HBBBBBBBhB", raw
        )
        return cls(
            _opt(year, 0xFFFF),
            _opt(month, 0xFF),
            _opt(day, 0xFF),
            _opt(dow, 0xFF),
            _opt(hour, 0xFF),
            _opt(minute, 0xFF),
            _opt(second, 0xFF),
            _opt(hundredths, 0xFF),
            None if deviation == -0x8000 else deviation,
            _opt(status, 0xFF),
        )

    @property
    def tzinfo(self) -> dt.tzinfo | None:
        if self.deviation is None:
            return None
        return dt.timezone(dt.timedelta(minutes=-self.deviation))

    def to_datetime(self) -> dt.datetime:
        """Aware datetime when the deviation is specified, naive otherwise. Unspecified hundredths = 0."""
        fields = (self.year, self.month, self.day, self.hour, self.minute, self.second)
        if any(f is None for f in fields):
            raise DecodeError(f"COSEM date-time {self.encode_raw().hex()} has unspecified fields")
        try:
            return dt.datetime(
                self.year,  # type: ignore[arg-type]
                self.month,  # type: ignore[arg-type]
                self.day,  # type: ignore[arg-type]
                self.hour,  # type: ignore[arg-type]
                self.minute,  # type: ignore[arg-type]
                self.second,  # type: ignore[arg-type]
                (self.hundredths or 0) * 10_000,
                tzinfo=self.tzinfo,
            )
        except (ValueError, OverflowError) as exc:
            raise DecodeError(f"COSEM date-time {self.encode_raw().hex()} is not valid: {exc}") from None

    @classmethod
    def from_datetime(cls, value: dt.datetime, *, clock_status: int | None = 0) -> CosemDateTime:
        """From a datetime; naive datetimes get deviation 'not specified'. Day of week 1 = Monday."""
        deviation: int | None = None
        offset = value.utcoffset()
        if offset is not None:
            deviation = -int(offset.total_seconds() // 60)
        return cls(
            value.year,
            value.month,
            value.day,
            value.isoweekday(),
            value.hour,
            value.minute,
            value.second,
            value.microsecond // 10_000,
            deviation,
            clock_status,
        )

    def __str__(self) -> str:
        try:
            return self.to_datetime().isoformat()
        except DecodeError:
            return f"date-time:{self.encode_raw().hex()}"


# --------------------------------------------------------------------------- compact array


@dataclass(frozen=True, slots=True)
class TypeDescription:
    """Compact-array content description: a simple type, an array(count, element) or a structure."""

    type: DataType
    elements: tuple[TypeDescription, ...] = ()
    count: int = 0  # number of elements, for array descriptions


@dataclass(frozen=True, slots=True)
class CompactArray:
    description: TypeDescription
    elements: tuple[Data, ...]


# --------------------------------------------------------------------------- Data


@dataclass(frozen=True, slots=True)
class Data:
    """A typed COSEM value. See the module docstring for the value representation per type."""

    type: DataType
    value: Any = None

    def to_python(self) -> Any:
        """Plain Python: arrays/structures become lists, compact arrays lists of rows."""
        t = self.type
        if t is DataType.ARRAY or t is DataType.STRUCTURE:
            return [item.to_python() for item in self.value]
        if t is DataType.COMPACT_ARRAY:
            return [item.to_python() for item in self.value.elements]
        return self.value

    def __getitem__(self, index: int) -> Data:
        if self.type not in (DataType.ARRAY, DataType.STRUCTURE):
            raise TypeError(f"{self.type.label} is not indexable")
        item: Data = self.value[index]
        return item

    def __len__(self) -> int:
        if self.type not in (DataType.ARRAY, DataType.STRUCTURE):
            raise TypeError(f"{self.type.label} has no length")
        return len(self.value)

    # convenience constructors
    @staticmethod
    def null() -> Data:
        return Data(DataType.NULL_DATA, None)

    @staticmethod
    def array(items: Sequence[Data]) -> Data:
        return Data(DataType.ARRAY, tuple(items))

    @staticmethod
    def structure(items: Sequence[Data]) -> Data:
        return Data(DataType.STRUCTURE, tuple(items))

    @staticmethod
    def octet_string(value: bytes) -> Data:
        return Data(DataType.OCTET_STRING, bytes(value))

    @staticmethod
    def date_time(value: CosemDateTime | dt.datetime) -> Data:
        """A date-time as the octet-string of 12 octets (how COSEM attributes carry it)."""
        if isinstance(value, dt.datetime):
            value = CosemDateTime.from_datetime(value)
        return Data(DataType.OCTET_STRING, value.encode_raw())

    def as_date_time(self) -> CosemDateTime:
        """Interpret an octet-string of 12 octets (or a date-time) as a COSEM date-time."""
        if self.type is DataType.DATE_TIME:
            result: CosemDateTime = self.value
            return result
        if self.type is DataType.OCTET_STRING and len(self.value) == 12:
            return CosemDateTime.decode_raw(self.value)
        raise DecodeError(f"{self.type.label} value {self.value!r} is not a COSEM date-time")

    def encode(self) -> bytes:
        return encode_data(self)


_INT_FORMATS: dict[DataType, tuple[str, int, int, int]] = {
    # type -> (struct format, size, min, max)
    DataType.INTEGER: (">b", 1, -(2**7), 2**7 - 1),
    DataType.LONG: (">h", 2, -(2**15), 2**15 - 1),
    DataType.DOUBLE_LONG: (">i", 4, -(2**31), 2**31 - 1),
    DataType.LONG64: (">q", 8, -(2**63), 2**63 - 1),
    DataType.UNSIGNED: (">B", 1, 0, 2**8 - 1),
    DataType.LONG_UNSIGNED: (">H", 2, 0, 2**16 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (">I", 4, 0, 2**32 - 1),
    DataType.LONG64_UNSIGNED: (">Q", 8, 0, 2**64 - 1),
    DataType.ENUM: (">B", 1, 0, 2**8 - 1),
    DataType.BCD: (">B", 1, 0, 2**8 - 1),
}
_INT_STRUCTS = {t: (struct.Struct(f), n) for t, (f, n, _, _) in _INT_FORMATS.items()}
_FLOAT32 = struct.Struct(">f")
_FLOAT64 = struct.Struct(">d")
_FIXED_SIZES = {DataType.DATE_TIME: 12, DataType.DATE: 5, DataType.TIME: 4}
_FIXED_CLASSES: dict[DataType, type[CosemDateTime | CosemDate | CosemTime]] = {
    DataType.DATE_TIME: CosemDateTime,
    DataType.DATE: CosemDate,
    DataType.TIME: CosemTime,
}

_TAG_TO_TYPE: dict[int, DataType] = {int(t): t for t in DataType}


# --------------------------------------------------------------------------- encoding


def _encode_bits(bits: str) -> bytes:
    if any(c not in "01" for c in bits):
        raise EncodeError(f"bit-string value {bits!r} must contain only 0 and 1")
    padded = bits + "0" * (-len(bits) % 8)
    return bytes(int(padded[i : i + 8], 2) for i in range(0, len(padded), 8))


def _encode_content(data: Data, out: bytearray) -> None:
    """Encode the value of ``data`` without its type tag."""
    t = data.type
    v = data.value
    try:
        if t in _INT_STRUCTS:
            fmt, _size = _INT_STRUCTS[t]
            _f, _n, low, high = _INT_FORMATS[t]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise EncodeError(f"{t.label} needs an int in [{low}, {high}], got {v!r}")
            out += fmt.pack(v)
        elif t is DataType.NULL_DATA or t is DataType.DONT_CARE:
            if v is not None:
                raise EncodeError(f"{t.label} carries no value, got {v!r}")
        elif t is DataType.OCTET_STRING:
            if not isinstance(v, bytes | bytearray):
                raise EncodeError(f"octet-string needs bytes, got {type(v).__name__}")
            out += encode_length(len(v))
            out += v
        elif t is DataType.ARRAY or t is DataType.STRUCTURE:
            if not isinstance(v, tuple | list):
                raise EncodeError(f"{t.label} needs a sequence of Data, got {type(v).__name__}")
            out += encode_length(len(v))
            for item in v:
                if not isinstance(item, Data):
                    raise EncodeError(f"{t.label} element {item!r} is not Data")
                out.append(item.type)
                _encode_content(item, out)
        elif t is DataType.BOOLEAN:
            if not isinstance(v, bool):
                raise EncodeError(f"boolean needs a bool, got {v!r}")
            out.append(0xFF if v else 0x00)
        elif t is DataType.VISIBLE_STRING:
            raw = v.encode("latin-1")
            out += encode_length(len(raw))
            out += raw
        elif t is DataType.UTF8_STRING:
            raw = v.encode("utf-8")
            out += encode_length(len(raw))
            out += raw
        elif t is DataType.BIT_STRING:
            if not isinstance(v, str):
                raise EncodeError(f"bit-string needs a str of 0/1, got {type(v).__name__}")
            out += encode_length(len(v))
            out += _encode_bits(v)
        elif t is DataType.FLOAT32:
            out += _FLOAT32.pack(float(v))
        elif t is DataType.FLOAT64:
            out += _FLOAT64.pack(float(v))
        elif t in _FIXED_SIZES:
            expected: type[CosemDateTime | CosemDate | CosemTime] = _FIXED_CLASSES[t]
            if not isinstance(v, expected):
                raise EncodeError(f"{t.label} needs {expected.__name__}, got {type(v).__name__}")
            out += v.encode_raw()
        elif t is DataType.COMPACT_ARRAY:
            if not isinstance(v, CompactArray):
                raise EncodeError(f"compact-array needs CompactArray, got {type(v).__name__}")
            _encode_description(v.description, out)
            contents = bytearray()
            for element in v.elements:
                _encode_compact_element(element, v.description, contents)
            out += encode_length(len(contents))
            out += contents
        else:  # pragma: no cover - every DataType is handled above
            raise EncodeError(f"cannot encode data type {t!r}")
    except EncodeError:
        raise
    except (struct.error, UnicodeError, AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {t.label} value {v!r}: {exc}") from None


def _encode_description(desc: TypeDescription, out: bytearray) -> None:
    out.append(desc.type)
    if desc.type is DataType.ARRAY:
        out += desc.count.to_bytes(2, "big")
        _encode_description(desc.elements[0], out)
    elif desc.type is DataType.STRUCTURE:
        out += encode_length(len(desc.elements))
        for element in desc.elements:
            _encode_description(element, out)


def _encode_compact_element(data: Data, desc: TypeDescription, out: bytearray) -> None:
    if data.type is not desc.type:
        raise EncodeError(f"compact-array element {data.type.label} does not match {desc.type.label}")
    if desc.type is DataType.STRUCTURE:
        for item, sub in zip(data.value, desc.elements, strict=True):
            _encode_compact_element(item, sub, out)
    elif desc.type is DataType.ARRAY:
        for item in data.value:
            _encode_compact_element(item, desc.elements[0], out)
    else:
        _encode_content(data, out)


def encode_data(data: Data) -> bytes:
    """A-XDR encode one typed value (tag + content)."""
    if not isinstance(data, Data):
        raise EncodeError(f"expected Data, got {type(data).__name__}")
    out = bytearray((int(data.type),))
    _encode_content(data, out)
    return bytes(out)


# --------------------------------------------------------------------------- decoding

_MAX_DEPTH = 64


def _take(buf: bytes, pos: int, n: int, what: str) -> bytes:
    end = pos + n
    if end > len(buf):
        raise DecodeError(f"{what} needs {n} octets at offset {pos}, only {len(buf) - pos} left")
    return buf[pos:end]


def _decode_content(buf: bytes, pos: int, t: DataType, depth: int) -> tuple[Data, int]:
    entry = _INT_STRUCTS.get(t)
    if entry is not None:
        fmt, size = entry
        if pos + size > len(buf):
            raise DecodeError(f"{t.label} needs {size} octets at offset {pos}, only {len(buf) - pos} left")
        return Data(t, fmt.unpack_from(buf, pos)[0]), pos + size
    if t is DataType.OCTET_STRING:
        n, pos = decode_length(buf, pos)
        return Data(t, _take(buf, pos, n, "octet-string")), pos + n
    if t is DataType.STRUCTURE or t is DataType.ARRAY:
        if depth > _MAX_DEPTH:
            raise DecodeError(f"A-XDR nesting deeper than {_MAX_DEPTH} at offset {pos}")
        n, pos = decode_length(buf, pos)
        if n > len(buf) - pos:
            raise DecodeError(f"{t.label} of {n} elements cannot fit in {len(buf) - pos} octets")
        items = []
        for _ in range(n):
            item, pos = decode_data_at(buf, pos, depth + 1)
            items.append(item)
        return Data(t, tuple(items)), pos
    if t is DataType.NULL_DATA or t is DataType.DONT_CARE:
        return Data(t, None), pos
    if t is DataType.BOOLEAN:
        return Data(t, _take(buf, pos, 1, "boolean")[0] != 0), pos + 1
    if t is DataType.VISIBLE_STRING:
        n, pos = decode_length(buf, pos)
        return Data(t, _take(buf, pos, n, "visible-string").decode("latin-1")), pos + n
    if t is DataType.UTF8_STRING:
        n, pos = decode_length(buf, pos)
        raw = _take(buf, pos, n, "utf8-string")
        try:
            return Data(t, raw.decode("utf-8")), pos + n
        except UnicodeDecodeError:
            raise DecodeError(f"utf8-string at offset {pos} is not valid UTF-8") from None
    if t is DataType.BIT_STRING:
        nbits, pos = decode_length(buf, pos)
        nbytes = (nbits + 7) // 8
        raw = _take(buf, pos, nbytes, "bit-string")
        bits = "".join(f"{b:08b}" for b in raw)[:nbits]
        return Data(t, bits), pos + nbytes
    if t is DataType.FLOAT32:
        return Data(t, _FLOAT32.unpack(_take(buf, pos, 4, "float32"))[0]), pos + 4
    if t is DataType.FLOAT64:
        return Data(t, _FLOAT64.unpack(_take(buf, pos, 8, "float64"))[0]), pos + 8
    if t is DataType.DATE_TIME:
        return Data(t, CosemDateTime.decode_raw(_take(buf, pos, 12, "date-time"))), pos + 12
    if t is DataType.DATE:
        return Data(t, CosemDate.decode_raw(_take(buf, pos, 5, "date"))), pos + 5
    if t is DataType.TIME:
        return Data(t, CosemTime.decode_raw(_take(buf, pos, 4, "time"))), pos + 4
    if t is DataType.COMPACT_ARRAY:
        desc, pos = _decode_description(buf, pos, depth + 1)
        if _min_size(desc) == 0:
            raise DecodeError(f"compact-array description at offset {pos} describes elements of no octets")
        n, pos = decode_length(buf, pos)
        contents = _take(buf, pos, n, "compact-array contents")
        elements = []
        cpos = 0
        while cpos < len(contents):
            element, cpos = _decode_compact_element(contents, cpos, desc, depth + 1)
            elements.append(element)
        return Data(t, CompactArray(desc, tuple(elements))), pos + n
    raise DecodeError(f"unknown A-XDR data type tag {int(t)} at offset {pos - 1}")  # pragma: no cover


def _decode_description(buf: bytes, pos: int, depth: int) -> tuple[TypeDescription, int]:
    if depth > _MAX_DEPTH:
        raise DecodeError(f"compact-array description nested deeper than {_MAX_DEPTH}")
    tag = _take(buf, pos, 1, "type description")[0]
    t = _TAG_TO_TYPE.get(tag)
    if t is None or t is DataType.COMPACT_ARRAY:
        raise DecodeError(f"invalid type {tag} in compact-array description at offset {pos}")
    pos += 1
    if t is DataType.ARRAY:
        count = int.from_bytes(_take(buf, pos, 2, "array description count"), "big")
        element, pos = _decode_description(buf, pos + 2, depth + 1)
        return TypeDescription(t, (element,), count), pos
    if t is DataType.STRUCTURE:
        n, pos = decode_length(buf, pos)
        if n > len(buf) - pos:
            raise DecodeError(f"structure description of {n} elements cannot fit at offset {pos}")
        elements = []
        for _ in range(n):
            element, pos = _decode_description(buf, pos, depth + 1)
            elements.append(element)
        return TypeDescription(t, tuple(elements)), pos
    return TypeDescription(t), pos


def _min_size(desc: TypeDescription) -> int:
    """Fewest octets one element of this description takes (bounds the work of a hostile description)."""
    if desc.type is DataType.STRUCTURE:
        return sum(_min_size(e) for e in desc.elements)
    if desc.type is DataType.ARRAY:
        return desc.count * _min_size(desc.elements[0])
    entry = _INT_STRUCTS.get(desc.type)
    if entry is not None:
        return entry[1]
    sizes = {DataType.FLOAT32: 4, DataType.FLOAT64: 8, DataType.BOOLEAN: 1, **_FIXED_SIZES}
    if desc.type in (DataType.NULL_DATA, DataType.DONT_CARE):
        return 0
    return sizes.get(desc.type, 1)  # variable-length types: at least their length octet


def _decode_compact_element(buf: bytes, pos: int, desc: TypeDescription, depth: int) -> tuple[Data, int]:
    if desc.type is DataType.STRUCTURE:
        items = []
        for sub in desc.elements:
            item, pos = _decode_compact_element(buf, pos, sub, depth + 1)
            items.append(item)
        return Data(DataType.STRUCTURE, tuple(items)), pos
    if desc.type is DataType.ARRAY:
        if desc.count * _min_size(desc.elements[0]) > len(buf) - pos:
            raise DecodeError(f"compact-array element of {desc.count} items cannot fit at offset {pos}")
        items = []
        for _ in range(desc.count):
            item, pos = _decode_compact_element(buf, pos, desc.elements[0], depth + 1)
            items.append(item)
        return Data(DataType.ARRAY, tuple(items)), pos
    start = pos
    data, pos = _decode_content(buf, pos, desc.type, depth)
    if pos == start and desc.type not in (DataType.NULL_DATA, DataType.DONT_CARE):
        raise DecodeError(f"compact-array element of {desc.type.label} consumed no octets")
    return data, pos


def decode_data_at(buf: bytes, pos: int = 0, depth: int = 0) -> tuple[Data, int]:
    """Decode one tagged value at ``pos``; return it and the position after it. Raises DecodeError."""
    if pos >= len(buf):
        raise DecodeError(f"A-XDR data missing at offset {pos} (data ends)")
    t = _TAG_TO_TYPE.get(buf[pos])
    if t is None:
        raise DecodeError(f"unknown A-XDR data type tag 0x{buf[pos]:02x} at offset {pos}")
    return _decode_content(buf, pos + 1, t, depth)


def decode_data(buf: bytes, *, allow_trailing: bool = False) -> Data:
    """Decode exactly one tagged value (trailing octets are an error unless ``allow_trailing``)."""
    buf = bytes(buf)
    data, end = decode_data_at(buf, 0)
    if end != len(buf) and not allow_trailing:
        raise DecodeError(f"{len(buf) - end} trailing octets after A-XDR data at offset {end}")
    return data


# --------------------------------------------------------------------------- logical names


def ln_to_str(ln: bytes) -> str:
    """6-octet logical name -> ``A-B:C.D.E.F``."""
    if len(ln) != 6:
        raise DecodeError(f"logical name must be 6 octets, got {len(ln)} ({bytes(ln).hex()})")
    return f"{ln[0]}-{ln[1]}:{ln[2]}.{ln[3]}.{ln[4]}.{ln[5]}"


def ln_from_str(text: str | bytes) -> bytes:
    """``A-B:C.D.E.F`` (or ``A.B.C.D.E.F``, or 6 raw octets) -> 6 octets. F defaults to 255 if omitted."""
    if isinstance(text, bytes | bytearray):
        if len(text) != 6:
            raise EncodeError(f"logical name must be 6 octets, got {len(text)}")
        return bytes(text)
    cleaned = text.strip().replace("-", ".").replace(":", ".").replace("*", ".")
    parts = cleaned.split(".")
    if len(parts) == 5:
        parts.append("255")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise EncodeError(f"logical name {text!r} is not of the form A-B:C.D.E.F") from None
    if len(values) != 6 or any(not 0 <= v <= 255 for v in values):
        raise EncodeError(f"logical name {text!r} is not of the form A-B:C.D.E.F (six values 0..255)")
    return bytes(values)
