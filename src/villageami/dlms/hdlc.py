"""DLMS HDLC link layer (IEC 62056-46), sans-IO.

Three parts, each pure over bytes:

- the frame codec (:class:`HdlcFrame`, :func:`decode_frame`, :func:`crc16_x25`, address helpers),
- :class:`HdlcStreamDecoder`, which finds frames in a byte stream that may carry garbage, optical echo and
  frames that share flags,
- the client and server connection state machines (:class:`HdlcClientConnection`,
  :class:`HdlcServerConnection`), which handle SNRM/UA negotiation, N(S)/N(R) sequence numbers, segmentation
  in both directions with RR polling, DISC/UA/DM and recovery of a lost frame. They never touch a socket:
  callers feed received bytes in and take bytes to send out.

Frame layout (no byte stuffing; the length field delimits the frame, so 0x7E may appear inside)::

    7E | A S LLL LLLLLLLL | dest addr | src addr | control | HCS (only if info) | info | FCS | 7E

Addresses carry 7 bits per octet; the low bit marks the last octet. A server address has 1, 2 or 4 octets and
holds an upper (logical device) and a lower (physical device) part; a client address has one octet.
Both CRCs are CRC-16/X.25, sent least significant octet first.

Window size: both sides negotiate it, but these machines always keep one frame outstanding (every frame sent
with P/F = 1), which every window size allows.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from villageami.dlms.errors import DecodeError, EncodeError, LinkError, LinkTimeout

FLAG = 0x7E
FORMAT_TYPE_3 = 0xA  # the only frame format DLMS uses
MAX_FRAME_LENGTH = 0x7FF  # 11-bit length field
# Longest segmented response the client reassembles: a 65535-octet APDU (the largest max PDU size a DLMS
# client can announce) plus its LLC header and some slack. A meter sending more is lying or babbling.
MAX_REASSEMBLED_INFO = 0xFFFF + 0x100

LLC_REQUEST = b"\xe6\xe6\x00"  # client -> server
LLC_RESPONSE = b"\xe6\xe7\x00"  # server -> client

# Default parameters when SNRM/UA carry no information field (IEC 62056-46 6.4.4.4.3.2).
DEFAULT_MAX_INFO_LENGTH = 128
DEFAULT_WINDOW_SIZE = 1


# --------------------------------------------------------------------------------------------- CRC


# CRC-16/X.25 is the reflected form of the CCITT CRC that binascii.crc_hqx computes in C: reflect each
# input octet, run crc_hqx, reflect the 16-bit result. A per-octet Python loop was ~25x slower, which let a
# meter that sends crafted false frames (valid header, closing flag in place, bad FCS) keep the event loop
# busy for ~20 ms per kB received.
_REFLECT = bytes(int(f"{octet:08b}"[::-1], 2) for octet in range(256))


def crc16_x25(data: bytes) -> int:
    """CRC-16/X.25 (reflected poly 0x1021, init 0xFFFF, xorout 0xFFFF) as used for HCS and FCS."""
    crc = binascii.crc_hqx(bytes(data).translate(_REFLECT), 0xFFFF)
    return ((_REFLECT[crc & 0xFF] << 8) | _REFLECT[crc >> 8]) ^ 0xFFFF


def _crc_bytes(data: bytes) -> bytes:
    return crc16_x25(data).to_bytes(2, "little")


# ----------------------------------------------------------------------------------------- Addresses


@dataclass(frozen=True, slots=True)
class HdlcAddress:
    """An HDLC address: ``logical`` is the upper part (client SAP or server logical device), ``physical``
    the lower part of a server address (None for a one-octet address), ``length`` the octet count."""

    logical: int
    physical: int | None = None
    length: int = 1

    def __post_init__(self) -> None:
        if self.length not in (1, 2, 4):
            raise EncodeError(f"HDLC address length must be 1, 2 or 4 octets, not {self.length}")
        if self.length == 1:
            if self.physical is not None:
                raise EncodeError(f"one-octet HDLC address {self.logical} cannot carry a physical address")
            if not 0 <= self.logical <= 0x7F:
                raise EncodeError(f"HDLC address {self.logical} does not fit one octet (0..127)")
            return
        limit = 0x7F if self.length == 2 else 0x3FFF
        physical = self.physical if self.physical is not None else 0
        if not (0 <= self.logical <= limit and 0 <= physical <= limit):
            raise EncodeError(
                f"HDLC address {self.logical}/{self.physical} does not fit {self.length} octets (0..{limit})"
            )

    def encode(self) -> bytes:
        if self.length == 1:
            groups = [self.logical]
        elif self.length == 2:
            groups = [self.logical, self.physical or 0]
        else:
            lower = self.physical or 0
            groups = [self.logical >> 7, self.logical & 0x7F, lower >> 7, lower & 0x7F]
        out = bytearray(group << 1 for group in groups)
        out[-1] |= 1
        return bytes(out)

    def __str__(self) -> str:
        if self.physical is None:
            return str(self.logical)
        return f"{self.logical}/{self.physical}"


def client_address(sap: int) -> HdlcAddress:
    """A client address (one octet): 16 public client, 17 LLS management, 1 HLS management, ..."""
    return HdlcAddress(sap, None, 1)


def server_address(logical: int = 1, physical: int | None = None, length: int | None = None) -> HdlcAddress:
    """A server address; the octet count is the smallest that fits unless ``length`` forces one."""
    if length is None:
        if physical is None:
            length = 1 if logical <= 0x7F else 4
        else:
            length = 2 if logical <= 0x7F and physical <= 0x7F else 4
    if length > 1 and physical is None:
        physical = 0
    return HdlcAddress(logical, physical, length)


def server_address_from_int(value: int) -> HdlcAddress:
    """Interpret the usual single-integer notation (upper << 14 | lower for 4 octets, e.g. 0x4011 + serial
    style) when it exceeds one octet; small values are a one-octet logical address."""
    if value <= 0x7F:
        return HdlcAddress(value, None, 1)
    return server_address(value >> 14, value & 0x3FFF, 4)


def _decode_address(data: bytes, start: int, what: str) -> tuple[HdlcAddress, int]:
    """Decode an address starting at ``start``; return it and the index after it."""
    end = start
    while True:
        if end >= len(data):
            raise DecodeError(f"HDLC {what} address runs past the frame header at octet {start}")
        if data[end] & 1:
            break
        end += 1
        if end - start >= 4:
            raise DecodeError(f"HDLC {what} address longer than 4 octets at octet {start}")
    raw = data[start : end + 1]
    groups = [octet >> 1 for octet in raw]
    if len(raw) == 1:
        return HdlcAddress(groups[0], None, 1), end + 1
    if len(raw) == 2:
        return HdlcAddress(groups[0], groups[1], 2), end + 1
    if len(raw) == 4:
        return HdlcAddress((groups[0] << 7) | groups[1], (groups[2] << 7) | groups[3], 4), end + 1
    raise DecodeError(f"HDLC {what} address has {len(raw)} octets (1, 2 or 4 allowed): {raw.hex()}")


# ------------------------------------------------------------------------------------------- Frames


class FrameKind(enum.Enum):
    I = "I"  # noqa: E741 - the standard's name for an information frame
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    DISC = "DISC"
    UA = "UA"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


_U_CONTROL = {
    FrameKind.SNRM: 0x83,
    FrameKind.DISC: 0x43,
    FrameKind.UA: 0x63,
    FrameKind.DM: 0x0F,
    FrameKind.FRMR: 0x87,
    FrameKind.UI: 0x03,
}
_U_KIND = {value: kind for kind, value in _U_CONTROL.items()}
_PF = 0x10


def _kind_of(control: int) -> FrameKind:
    if control & 0x01 == 0:
        return FrameKind.I
    if control & 0x03 == 0x01:
        supervisory = control & 0x0F
        if supervisory == 0x01:
            return FrameKind.RR
        if supervisory == 0x05:
            return FrameKind.RNR
        raise DecodeError(f"unsupported HDLC supervisory control octet 0x{control:02x}")
    kind = _U_KIND.get(control & ~_PF & 0xFF)
    if kind is None:
        raise DecodeError(f"unknown HDLC unnumbered control octet 0x{control:02x}")
    return kind


def control_octet(kind: FrameKind, *, poll_final: bool = True, send_seq: int = 0, recv_seq: int = 0) -> int:
    """Build a control octet. ``send_seq`` is N(S) (I-frames), ``recv_seq`` N(R) (I, RR, RNR), both mod 8."""
    pf = _PF if poll_final else 0
    if kind is FrameKind.I:
        return ((recv_seq & 7) << 5) | pf | ((send_seq & 7) << 1)
    if kind is FrameKind.RR:
        return ((recv_seq & 7) << 5) | pf | 0x01
    if kind is FrameKind.RNR:
        return ((recv_seq & 7) << 5) | pf | 0x05
    return _U_CONTROL[kind] | pf


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One HDLC frame. ``information`` is the raw information field (LLC header included when present)."""

    destination: HdlcAddress
    source: HdlcAddress
    control: int
    information: bytes = b""
    segmented: bool = False

    @property
    def kind(self) -> FrameKind:
        return _kind_of(self.control)

    @property
    def poll_final(self) -> bool:
        return bool(self.control & _PF)

    @property
    def send_seq(self) -> int:
        """N(S) of an I-frame."""
        return (self.control >> 1) & 7

    @property
    def recv_seq(self) -> int:
        """N(R) of an I, RR or RNR frame."""
        return (self.control >> 5) & 7

    def header(self) -> bytes:
        """Format, addresses and control (what HCS covers) for this frame's encoded length."""
        body_length = 2 + len(self.destination.encode()) + len(self.source.encode()) + 1
        length = body_length + (2 + len(self.information) if self.information else 0) + 2
        if length > MAX_FRAME_LENGTH:
            raise EncodeError(f"HDLC frame of {length} octets exceeds the 11-bit length field")
        frame_format = (FORMAT_TYPE_3 << 12) | (0x800 if self.segmented else 0) | length
        return (
            frame_format.to_bytes(2, "big")
            + self.destination.encode()
            + self.source.encode()
            + bytes([self.control])
        )

    def encode(self) -> bytes:
        header = self.header()
        body = header + (_crc_bytes(header) + self.information if self.information else b"")
        return bytes([FLAG]) + body + _crc_bytes(body) + bytes([FLAG])

    def describe(self) -> str:
        """Short human form, e.g. ``I N(S)=0 N(R)=1 P/F 16->1/17 12B``."""
        kind = self.kind
        text = kind.value
        if kind is FrameKind.I:
            text += f" N(S)={self.send_seq} N(R)={self.recv_seq}"
        elif kind in (FrameKind.RR, FrameKind.RNR):
            text += f" N(R)={self.recv_seq}"
        if self.poll_final:
            text += " P/F"
        if self.segmented:
            text += " seg"
        return f"{text} {self.source}->{self.destination} {len(self.information)}B"


