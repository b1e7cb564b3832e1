"""IEC 62056-21 (ex IEC 1107, "optical port" / D0) as a sans-IO codec and mode C client state machine.

Nothing here touches a socket or a serial port: functions turn bytes into messages and back, and
``ModeCClient`` turns received bytes and timeouts into actions (send these bytes, switch to this baud rate,
here is the readout). ``villageami.meters.iec21_driver`` runs it over a real transport.

Messages (IEC 62056-21:2002 clause 6.3):

=======================  ==========================================
sign-on request          ``/?[device address]!CR LF``
identification           ``/XXXZ[\\W]ident CR LF``
ack / option select      ``ACK V Z Y CR LF``
data readout (mode C)    ``STX data-lines ! CR LF ETX BCC``
command                  ``SOH C D STX data-set ETX BCC`` (R1, P0, W2 ...)
break                    ``SOH B0 ETX BCC``
=======================  ==========================================

BCC is the XOR of every byte after the first SOH/STX up to and including ETX (or EOT for a partial block).

Decisions:

* Enhanced identification escape: ``\\W`` directly after the baud character (``/ELL5\\253833635_A``) is the
  escape sequence of clause 6.3.14 (W = enhanced capability, ``2`` = mode E/HDLC), not part of the
  identification. It is stripped from ``identification`` and kept in ``enhanced_capabilities``. So
  ``/Els6\\2EK280`` has identification ``EK280`` (pwitab/iec62056-21 keeps ``2EK280``; amshan strips).
* Push telegrams (mode D, DSMR P1) end with ``!XXXX``: a CRC-16/ARC over ``/`` .. ``!`` inclusive. Some
  meters print fewer than four hex digits (``!B9F`` == 0x0B9F); that is accepted.
* Values keep the meter's text (``"001234.5"``); ``DataValue.as_decimal()`` converts on demand, so leading
  zeros of serial numbers and status codes survive.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation

from villageami.errors import VillageAmiError

SOH = 0x01
STX = 0x02
ETX = 0x03
EOT = 0x04
ACK = 0x06
NAK = 0x15
CRLF = b"\r\n"

INITIAL_BAUD_RATE = 300
# Mode C baud rate characters (clause 6.3.14, table "Z" for protocol mode C and E).
MODE_C_BAUD_RATES: dict[str, int] = {
    "0": 300,
    "1": 600,
    "2": 1200,
    "3": 2400,
    "4": 4800,
    "5": 9600,
    "6": 19200,
}
# Mode B uses letters; kept so identification messages of mode B meters decode to a rate too.
MODE_B_BAUD_RATES: dict[str, int] = {
    "A": 600,
    "B": 1200,
    "C": 2400,
    "D": 4800,
    "E": 9600,
    "F": 19200,
}

# Guards against a runaway stream: a real readout is a few kB; anything far larger is not a meter talking.
MAX_MESSAGE_BYTES = 256 * 1024


class Iec21Error(VillageAmiError):
    """Base of every IEC 62056-21 error."""


class Iec21DecodeError(Iec21Error):
    """Bytes that are not a valid IEC 62056-21 message. The message says what is wrong and shows the input."""


class Iec21Timeout(Iec21Error):
    """The meter did not answer in time and no fallback is left."""


def _show(data: bytes | str, limit: int = 60) -> str:
    """A short, printable rendering of offending input for error messages."""
    text = data if isinstance(data, str) else data.decode("latin-1")
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


# --- checksums -------------------------------------------------------------------------------------------


def bcc(data: bytes) -> int:
    """Block check character: XOR of all bytes given (caller passes the bytes after SOH/STX through ETX)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected = 0xA001, init 0), as used by DSMR P1 telegrams."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# --- data sets -------------------------------------------------------------------------------------------

_ADDRESS_FORBIDDEN = set("()/!")
_VALUE_FORBIDDEN = set("()*/!")
_UNIT_FORBIDDEN = set("()/!")
_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$")


