"""DLMS/COSEM transport wrapper for TCP and UDP (IEC 62056-47), sans-IO.

Each APDU travels behind an 8-octet header::

    version (0x0001) | source wPort | destination wPort | length of the APDU    (all big-endian uint16)

wPorts play the part of HDLC addresses: the client's SAP (16 public, 17 management, 1 HLS) and the
server's logical device (1 management, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from villageami.dlms.errors import DecodeError, EncodeError

WRAPPER_VERSION = 0x0001
HEADER_LENGTH = 8
MAX_PAYLOAD = 0xFFFF


@dataclass(frozen=True, slots=True)
class WrapperPdu:
    """One wrapper PDU: header fields and the APDU it carries."""

    source_wport: int
    destination_wport: int
    payload: bytes
    version: int = WRAPPER_VERSION

    @property
    def length(self) -> int:
        return len(self.payload)

    def encode(self) -> bytes:
        wports = (("source wPort", self.source_wport), ("destination wPort", self.destination_wport))
        for name, value in wports:
            if not 0 <= value <= 0xFFFF:
                raise EncodeError(f"wrapper {name} {value} does not fit 16 bits")
        if len(self.payload) > MAX_PAYLOAD:
            raise EncodeError(f"wrapper payload of {len(self.payload)} octets exceeds 65535")
        return (
            self.version.to_bytes(2, "big")
            + self.source_wport.to_bytes(2, "big")
            + self.destination_wport.to_bytes(2, "big")
            + len(self.payload).to_bytes(2, "big")
            + self.payload
        )


def _check_header(
    header: bytes,
    *,
    expect_source: int | None,
    expect_destination: int | None,
    max_length: int,
) -> tuple[int, int, int]:
    version = int.from_bytes(header[0:2], "big")
    source = int.from_bytes(header[2:4], "big")
    destination = int.from_bytes(header[4:6], "big")
    length = int.from_bytes(header[6:8], "big")
    if version != WRAPPER_VERSION:
        raise DecodeError(f"wrapper version {version} is not 1 in header {header.hex()}")
    if expect_source is not None and source != expect_source:
        raise DecodeError(f"wrapper source wPort {source} is not {expect_source} ({header.hex()})")
    if expect_destination is not None and destination != expect_destination:
        raise DecodeError(
            f"wrapper destination wPort {destination} is not {expect_destination} ({header.hex()})"
        )
    if length > max_length:
        raise DecodeError(f"wrapper length {length} exceeds the limit {max_length} ({header.hex()})")
    return source, destination, length


def decode_wrapper(
    data: bytes,
    *,
    expect_source: int | None = None,
    expect_destination: int | None = None,
    max_length: int = MAX_PAYLOAD,
) -> WrapperPdu:
    """Decode exactly one wrapper PDU. Raises DecodeError on a bad header, a length that does not match
    the data, or a wPort other than the expected one (when given)."""
    raw = bytes(data)
    if len(raw) < HEADER_LENGTH:
        raise DecodeError(f"wrapper PDU of {len(raw)} octets is shorter than its 8-octet header: {raw.hex()}")
    source, destination, length = _check_header(
        raw[:HEADER_LENGTH],
        expect_source=expect_source,
        expect_destination=expect_destination,
        max_length=max_length,
    )
    if length != len(raw) - HEADER_LENGTH:
        raise DecodeError(
            f"wrapper length field says {length} octets but {len(raw) - HEADER_LENGTH} follow the header"
        )
    return WrapperPdu(source, destination, raw[HEADER_LENGTH:])


class WrapperStreamDecoder:
    """Split a TCP byte stream into wrapper PDUs (several per read, or one across several reads).

    A bad header cannot be resynchronised (the wrapper has no flag), so it raises DecodeError and the
    caller should drop the connection.
    """

    def __init__(
        self,
        *,
        expect_source: int | None = None,
        expect_destination: int | None = None,
        max_length: int = MAX_PAYLOAD,
    ) -> None:
        self._buffer = bytearray()
        self._expect_source = expect_source
        self._expect_destination = expect_destination
        self._max_length = max_length

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[WrapperPdu]:
        self._buffer += data
        return list(self._drain())

    def _drain(self) -> Iterator[WrapperPdu]:
        while len(self._buffer) >= HEADER_LENGTH:
            header = bytes(self._buffer[:HEADER_LENGTH])
            try:
                source, destination, length = _check_header(
                    header,
                    expect_source=self._expect_source,
                    expect_destination=self._expect_destination,
                    max_length=self._max_length,
                )
            except DecodeError:
                self._buffer.clear()
                raise
            if len(self._buffer) < HEADER_LENGTH + length:
                return
            payload = bytes(self._buffer[HEADER_LENGTH : HEADER_LENGTH + length])
            del self._buffer[: HEADER_LENGTH + length]
            yield WrapperPdu(source, destination, payload)