def _parse_header(data: bytes) -> tuple[int, bool, HdlcAddress, HdlcAddress, int, int]:
    """Parse from the format field on: (length, segmented, dest, src, control, index after control)."""
    if len(data) < 2:
        raise DecodeError("HDLC frame too short for a format field")
    frame_format = int.from_bytes(data[0:2], "big")
    if frame_format >> 12 != FORMAT_TYPE_3:
        raise DecodeError(f"HDLC frame format type 0x{frame_format >> 12:x} is not 0xA (frame type 3)")
    length = frame_format & 0x7FF
    segmented = bool(frame_format & 0x800)
    destination, index = _decode_address(data, 2, "destination")
    source, index = _decode_address(data, index, "source")
    if index >= len(data):
        raise DecodeError("HDLC frame ends before its control octet")
    control = data[index]
    return length, segmented, destination, source, control, index + 1


def decode_frame(data: bytes) -> HdlcFrame:
    """Decode exactly one frame, with or without its opening/closing flags. Raises DecodeError."""
    raw = bytes(data)
    if raw[:1] == bytes([FLAG]) and raw[-1:] == bytes([FLAG]) and len(raw) >= 2:
        raw = raw[1:-1]
    length, segmented, destination, source, control, index = _parse_header(raw)
    if length != len(raw):
        raise DecodeError(f"HDLC length field says {length} octets but the frame has {len(raw)}: {raw.hex()}")
    if length < index + 2:
        raise DecodeError(f"HDLC frame of {length} octets is too short for its header and FCS")
    fcs = int.from_bytes(raw[-2:], "little")
    if crc16_x25(raw[:-2]) != fcs:
        raise DecodeError(f"HDLC FCS mismatch in frame {raw.hex()}")
    information = b""
    if length > index + 2:
        if length < index + 4:
            raise DecodeError(f"HDLC frame {raw.hex()} has a partial HCS")
        hcs = int.from_bytes(raw[index : index + 2], "little")
        if crc16_x25(raw[:index]) != hcs:
            raise DecodeError(f"HDLC HCS mismatch in frame {raw.hex()}")
        information = raw[index + 2 : -2]
    frame = HdlcFrame(destination, source, control, information, segmented)
    frame.kind  # noqa: B018 - validates the control octet, raising DecodeError when unknown
    return frame