@dataclass(frozen=True, slots=True)
class DataValue:
    """One ``(value*unit)`` group. ``unit`` is None when the meter printed no ``*`` (or an empty unit)."""

    value: str
    unit: str | None = None

    def is_numeric(self) -> bool:
        return bool(_NUMBER_RE.match(self.value))

    def as_decimal(self) -> Decimal:
        """The value as a Decimal; raises Iec21DecodeError when it is not a number."""
        if not self.is_numeric():
            raise Iec21DecodeError(f"data value {self.value!r} is not a number")
        try:
            return Decimal(self.value.strip())
        except InvalidOperation as exc:  # pragma: no cover - guarded by the regex
            raise Iec21DecodeError(f"data value {self.value!r} is not a number") from exc

    def encode(self) -> str:
        for char in self.value:
            if char in _VALUE_FORBIDDEN:
                raise ValueError(f"character {char!r} not allowed in a data value: {self.value!r}")
        if self.unit is None:
            return f"({self.value})"
        for char in self.unit:
            if char in _UNIT_FORBIDDEN:
                raise ValueError(f"character {char!r} not allowed in a unit: {self.unit!r}")
        return f"({self.value}*{self.unit})"


@dataclass(frozen=True, slots=True)
class DataSet:
    """``address(value*unit)(value*unit)...``; ``address`` is "" when absent (e.g. a P0 password operand)."""

    address: str
    values: tuple[DataValue, ...]

    @property
    def value(self) -> str | None:
        """The first value's text, or None when the meter printed ``()``."""
        if not self.values or self.values[0].value == "":
            return None
        return self.values[0].value

    @property
    def unit(self) -> str | None:
        return self.values[0].unit if self.values else None

    def encode(self) -> str:
        for char in self.address:
            if char in _ADDRESS_FORBIDDEN:
                raise ValueError(f"character {char!r} not allowed in a data set address: {self.address!r}")
        return self.address + "".join(v.encode() for v in self.values)


def _parse_group(group: str) -> DataValue:
    """The inside of one ``(...)`` group."""
    if "*" in group:
        value, _, unit = group.partition("*")
        return DataValue(value, unit or None)
    return DataValue(group)


_GROUPS_RE = re.compile(r"([^()]*)((?:\([^()]*\))+)")
_GROUP_RE = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True, slots=True)
class ParsedLine:
    data_sets: tuple[DataSet, ...]
    continuation: tuple[DataValue, ...]  # groups at the start of the line with no address (DSMR 2.2 gas)
    garbage: str  # whatever could not be read as data sets (kept for diagnostics)
    end_marker: bool  # the line ends the data block ("!")


def parse_data_line(line: str) -> ParsedLine:
    """Parse one data line: zero or more data sets, then optional trailing garbage or the ``!`` end marker.

    Never raises: anything unreadable ends up in ``garbage``.
    """
    stripped = line.strip("\r\n")
    if stripped.strip() == "!":
        return ParsedLine((), (), "", True)
    data_sets: list[DataSet] = []
    continuation: tuple[DataValue, ...] = ()
    garbage: list[str] = []
    position = 0
    for match in _GROUPS_RE.finditer(stripped):
        if match.start() != position:
            garbage.append(stripped[position : match.start()])
        address = match.group(1)
        values = tuple(_parse_group(g) for g in _GROUP_RE.findall(match.group(2)))
        if address.strip() == "" and not data_sets and not garbage:
            continuation = values
        elif any(c in _ADDRESS_FORBIDDEN for c in address):
            garbage.append(match.group(0))
        else:
            data_sets.append(DataSet(address.strip(), values))
        position = match.end()
    tail = stripped[position:]
    end_marker = tail.rstrip().endswith("!")
    if tail.strip():
        garbage.append(tail)
    return ParsedLine(tuple(data_sets), continuation, "".join(garbage), end_marker)


def _split_lines(text: str) -> list[str]:
    # CR LF, LF alone (E350) or LF LF; empty lines carry nothing.
    return [line for line in re.split(r"\r?\n", text) if line.strip("\r") != ""]


@dataclass(frozen=True, slots=True)
class DataBlock:
    """The data lines of a readout or push telegram."""

    data_sets: tuple[DataSet, ...]
    garbage: tuple[str, ...] = ()
    complete: bool = True  # an end-of-data "!" was seen