# ------------------------------------------------------------------------------------ Stream decoder

_MAX_HEADER = 2 + 4 + 4 + 1  # format, the longest destination and source addresses, control


class HdlcStreamDecoder:
    """Find HDLC frames in a byte stream.

    Junk before a frame (line noise, a half frame from before we joined, an optical echo that is not a whole
    frame) is skipped. A candidate frame is accepted only when its closing flag sits where the length field
    says and its HCS/FCS check; otherwise the scan resumes one octet later. Frames may share a flag. The
    segmented format octet 0xA8 followed by length octet 0x7E is read as a length, never as a flag, because
    the decoder parses the two format octets as a unit after an opening flag.
    """

    def __init__(self, max_buffer: int = 16 * MAX_FRAME_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_buffer = max_buffer
        self.skipped_octets = 0

    @property
    def buffered(self) -> int:
        """Octets held back for the rest of a candidate frame (at most ``max_buffer`` after a feed)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[HdlcFrame]:
        self._buffer += data
        return list(self._drain())

    def _drain(self) -> Iterator[HdlcFrame]:
        buffer = self._buffer
        while True:
            start = buffer.find(FLAG)
            if start < 0:
                self.skipped_octets += len(buffer)
                buffer.clear()
                return
            if start:
                self.skipped_octets += start
                del buffer[:start]
            verdict = self._candidate(buffer)
            if verdict is None:  # need more data
                if len(buffer) > self._max_buffer:
                    self.skipped_octets += 1
                    del buffer[:1]
                    continue
                return
            if isinstance(verdict, HdlcFrame):
                length = int.from_bytes(buffer[1:3], "big") & 0x7FF
                # Keep the closing flag: it may open the next frame.
                del buffer[: length + 1]
                yield verdict
                continue
            self.skipped_octets += 1
            del buffer[:1]

    @staticmethod
    def _candidate(buffer: bytearray) -> HdlcFrame | bool | None:
        """At a flag: a frame, False (not a frame here), or None (cannot tell yet)."""
        if len(buffer) < 3:
            return None
        frame_format = int.from_bytes(buffer[1:3], "big")
        if frame_format >> 12 != FORMAT_TYPE_3:
            return False
        length = frame_format & 0x7FF
        if length < 7:
            return False
        # Reject early on a bad header so a false flag in junk does not stall a real frame behind it.
        header_end = min(len(buffer), 1 + length, 1 + _MAX_HEADER)  # never copy a whole 2 kB candidate
        try:
            _, _, _, _, _, index = _parse_header(bytes(buffer[1:header_end]))
        except DecodeError:
            if header_end < 1 + length and header_end - 1 < _MAX_HEADER:
                return None
            return False
        index += 1  # offset into buffer (past the opening flag)
        if length > index + 1 and len(buffer) >= index + 2:  # information present: check HCS now
            hcs = int.from_bytes(buffer[index : index + 2], "little")
            if crc16_x25(bytes(buffer[1:index])) != hcs:
                return False
        if len(buffer) < length + 2:
            return None
        if buffer[length + 1] != FLAG:
            return False
        try:
            return decode_frame(bytes(buffer[1 : length + 1]))
        except DecodeError:
            return False


# ------------------------------------------------------------------------------- Parameter negotiation


@dataclass(frozen=True, slots=True)
class HdlcParameters:
    """HDLC parameters as the sender of the SNRM or UA states them (its own transmit/receive limits)."""

    max_info_transmit: int = DEFAULT_MAX_INFO_LENGTH
    max_info_receive: int = DEFAULT_MAX_INFO_LENGTH
    window_transmit: int = DEFAULT_WINDOW_SIZE
    window_receive: int = DEFAULT_WINDOW_SIZE

    def encode(self) -> bytes:
        def field_(identifier: int, value: int, size: int | None = None) -> bytes:
            if size is None:
                size = 1 if value <= 0xFF else 2
            return bytes([identifier, size]) + value.to_bytes(size, "big")

        group = (
            field_(0x05, self.max_info_transmit)
            + field_(0x06, self.max_info_receive)
            + field_(0x07, self.window_transmit, 4)
            + field_(0x08, self.window_receive, 4)
        )
        return bytes([0x81, 0x80, len(group)]) + group

    @classmethod
    def decode(cls, data: bytes) -> HdlcParameters:
        """Decode an SNRM/UA information field; an empty field means the defaults."""
        if not data:
            return cls()
        if len(data) < 3 or data[0] != 0x81 or data[1] != 0x80:
            raise DecodeError(f"HDLC parameter field does not start with 81 80: {data.hex()}")
        group_length = data[2]
        if 3 + group_length > len(data):
            raise DecodeError(f"HDLC parameter group length {group_length} exceeds the field: {data.hex()}")
        values: dict[int, int] = {}
        index = 3
        end = 3 + group_length
        while index < end:
            if index + 2 > end:
                raise DecodeError(f"truncated HDLC parameter at octet {index}: {data.hex()}")
            identifier, size = data[index], data[index + 1]
            if index + 2 + size > end or size > 4:
                raise DecodeError(f"bad HDLC parameter 0x{identifier:02x} size {size}: {data.hex()}")
            values[identifier] = int.from_bytes(data[index + 2 : index + 2 + size], "big")
            index += 2 + size
        return cls(
            values.get(0x05, DEFAULT_MAX_INFO_LENGTH),
            values.get(0x06, DEFAULT_MAX_INFO_LENGTH),
            values.get(0x07, DEFAULT_WINDOW_SIZE),
            values.get(0x08, DEFAULT_WINDOW_SIZE),
        )


# -------------------------------------------------------------------------------------------- Events


@dataclass(frozen=True, slots=True)
class LinkConnected:
    """UA received: ``max_info_transmit`` is what we may send per frame, ``max_info_receive`` what we get."""

    max_info_transmit: int
    max_info_receive: int
    window_transmit: int
    window_receive: int


@dataclass(frozen=True, slots=True)
class ApduReceived:
    """A complete APDU (LLC header removed) has arrived."""

    apdu: bytes
    source: HdlcAddress


@dataclass(frozen=True, slots=True)
class LinkDisconnected:
    """The peer acknowledged DISC (UA), refused with DM, or sent DISC (server side)."""

    reason: str


@dataclass(frozen=True, slots=True)
class UnnumberedInformation:
    """A UI frame (push / data notification); information is passed through unchanged."""

    information: bytes
    source: HdlcAddress


HdlcEvent = LinkConnected | ApduReceived | LinkDisconnected | UnnumberedInformation


def _strip_llc(info: bytes, expected: bytes) -> bytes:
    if info[:3] == expected:
        return info[3:]
    # Some meters send E6 E6 00 in responses, or no LLC at all; be liberal in what we accept.
    if info[:2] in (b"\xe6\xe6", b"\xe6\xe7") and len(info) >= 3:
        return info[3:]
    return info


class LinkState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"


def _segments(payload: bytes, size: int) -> list[bytes]:
    if size < 1:
        raise EncodeError(f"HDLC max info length must be positive, not {size}")
    return [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]


# ------------------------------------------------------------------------------------ Client machine


@dataclass(slots=True)
class _Pending:
    """What the client is waiting for and what it would retransmit."""

    frame: bytes
    expect: str  # "ua", "response", "rr", "disc"


class HdlcClientConnection:
    """Client (primary station) side of one HDLC link to one server address.

    Usage, per request: ``connect()`` / ``send_apdu()`` / ``disconnect()`` return the bytes to write;
    ``receive_data()`` returns events and may queue more bytes (RR to fetch the next segment, the next
    segment of a long request), collected with ``data_to_send()``. When the caller's read times out it calls
    ``on_timeout()``, which returns bytes to retransmit or raises LinkTimeout once ``max_retries`` are spent.
    """

    def __init__(
        self,
        client: HdlcAddress,
        server: HdlcAddress,
        parameters: HdlcParameters | None = None,
        *,
        max_retries: int = 3,
        max_reassembled: int = MAX_REASSEMBLED_INFO,
    ) -> None:
        self.client = client
        self.server = server
        self.proposed = parameters or HdlcParameters()
        self.max_retries = max_retries
        self.max_reassembled = max_reassembled
        self.state = LinkState.DISCONNECTED
        self.negotiated = LinkConnected(
            DEFAULT_MAX_INFO_LENGTH, DEFAULT_MAX_INFO_LENGTH, DEFAULT_WINDOW_SIZE, DEFAULT_WINDOW_SIZE
        )
        self._decoder = HdlcStreamDecoder()
        self._send_seq = 0  # V(S)
        self._recv_seq = 0  # V(R)
        self._outbox = bytearray()
        self._pending: _Pending | None = None
        self._retries = 0
        self._tx_segments: list[bytes] = []
        self._rx_parts: list[bytes] = []
        self._rx_octets = 0
        self.frames_ignored = 0

    # -- outgoing ---------------------------------------------------------------------------------

    def _frame(self, control: int, information: bytes = b"", segmented: bool = False) -> bytes:
        return HdlcFrame(self.server, self.client, control, information, segmented).encode()

    def _arm(self, frame: bytes, expect: str) -> bytes:
        self._pending = _Pending(frame, expect)
        self._retries = 0
        return frame

    def connect(self) -> bytes:
        """SNRM with our parameters. Resets sequence numbers."""
        self.state = LinkState.CONNECTING
        self._send_seq = self._recv_seq = 0
        info = b"" if self.proposed == HdlcParameters() else self.proposed.encode()
        return self._arm(self._frame(control_octet(FrameKind.SNRM), info), "ua")

    def disconnect(self) -> bytes:
        self.state = LinkState.DISCONNECTING
        return self._arm(self._frame(control_octet(FrameKind.DISC)), "disc")

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def send_apdu(self, apdu: bytes) -> bytes:
        """Bytes of the first (or only) I-frame carrying ``apdu``; later segments follow RRs."""
        if self.state is not LinkState.CONNECTED:
            raise LinkError(f"HDLC link to server {self.server} is {self.state.value}, not connected")
        if self._pending is not None:
            raise LinkError(f"HDLC link to server {self.server} already has a request outstanding")
        self._rx_parts, self._rx_octets = [], 0
        self._tx_segments = _segments(LLC_REQUEST + apdu, self.negotiated.max_info_transmit)
        return self._send_next_segment()

    def _send_next_segment(self) -> bytes:
        information = self._tx_segments.pop(0)
        more = bool(self._tx_segments)
        control = control_octet(FrameKind.I, send_seq=self._send_seq, recv_seq=self._recv_seq)
        frame = self._frame(control, information, segmented=more)
        self._send_seq = (self._send_seq + 1) & 7
        return self._arm(frame, "rr" if more else "response")

    def data_to_send(self) -> bytes:
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def on_timeout(self) -> bytes:
        """Nothing (complete) arrived in time: what to send again. Raises LinkTimeout when out of retries."""
        if self._pending is None:
            raise LinkTimeout(f"HDLC server {self.server}: timeout with nothing outstanding")
        self._retries += 1
        if self._retries > self.max_retries:
            expect = self._pending.expect
            self._pending = None
            if expect == "disc":
                self.state = LinkState.DISCONNECTED
            raise LinkTimeout(
                f"HDLC server {self.server} did not answer ({expect}) after {self.max_retries} retries"
            )
        if self._pending.expect in ("response", "rr"):
            # Poll: the server either repeats its last frame (our I-frame arrived, its answer got lost) or
            # answers RR with the N(R) it still expects (our I-frame got lost), and we resend.
            return self._frame(control_octet(FrameKind.RR, recv_seq=self._recv_seq))
        return self._pending.frame

    # -- incoming ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[HdlcEvent]:
        events: list[HdlcEvent] = []
        for frame in self._decoder.feed(data):
            # Echo of our own frames (optical heads, RS-485 adapters) and other stations' traffic.
            if frame.destination != self.client or frame.source.logical != self.server.logical:
                self.frames_ignored += 1
                continue
            if self.server.physical is not None and frame.source.physical not in (None, self.server.physical):
                self.frames_ignored += 1
                continue
            events.extend(self._handle(frame))
        return events

    def _handle(self, frame: HdlcFrame) -> list[HdlcEvent]:
        kind = frame.kind
        pending = self._pending
        expect = pending.expect if pending else None
        if kind is FrameKind.UA:
            if expect == "ua":
                params = HdlcParameters.decode(frame.information)
                if params.max_info_transmit < 1 or params.max_info_receive < 1:
                    # Nothing could be segmented to a zero-octet information field.
                    self._pending = None
                    self.state = LinkState.DISCONNECTED
                    raise LinkError(
                        f"HDLC server {self.server} announced a zero max info length in its UA "
                        f"(transmit {params.max_info_transmit}, receive {params.max_info_receive})"
                    )
                # The server states its own limits: what it transmits is what we receive.
                self.negotiated = LinkConnected(
                    max_info_transmit=min(self.proposed.max_info_transmit, params.max_info_receive),
                    max_info_receive=min(self.proposed.max_info_receive, params.max_info_transmit),
                    window_transmit=min(self.proposed.window_transmit, params.window_receive),
                    window_receive=min(self.proposed.window_receive, params.window_transmit),
                )
                self.state = LinkState.CONNECTED
                self._pending = None
                return [self.negotiated]
            if expect == "disc":
                return self._disconnected("UA")
            self.frames_ignored += 1
            return []
        if kind is FrameKind.DM:
            if expect == "ua":
                self._pending = None
                self.state = LinkState.DISCONNECTED
                raise LinkError(f"HDLC server {self.server} refused the connection (DM to SNRM)")
            return self._disconnected("DM")
        if kind is FrameKind.FRMR:
            self._pending = None
            self.state = LinkState.DISCONNECTED
            raise LinkError(f"HDLC server {self.server} rejected a frame (FRMR {frame.information.hex()})")
        if kind is FrameKind.UI:
            return [UnnumberedInformation(frame.information, frame.source)]
        if kind in (FrameKind.RR, FrameKind.RNR):
            return self._on_rr(frame)
        if kind is FrameKind.I:
            return self._on_i(frame)
        self.frames_ignored += 1
        return []

    def _disconnected(self, reason: str) -> list[HdlcEvent]:
        self._pending = None
        self.state = LinkState.DISCONNECTED
        return [LinkDisconnected(reason)]

    def _on_rr(self, frame: HdlcFrame) -> list[HdlcEvent]:
        pending = self._pending
        if pending is None or pending.expect not in ("rr", "response"):
            self.frames_ignored += 1
            return []
        last_sent = (self._send_seq - 1) & 7
        if frame.recv_seq == last_sent:
            # Our last I-frame never arrived: send it again (counts as a retry).
            self._retries += 1
            if self._retries > self.max_retries:
                self._pending = None
                raise LinkTimeout(f"HDLC server {self.server} keeps missing our frame N(S)={last_sent}")
            self._outbox += pending.frame
            return []
        if frame.recv_seq == self._send_seq and pending.expect == "rr":
            if frame.kind is FrameKind.RNR:
                return []
            self._outbox += self._send_next_segment()
        return []

    def _on_i(self, frame: HdlcFrame) -> list[HdlcEvent]:
        pending = self._pending
        if pending is None or pending.expect not in ("response", "rr"):
            self.frames_ignored += 1
            return []
        if frame.send_seq != self._recv_seq:
            # A repeat of a frame we already have (our RR got lost): ask again for the one we need.
            self._outbox += self._frame(control_octet(FrameKind.RR, recv_seq=self._recv_seq))
            return []
        if pending.expect == "rr":
            # A server answering before our last segment is a protocol violation; take it as the answer.
            self._tx_segments = []
        self._recv_seq = (self._recv_seq + 1) & 7
        self._rx_parts.append(frame.information)
        self._rx_octets += len(frame.information)
        if self._rx_octets > self.max_reassembled:
            self._pending, self._rx_parts = None, []
            self.state = LinkState.DISCONNECTED
            raise LinkError(
                f"HDLC server {self.server} sent a segmented response of more than {self.max_reassembled} "
                "octets without a last segment"
            )
        if frame.segmented:
            rr = self._frame(control_octet(FrameKind.RR, recv_seq=self._recv_seq))
            self._outbox += self._arm(rr, "response")
            return []
        self._pending = None
        apdu = _strip_llc(b"".join(self._rx_parts), LLC_RESPONSE)
        self._rx_parts, self._rx_octets = [], 0
        return [ApduReceived(apdu, frame.source)]


# ------------------------------------------------------------------------------------ Server machine


@dataclass(slots=True)
class _ServerLink:
    state: LinkState = LinkState.DISCONNECTED
    send_seq: int = 0
    recv_seq: int = 0
    max_info_transmit: int = DEFAULT_MAX_INFO_LENGTH
    rx_parts: list[bytes] = field(default_factory=list)
    tx_segments: list[bytes] = field(default_factory=list)
    last_frame: bytes = b""


class HdlcServerConnection:
    """Server (secondary station) side for one server address and any number of client addresses.

    ``receive_data()`` returns ``ApduReceived`` events (and queues link replies such as UA, RR, DM); the
    application answers each with ``send_apdu(client, apdu)``. Frames for other server addresses are ignored,
    so several instances can share one bus, each fed the same bytes.
    """

    def __init__(
        self,
        server: HdlcAddress,
        parameters: HdlcParameters | None = None,
    ) -> None:
        self.server = server
        self.parameters = parameters or HdlcParameters(max_info_transmit=512, max_info_receive=512)
        self._decoder = HdlcStreamDecoder()
        self._links: dict[int, _ServerLink] = {}
        self._outbox = bytearray()
        self.frames_ignored = 0

    def is_connected(self, client: HdlcAddress) -> bool:
        link = self._links.get(client.logical)
        return link is not None and link.state is LinkState.CONNECTED

    def accepts(self, destination: HdlcAddress) -> bool:
        if destination.logical != self.server.logical:
            # 0x7F / 0x3FFF is the all-station broadcast; answering it on a shared bus would collide.
            return False
        return self.server.physical is None or destination.physical in (None, self.server.physical)

    def data_to_send(self) -> bytes:
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def receive_data(self, data: bytes) -> list[HdlcEvent]:
        events: list[HdlcEvent] = []
        for frame in self._decoder.feed(data):
            events.extend(self.receive_frame(frame))
        return events

    def receive_frame(self, frame: HdlcFrame) -> list[HdlcEvent]:
        """Handle one already-decoded frame (used when a bus dispatcher decodes once for many servers)."""
        if not self.accepts(frame.destination):
            self.frames_ignored += 1
            return []
        client = frame.source
        link = self._links.setdefault(client.logical, _ServerLink())
        kind = frame.kind
        if kind is FrameKind.SNRM:
            return self._on_snrm(client, link, frame)
        if kind is FrameKind.DISC:
            was_connected = link.state is LinkState.CONNECTED
            self._send(client, control_octet(FrameKind.UA if was_connected else FrameKind.DM))
            self._links.pop(client.logical, None)
            return [LinkDisconnected("DISC")] if was_connected else []
        if link.state is not LinkState.CONNECTED:
            self._send(client, control_octet(FrameKind.DM))
            return []
        if kind is FrameKind.I:
            return self._on_i(client, link, frame)
        if kind in (FrameKind.RR, FrameKind.RNR):
            self._on_rr(client, link, frame)
            return []
        self.frames_ignored += 1
        return []

    def _send(self, client: HdlcAddress, control: int, info: bytes = b"", segmented: bool = False) -> bytes:
        frame = HdlcFrame(client, self.server, control, info, segmented).encode()
        self._outbox += frame
        return frame

    def _on_snrm(self, client: HdlcAddress, link: _ServerLink, frame: HdlcFrame) -> list[HdlcEvent]:
        try:
            proposed = HdlcParameters.decode(frame.information)
        except DecodeError:
            self._send(client, control_octet(FrameKind.FRMR))
            return []
        ours = self.parameters
        agreed = HdlcParameters(
            max_info_transmit=min(ours.max_info_transmit, proposed.max_info_receive),
            max_info_receive=min(ours.max_info_receive, proposed.max_info_transmit),
            window_transmit=min(ours.window_transmit, proposed.window_receive),
            window_receive=min(ours.window_receive, proposed.window_transmit),
        )
        link.state = LinkState.CONNECTED
        link.send_seq = link.recv_seq = 0
        link.rx_parts, link.tx_segments, link.last_frame = [], [], b""
        link.max_info_transmit = agreed.max_info_transmit
        self._send(client, control_octet(FrameKind.UA), agreed.encode())
        return [LinkConnected(agreed.max_info_transmit, agreed.max_info_receive, 1, 1)]

    def _on_i(self, client: HdlcAddress, link: _ServerLink, frame: HdlcFrame) -> list[HdlcEvent]:
        if frame.send_seq != link.recv_seq:
            if frame.send_seq == (link.recv_seq - 1) & 7 and link.last_frame:
                # The client repeated a frame we already took: our answer got lost, send it again.
                self._outbox += link.last_frame
            else:
                link.last_frame = self._send(client, control_octet(FrameKind.RR, recv_seq=link.recv_seq))
            return []
        link.recv_seq = (link.recv_seq + 1) & 7
        link.rx_parts.append(frame.information)
        if frame.segmented:
            link.last_frame = self._send(client, control_octet(FrameKind.RR, recv_seq=link.recv_seq))
            return []
        apdu = _strip_llc(b"".join(link.rx_parts), LLC_REQUEST)
        link.rx_parts = []
        return [ApduReceived(apdu, client)]

    def _on_rr(self, client: HdlcAddress, link: _ServerLink, frame: HdlcFrame) -> None:
        if frame.recv_seq == link.send_seq and link.tx_segments:
            self._send_next_segment(client, link)
        elif frame.recv_seq == (link.send_seq - 1) & 7 and link.last_frame:
            self._outbox += link.last_frame  # the client missed our last frame
        else:
            link.last_frame = self._send(client, control_octet(FrameKind.RR, recv_seq=link.recv_seq))

    def send_apdu(self, client: HdlcAddress, apdu: bytes) -> None:
        """Queue the response APDU to ``client`` (segmented when longer than the negotiated size); the
        first frame is then in ``data_to_send()``, later segments follow the client's RRs."""
        link = self._links.get(client.logical)
        if link is None or link.state is not LinkState.CONNECTED:
            raise LinkError(f"HDLC client {client} is not connected to server {self.server}")
        link.tx_segments = _segments(LLC_RESPONSE + apdu, link.max_info_transmit)
        self._send_next_segment(client, link)

    def _send_next_segment(self, client: HdlcAddress, link: _ServerLink) -> None:
        information = link.tx_segments.pop(0)
        control = control_octet(FrameKind.I, send_seq=link.send_seq, recv_seq=link.recv_seq)
        link.last_frame = self._send(client, control, information, segmented=bool(link.tx_segments))
        link.send_seq = (link.send_seq + 1) & 7