def parse_data_block(text: str) -> DataBlock:
    """Parse data lines up to the ``!`` end line. Continuation lines ``(..)`` extend the previous data set."""
    data_sets: list[DataSet] = []
    garbage: list[str] = []
    for line in _split_lines(text):
        parsed = parse_data_line(line)
        if parsed.continuation:
            if data_sets:
                data_sets[-1] = replace(data_sets[-1], values=data_sets[-1].values + parsed.continuation)
            else:
                data_sets.append(DataSet("", parsed.continuation))
        data_sets.extend(parsed.data_sets)
        if parsed.garbage:
            garbage.append(parsed.garbage)
        if parsed.end_marker:
            return DataBlock(tuple(data_sets), tuple(garbage), True)
    return DataBlock(tuple(data_sets), tuple(garbage), False)


def format_data_block(data_sets: Iterable[DataSet]) -> str:
    """Data lines as a mode C meter prints them: one data set per line, then ``!``."""
    return "".join(ds.encode() + "\r\n" for ds in data_sets) + "!\r\n"


# --- OBIS-ish addresses ----------------------------------------------------------------------------------

_ADDRESS_RE = re.compile(
    r"^(?:(?P<a>[0-9]+)-(?P<b>[0-9]+):)?(?P<cde>[^*:&]+?)(?:[*&](?P<f>[0-9]+))?$",
)


@dataclass(frozen=True, slots=True)
class ReadoutAddress:
    """A data set address split into the optional ``A-B:`` prefix, ``C.D.E`` and the optional ``*F``.

    ``C.D.E`` stays text because mode C meters use letters (``C.1.0``, ``F.F``). A missing E group
    (``32.7``) is read as ``0``, and a missing F as 255, which is how meters abbreviate.
    """

    a: int | None
    b: int | None
    cde: tuple[str, ...]
    f: int

    @classmethod
    def parse(cls, address: str) -> ReadoutAddress:
        match = _ADDRESS_RE.match(address.strip())
        if match is None:
            raise Iec21DecodeError(f"data set address {address!r} is not of the form [A-B:]C.D[.E][*F]")
        groups = match.group("cde").split(".")
        if len(groups) == 4 and match.group("f") is None and groups[3].isdigit():
            # "C.D.E.F" written with a dot instead of "*".
            f = int(groups[3])
            groups = groups[:3]
        else:
            f = int(match.group("f")) if match.group("f") else 255
        if len(groups) == 2:
            groups.append("0")
        a = int(match.group("a")) if match.group("a") else None
        b = int(match.group("b")) if match.group("b") else None
        return cls(a, b, tuple(groups), f)

    def matches(self, other: ReadoutAddress) -> bool:
        """True when both name the same register; an absent A-B prefix on either side matches any."""
        if self.cde != other.cde or self.f != other.f:
            return False
        either_open = self.a is None or other.a is None
        return either_open or (self.a, self.b) == (other.a, other.b)


def find_data_set(data_sets: Sequence[DataSet], wanted: str) -> DataSet | None:
    """The first data set whose address names the same register as ``wanted`` (see ReadoutAddress)."""
    target = ReadoutAddress.parse(wanted)
    for data_set in data_sets:
        try:
            if ReadoutAddress.parse(data_set.address).matches(target):
                return data_set
        except Iec21DecodeError:
            continue
    return None


# --- protocol messages -----------------------------------------------------------------------------------


def _ascii(data: bytes, what: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Iec21DecodeError(f"{what} is not ASCII: {_show(data)}") from exc


@dataclass(frozen=True, slots=True)
class RequestMessage:
    """Sign-on request ``/?address!CR LF``; ``device_address`` "" addresses whichever meter is there."""

    device_address: str = ""

    def encode(self) -> bytes:
        if any(c in "/?!\r\n" for c in self.device_address) or len(self.device_address) > 32:
            raise ValueError(f"invalid device address {self.device_address!r}")
        return b"/?" + self.device_address.encode("ascii") + b"!\r\n"

    @classmethod
    def decode(cls, data: bytes) -> RequestMessage:
        if not (data.startswith(b"/?") and data.endswith(b"!\r\n")):
            raise Iec21DecodeError(f"not a sign-on request /?...!CR LF: {_show(data)}")
        address = _ascii(data[2:-3], "device address")
        if any(c in "/?!\r\n" for c in address):
            raise Iec21DecodeError(f"invalid device address in request: {_show(data)}")
        return cls(address)


_MANUFACTURER_RE = re.compile(r"^[A-Za-z]{3}$")


@dataclass(frozen=True, slots=True)
class IdentificationMessage:
    """``/XXXZ[\\W...]ident CR LF``: manufacturer XXX, baud rate character Z, identification."""

    manufacturer: str
    baud_char: str
    identification: str
    enhanced_capabilities: tuple[str, ...] = ()

    @property
    def baud_rate(self) -> int | None:
        """The highest rate the meter offers for mode C (or B), None for other protocol modes."""
        return MODE_C_BAUD_RATES.get(self.baud_char) or MODE_B_BAUD_RATES.get(self.baud_char)

    @property
    def short_reaction_time(self) -> bool:
        """A lower-case third manufacturer letter means the meter answers within 20 ms (clause 6.3.14)."""
        return self.manufacturer[2].islower()

    def encode(self) -> bytes:
        escapes = "".join("\\" + w for w in self.enhanced_capabilities)
        text = f"/{self.manufacturer}{self.baud_char}{escapes}{self.identification}\r\n"
        return text.encode("latin-1")

    @classmethod
    def decode(cls, data: bytes) -> IdentificationMessage:
        line = data.rstrip(b"\r\n")
        if not data.endswith(b"\n") or not line.startswith(b"/") or len(line) < 5:
            raise Iec21DecodeError(f"not an identification message /XXXZ...CR LF: {_show(data)}")
        # Identification text may carry 8-bit or control bytes on odd meters; latin-1 keeps them 1:1.
        text = line.decode("latin-1")
        manufacturer, baud_char, rest = text[1:4], text[4], text[5:]
        if not _MANUFACTURER_RE.match(manufacturer):
            raise Iec21DecodeError(f"manufacturer id {manufacturer!r} is not three letters: {_show(data)}")
        if baud_char in "/!?\\" or not baud_char.isprintable():
            raise Iec21DecodeError(f"baud rate character {baud_char!r} is invalid: {_show(data)}")
        escapes: list[str] = []
        while len(rest) >= 2 and rest[0] == "\\":
            escapes.append(rest[1])
            rest = rest[2:]
        if len(rest) > 16 * 8:
            raise Iec21DecodeError(f"identification is too long ({len(rest)} characters): {_show(data)}")
        return cls(manufacturer, baud_char, rest, tuple(escapes))


class ProtocolMode(enum.StrEnum):
    """The Y character of the option select message."""

    DATA_READOUT = "0"
    PROGRAMMING = "1"
    BINARY_HDLC = "2"


@dataclass(frozen=True, slots=True)
class AckOptionSelect:
    """``ACK V Z Y CR LF``: protocol control V ("0" normal), baud char Z, mode Y (0 readout, 1 program)."""

    baud_char: str
    mode_char: str = ProtocolMode.DATA_READOUT
    protocol_control: str = "0"

    def encode(self) -> bytes:
        for name, char in (("V", self.protocol_control), ("Z", self.baud_char), ("Y", self.mode_char)):
            if len(char) != 1 or not char.isascii() or not char.isprintable():
                raise ValueError(f"option select {name} must be one printable character, got {char!r}")
        return bytes([ACK]) + f"{self.protocol_control}{self.baud_char}{self.mode_char}".encode() + CRLF

    @classmethod
    def decode(cls, data: bytes) -> AckOptionSelect:
        if len(data) != 6 or data[0] != ACK or not data.endswith(CRLF):
            raise Iec21DecodeError(f"not an acknowledgement/option select ACK V Z Y CR LF: {_show(data)}")
        v, z, y = tuple(_ascii(data[1:4], "option select"))
        if not (v.isdigit() and z.isalnum() and y.isdigit()):
            raise Iec21DecodeError(f"option select characters must be digits/letters: {_show(data)}")
        return cls(baud_char=z, mode_char=y, protocol_control=v)


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """``SOH C D STX data-set ETX BCC`` (R1 read, W2 write, P0/P1 password, ...), or ``SOH B0 ETX BCC``."""

    command: str
    command_type: str
    data_set: DataSet | None = None

    def encode(self) -> bytes:
        if len(self.command) != 1 or len(self.command_type) != 1:
            raise ValueError(
                f"command and type are one character each: {self.command!r}{self.command_type!r}"
            )
        body = (self.command + self.command_type).encode("ascii")
        if self.data_set is not None:
            body += bytes([STX]) + self.data_set.encode().encode("ascii")
        body += bytes([ETX])
        return bytes([SOH]) + body + bytes([bcc(body)])

    @classmethod
    def decode(cls, data: bytes) -> CommandMessage:
        if len(data) < 5 or data[0] != SOH or data[-2] != ETX:
            raise Iec21DecodeError(f"not a command message SOH C D [STX data] ETX BCC: {_show(data)}")
        expected = bcc(data[1:-1])
        if data[-1] != expected:
            raise Iec21DecodeError(
                f"invalid BCC 0x{data[-1]:02x} in command (correct is 0x{expected:02x}): {_show(data)}"
            )
        command, command_type = tuple(_ascii(data[1:3], "command"))
        payload = data[3:-2]
        if not payload:
            return cls(command, command_type, None)
        if payload[0] != STX:
            raise Iec21DecodeError(f"command data set must start with STX: {_show(data)}")
        text = _ascii(payload[1:], "command data set")
        block = parse_data_line(text)
        if block.garbage or len(block.data_sets) + (1 if block.continuation else 0) != 1:
            raise Iec21DecodeError(f"command must carry exactly one data set: {_show(data)}")
        data_set = block.data_sets[0] if block.data_sets else DataSet("", block.continuation)
        return cls(command, command_type, data_set)


BREAK = CommandMessage("B", "0")


@dataclass(frozen=True, slots=True)
class DataMessage:
    """``STX data ETX BCC``: a mode C readout (data ends with ``!CR LF``) or an answer to R1 (no ``!``).

    ``partial`` is True for a block ended by EOT instead of ETX (partial block transmission).
    """

    data_sets: tuple[DataSet, ...]
    readout: bool = True
    partial: bool = False

    def encode(self) -> bytes:
        if self.readout:
            text = format_data_block(self.data_sets)
        else:
            # An answer to R1 is the bare data set(s); meters that add CR LF are accepted when decoding.
            text = "".join(ds.encode() for ds in self.data_sets)
        body = text.encode("ascii") + bytes([EOT if self.partial else ETX])
        return bytes([STX]) + body + bytes([bcc(body)])

    @classmethod
    def decode(cls, data: bytes) -> DataMessage:
        """Strict: STX first, ETX/EOT second to last, BCC verified, every line a data set."""
        if len(data) < 3 or data[0] != STX or data[-2] not in (ETX, EOT):
            raise Iec21DecodeError(f"not a data message STX ... ETX BCC: {_show(data)}")
        expected = bcc(data[1:-1])
        if data[-1] != expected:
            raise Iec21DecodeError(
                f"invalid BCC 0x{data[-1]:02x} in data message (correct is 0x{expected:02x}): {_show(data)}"
            )
        text = _ascii(data[1:-2], "data block")
        block = parse_data_block(text)
        if block.garbage:
            raise Iec21DecodeError(f"unreadable data line {block.garbage[0]!r} in data message")
        return cls(block.data_sets, readout=block.complete, partial=data[-2] == EOT)


# --- whole telegrams (files, push streams, captured sessions) --------------------------------------------


@dataclass(frozen=True, slots=True)
class Telegram:
    """A readout or push telegram as found in a byte stream.

    ``checksum`` says what protected it: "bcc" (mode C STX..ETX), "crc16" (mode D ``!XXXX``) or None.
    """

    identification: IdentificationMessage | None
    data_sets: tuple[DataSet, ...]
    checksum: str | None = None
    garbage: tuple[str, ...] = field(default=())

    def get(self, address: str) -> DataSet | None:
        return find_data_set(self.data_sets, address)


def _find_identification(data: bytes) -> tuple[IdentificationMessage | None, int]:
    """The identification line and the offset after it; skips leading noise and an echoed request."""
    position = 0
    while True:
        start = data.find(b"/", position)
        if start < 0:
            return None, 0
        end = data.find(b"\n", start)
        if end < 0:
            return None, 0
        if data[start + 1 : start + 2] == b"?":  # our own sign-on request, echoed by the optical head
            position = end + 1
            continue
        try:
            return IdentificationMessage.decode(data[start : end + 1]), end + 1
        except Iec21DecodeError:
            position = start + 1


_CRC_TAIL_RE = re.compile(rb"^!([0-9A-Fa-f]{1,4})\r?\n?")


def parse_telegram(data: bytes, *, verify_checksum: bool = True) -> Telegram:
    """Parse a readout/push telegram with the leniency real captures need.

    Accepts noise before the identification, an echoed ``/?!`` request, CR LF / LF / LF LF line ends, data
    wrapped in STX..ETX BCC (mode C) or not, a ``!XXXX`` CRC-16/ARC (mode D), and anything after the end.
    With ``verify_checksum`` a BCC or CRC that is present must match; a telegram without one is accepted.
    Raises Iec21DecodeError (and nothing else) for anything else.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise Iec21DecodeError(f"telegram of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    identification, offset = _find_identification(data)
    if identification is None:
        raise Iec21DecodeError(f"no identification line /XXXZ... found in {_show(data)}")
    ident_start = data.rfind(b"/", 0, offset - 1)
    body = data[offset:]
    stx = body.find(bytes([STX]))
    # A STX among the first bytes (after blank lines) starts a mode C data block.
    if stx >= 0 and body[:stx].strip(b"\r\n") == b"":
        etx = body.find(bytes([ETX]), stx + 1)
        block_bytes = body[stx + 1 : etx] if etx >= 0 else body[stx + 1 :]
        checksum: str | None = None
        if etx >= 0 and etx + 1 < len(body):
            checksum = "bcc"
            expected = bcc(body[stx + 1 : etx + 1])
            if verify_checksum and body[etx + 1] != expected:
                raise Iec21DecodeError(
                    f"invalid BCC 0x{body[etx + 1]:02x} in readout of {identification.manufacturer}"
                    f"{identification.identification!r} (correct is 0x{expected:02x})"
                )
        block = parse_data_block(block_bytes.decode("latin-1"))
        if not block.complete:
            raise Iec21DecodeError(f"readout has no end line '!': {_show(block_bytes[-60:])}")
        return Telegram(identification, block.data_sets, checksum, block.garbage)

    end = _find_end_line(body)
    if end < 0:
        raise Iec21DecodeError(f"telegram has no end line '!': {_show(body[-60:])}")
    block = parse_data_block(body[: end + 1].decode("latin-1"))
    crc = _CRC_TAIL_RE.match(body[end:])
    checksum = None
    if crc is not None:
        checksum = "crc16"
        expected_crc = crc16_arc(data[ident_start : offset + end + 1])
        if verify_checksum and int(crc.group(1), 16) != expected_crc:
            raise Iec21DecodeError(
                f"invalid CRC16 {crc.group(1).decode()} in telegram of {identification.manufacturer}"
                f" (correct is {expected_crc:04X})"
            )
    return Telegram(identification, block.data_sets, checksum, block.garbage)


def _find_end_line(body: bytes) -> int:
    """Offset of the ``!`` that ends the data (at a line start, or after trailing junk on the last line)."""
    position = 0
    while True:
        bang = body.find(b"!", position)
        if bang < 0:
            return -1
        line_start = body.rfind(b"\n", 0, bang) + 1
        line = body[line_start:bang]
        # The end marker stands alone, or follows junk after the last ")" (seen on ACE3000 captures).
        if line.strip() == b"" or line.rstrip().endswith(b")") or b"(" not in line:
            if b"(" in line and line.count(b"(") != line.count(b")"):
                position = bang + 1
                continue
            return bang
        position = bang + 1


# --- DSMR-style timestamps -------------------------------------------------------------------------------

_DST_OFFSETS = {"W": timedelta(hours=1), "S": timedelta(hours=2)}


def parse_timestamp(text: str, zone: tzinfo | None = None) -> datetime:
    """``YYMMDDhhmmssX`` as printed by P1/HAN meters; X = W (winter/standard) or S (summer/DST).

    With ``zone`` (the meter's time zone, e.g. ZoneInfo("Europe/Brussels")) the digits are local time there
    and X only picks the repeated hour in autumn; meters do print a wrong X (``200301000000S``), and the zone
    wins. Without ``zone`` X gives the offset as in the CET zone (W = UTC+1, S = UTC+2); without X the
    result is naive. Raises Iec21DecodeError for anything else, including ``632525252525W``.
    """
    match = re.fullmatch(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([WS]?)", text.strip())
    if match is None:
        raise Iec21DecodeError(f"timestamp {text!r} is not YYMMDDhhmmss[W|S]")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        naive = datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise Iec21DecodeError(f"timestamp {text!r} is not a valid date/time: {exc}") from exc
    suffix = match.group(7)
    if zone is not None:
        # fold=1 selects the second (standard time) occurrence of a repeated hour.
        return naive.replace(tzinfo=zone, fold=1 if suffix == "W" else 0)
    if not suffix:
        return naive
    return naive.replace(tzinfo=timezone(_DST_OFFSETS[suffix]))


# --- mode C clock (0.9.1 time + 0.9.2 date) --------------------------------------------------------------

_READOUT_TIME_RES = (
    re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?"),  # hh:mm[:ss]
    re.compile(r"(\d{2})(\d{2})(\d{2})?"),  # hhmm[ss]
)
_READOUT_DATE_RE = re.compile(r"(\d{2}|\d{4})(-?)(\d{2})\2(\d{2})")


def parse_readout_time(text: str) -> time:
    """The time data set (OBIS 0.9.1) of a mode C readout: ``hh:mm:ss``, ``hhmmss``, ``hh:mm`` or ``hhmm``.

    Spaces are ignored (some meters pad: ``13 : 23 : 08``). Raises Iec21DecodeError for anything else.
    """
    compact = text.replace(" ", "")
    match = next((m for p in _READOUT_TIME_RES if (m := p.fullmatch(compact))), None)
    if match is None:
        raise Iec21DecodeError(f"time {text!r} is not hh:mm:ss, hhmmss, hh:mm or hhmm")
    hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        return time(hour, minute, second)
    except ValueError as exc:
        raise Iec21DecodeError(f"time {text!r} is not a valid time of day: {exc}") from exc


def parse_readout_date(text: str) -> date:
    """The date data set (OBIS 0.9.2) of a mode C readout: ``yy-mm-dd``, ``yymmdd``, ``yyyy-mm-dd`` or
    ``yyyymmdd``. A two-digit year is 20yy (meters in service today). Raises Iec21DecodeError otherwise.
    """
    match = _READOUT_DATE_RE.fullmatch(text.replace(" ", ""))
    if match is None:
        raise Iec21DecodeError(f"date {text!r} is not yy-mm-dd, yymmdd, yyyy-mm-dd or yyyymmdd")
    year_text, _, month, day = match.groups()
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    try:
        return date(year, int(month), int(day))
    except ValueError as exc:
        raise Iec21DecodeError(f"date {text!r} is not a valid calendar date: {exc}") from exc


def combine_readout_clock(time_text: str, date_text: str, utc_offset: timedelta | None = None) -> datetime:
    """One datetime from the time and date data sets. Meters print local time: with ``utc_offset`` the
    result carries that fixed offset, without it the result is naive (the offset is unknown)."""
    moment = datetime.combine(parse_readout_date(date_text), parse_readout_time(time_text))
    return moment if utc_offset is None else moment.replace(tzinfo=timezone(utc_offset))


# --- mode C client state machine -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendBytes:
    """Write these bytes to the line (and wait until they are out before the next action)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SwitchBaudRate:
    """Set the local UART to this rate (a no-op over TCP)."""

    baud_rate: int


@dataclass(frozen=True, slots=True)
class ReadoutComplete:
    identification: IdentificationMessage
    data_sets: tuple[DataSet, ...]
    baud_rate: int


ClientAction = SendBytes | SwitchBaudRate | ReadoutComplete


class ClientState(enum.Enum):
    IDLE = "idle"
    AWAIT_IDENTIFICATION = "await-identification"
    AWAIT_READOUT = "await-readout"
    DONE = "done"
    FAILED = "failed"


def choose_baud_char(offered: str, max_baud_rate: int) -> str:
    """The mode C baud character to propose: the meter's offer, capped at ``max_baud_rate``."""
    offered_rate = MODE_C_BAUD_RATES.get(offered)
    if offered_rate is None:
        return "0"
    best = "0"
    for char, rate in MODE_C_BAUD_RATES.items():
        if rate <= min(offered_rate, max_baud_rate) and rate > MODE_C_BAUD_RATES[best]:
            best = char
    return best


class ModeCClient:
    """Client side of a mode C data readout, as a state machine over bytes and timeouts.

    Flow: ``start()`` -> request at 300 baud; identification arrives -> ACK 0Z0 at 300 baud, then switch to
    Z; readout arrives -> BCC checked -> ``ReadoutComplete``. The caller reports silence with
    ``timed_out()``.

    Fallback: some meters offer a rate in their identification and then keep talking at 300 baud. When the
    readout does not come at the new rate, ``timed_out()`` switches back to 300, signs on again and proposes
    "0" (300 baud); ``fallback_used`` then tells the caller to start at 300 next time (``stay_at_300``).
    """

    def __init__(self, device_address: str = "", *, max_baud_rate: int = 19200, stay_at_300: bool = False):
        self.device_address = device_address
        self.max_baud_rate = max_baud_rate
        self.stay_at_300 = stay_at_300
        self.state = ClientState.IDLE
        self.baud_rate = INITIAL_BAUD_RATE
        self.fallback_used = False
        self.identification: IdentificationMessage | None = None
        self._buffer = bytearray()

    def start(self) -> list[ClientAction]:
        self._buffer.clear()
        self.baud_rate = INITIAL_BAUD_RATE
        self.state = ClientState.AWAIT_IDENTIFICATION
        return [SwitchBaudRate(INITIAL_BAUD_RATE), SendBytes(RequestMessage(self.device_address).encode())]

    def receive_data(self, data: bytes) -> list[ClientAction]:
        if self.state not in (ClientState.AWAIT_IDENTIFICATION, ClientState.AWAIT_READOUT):
            return []
        # 7E1 lines deliver the parity bit on some adapters: IEC 62056-21 is 7-bit ASCII.
        self._buffer.extend(b & 0x7F for b in data)
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            self.state = ClientState.FAILED
            raise Iec21DecodeError(
                f"meter sent more than {MAX_MESSAGE_BYTES} bytes without a complete message"
            )
        if self.state is ClientState.AWAIT_IDENTIFICATION:
            return self._try_identification()
        return self._try_readout()

    def _try_identification(self) -> list[ClientAction]:
        identification, offset = _find_identification(bytes(self._buffer))
        if identification is None:
            return []
        del self._buffer[:offset]
        self.identification = identification
        baud_char = (
            "0" if self.stay_at_300 else choose_baud_char(identification.baud_char, self.max_baud_rate)
        )
        actions: list[ClientAction] = [SendBytes(AckOptionSelect(baud_char).encode())]
        rate = MODE_C_BAUD_RATES[baud_char]
        if rate != self.baud_rate:
            actions.append(SwitchBaudRate(rate))
            self.baud_rate = rate
        self.state = ClientState.AWAIT_READOUT
        return actions + self._try_readout()

    def _try_readout(self) -> list[ClientAction]:
        stx = self._buffer.find(STX)
        if stx < 0:
            # Echoed ACK or line noise: nothing useful before STX. Keep the buffer small.
            self._buffer.clear()
            return []
        del self._buffer[:stx]
        etx = self._buffer.find(ETX)
        if etx < 0 or etx + 1 >= len(self._buffer):
            return []
        message = bytes(self._buffer[: etx + 2])
        del self._buffer[: etx + 2]
        try:
            decoded = DataMessage.decode(message)
        except Iec21DecodeError:
            self.state = ClientState.FAILED
            raise
        if not decoded.readout:
            self.state = ClientState.FAILED
            raise Iec21DecodeError("readout block has no end line '!' before ETX")
        self.state = ClientState.DONE
        assert self.identification is not None
        return [ReadoutComplete(self.identification, decoded.data_sets, self.baud_rate)]

    def timed_out(self) -> list[ClientAction]:
        """The line stayed silent for the reply timeout. Falls back once, else raises Iec21Timeout."""
        if self.state is ClientState.AWAIT_READOUT and self.baud_rate != INITIAL_BAUD_RATE:
            self.fallback_used = True
            self.stay_at_300 = True
            return self.start()
        waiting_for = "identification" if self.state is ClientState.AWAIT_IDENTIFICATION else "readout"
        self.state = ClientState.FAILED
        raise Iec21Timeout(f"no {waiting_for} from the meter at {self.baud_rate} baud")
