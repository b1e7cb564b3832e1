"""Async IEC 62056-21 mode C driver: runs ``ModeCClient`` over a byte transport and maps data sets to keys.

Transports:

* ``TcpByteTransport``: an optical head or serial server reachable over TCP (``iec21+tcp://HOST:PORT``);
  the baud rate switch is a no-op there.
* ``SerialByteTransport``: a local port through pyserial (``iec21:///dev/ttyUSB0``), 7E1 by default as the
  standard requires, with the baud rate switched after the option select. ``framing="8N1"`` is for ptys
  and adapters that cannot do 7E1 (the protocol is 7-bit ASCII, so 8N1 carries it unchanged).

The read is one mode C session: sign-on, identification, option select, full readout. IEC 62056-21 has no
register addressing in readout mode, so every ``read`` gets the whole readout and picks the mapped keys.
A key is mapped to one data set (``"1.8.0"``) or, for the meter clock, to an :class:`Iec21Clock`: mode C
meters print time (0.9.1) and date (0.9.2) as two data sets, which the driver combines into one ISO 8601
value. With a ``guard`` (the bus arbiter's) the whole session runs as one transaction, so meters that share
a serial or optical port are never read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from villageami.meters.driver import (
    ActionResult,
    KeyRead,
    MeterAction,
    MeterDriver,
    MeterError,
    MeterUnreachable,
    Scalar,
)
from villageami.meters.iec62056_21 import (
    DataSet,
    Iec21DecodeError,
    Iec21Error,
    Iec21Timeout,
    ModeCClient,
    ReadoutAddress,
    ReadoutComplete,
    SendBytes,
    SwitchBaudRate,
    combine_readout_clock,
    find_data_set,
)

Guard = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def _direct(op: Callable[[], Awaitable[Any]]) -> Any:
    return await op()


@dataclass(frozen=True, slots=True)
class Iec21Clock:
    """A clock printed as two data sets: ``time`` (commonly 0.9.1) and ``date`` (commonly 0.9.2).

    Meters print local time; ``utc_offset`` is that time's fixed offset from UTC when the profile knows it.
    Without it the combined value has no offset and normalisation publishes it as suspect.
    """

    time: str
    date: str
    utc_offset: timedelta | None = None

    @property
    def source(self) -> str:
        return f"iec21:{self.time}+{self.date}"


class ByteTransport(Protocol):
    """A raw byte path to one meter."""

    async def open(self) -> None:
        """Connect. Raises MeterUnreachable when the far end is not there. Idempotent."""
        ...

    async def write(self, data: bytes) -> None:
        """Write and wait until the bytes have left (so a baud switch after it does not cut them)."""
        ...

    async def read_some(self, timeout: float) -> bytes:
        """At least one byte, or TimeoutError after ``timeout`` s of silence; MeterUnreachable on EOF."""
        ...

    async def set_baud_rate(self, baud_rate: int) -> None:
        """Switch the local line speed (no-op where there is no UART)."""
        ...

    async def close(self) -> None:
        """Release the link. Never raises."""
        ...


class TcpByteTransport:
    """IEC 62056-21 over a TCP byte stream (serial server, simulator)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.baud_rate = 300
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def __repr__(self) -> str:
        return f"TcpByteTransport({self.host}:{self.port})"

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise MeterUnreachable(
                f"IEC 62056-21 meter at tcp://{self.host}:{self.port} not reachable: {exc or 'timeout'}"
            ) from exc

    def _require(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise MeterUnreachable(f"IEC 62056-21 link to {self.host}:{self.port} is not open")
        return self._reader, self._writer

    async def write(self, data: bytes) -> None:
        _, writer = self._require()
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise MeterUnreachable(
                f"writing to IEC 62056-21 meter at {self.host}:{self.port} failed"
            ) from exc

    async def read_some(self, timeout: float) -> bytes:
        reader, _ = self._require()
        try:
            data = await asyncio.wait_for(reader.read(4096), timeout)
        except TimeoutError:
            raise  # silence, for the state machine to handle (TimeoutError is an OSError subclass)
        except OSError as exc:
            raise MeterUnreachable(f"IEC 62056-21 link to {self.host}:{self.port} failed: {exc}") from exc
        if not data:
            raise MeterUnreachable(f"IEC 62056-21 meter at {self.host}:{self.port} closed the connection")
        return data

    async def set_baud_rate(self, baud_rate: int) -> None:
        self.baud_rate = baud_rate

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


_FRAMINGS: dict[str, tuple[int, str, int]] = {
    # name -> (bytesize, parity, stopbits) as pyserial constants
    "7E1": (7, "E", 1),
    "8N1": (8, "N", 1),
}


class SerialByteTransport:
    """IEC 62056-21 over a local serial port (pyserial). Blocking calls run in a thread, each bounded."""

    # pyserial's read timeout inside the worker thread; short so a cancelled read ends promptly.
    POLL_INTERVAL = 0.05

    def __init__(self, port: str, *, framing: str = "7E1", open_timeout: float = 5.0) -> None:
        if framing not in _FRAMINGS:
            raise MeterError(
                f"unsupported serial framing {framing!r} for {port} (use one of {sorted(_FRAMINGS)})"
            )
        self.port = port
        self.framing = framing
        self.open_timeout = open_timeout
        self._serial: Any = None

    def __repr__(self) -> str:
        return f"SerialByteTransport({self.port}, {self.framing})"

    async def open(self) -> None:
        if self._serial is not None:
            return
        import serial  # imported here: only serial users need the port machinery initialised

        bytesize, parity, stopbits = _FRAMINGS[self.framing]

        def _open() -> Any:
            return serial.serial_for_url(
                self.port,
                baudrate=300,
                bytesize=bytesize,
                parity=parity,
                stopbits=stopbits,
                timeout=self.POLL_INTERVAL,
                write_timeout=self.open_timeout,
            )

        try:
            self._serial = await asyncio.wait_for(asyncio.to_thread(_open), self.open_timeout)
        except (OSError, ValueError, TimeoutError, serial.SerialException) as exc:
            raise MeterUnreachable(f"cannot open serial port {self.port} ({self.framing}): {exc}") from exc

    def _require(self) -> Any:
        if self._serial is None:
            raise MeterUnreachable(f"serial port {self.port} is not open")
        return self._serial

    async def write(self, data: bytes) -> None:
        port = self._require()

        def _write() -> None:
            port.write(data)
            port.flush()  # wait until sent: a baud switch must not cut the option select short

        try:
            await asyncio.wait_for(asyncio.to_thread(_write), self.open_timeout)
        except (OSError, TimeoutError) as exc:
            raise MeterUnreachable(f"writing to serial port {self.port} failed: {exc}") from exc

    async def read_some(self, timeout: float) -> bytes:
        port = self._require()
        deadline = time.monotonic() + timeout

        def _read() -> bytes:
            return bytes(port.read(max(1, port.in_waiting)))

        while True:
            try:
                data = await asyncio.to_thread(_read)
            except OSError as exc:
                raise MeterUnreachable(f"reading serial port {self.port} failed: {exc}") from exc
            if data:
                return data
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no data on {self.port} within {timeout} s")

    async def set_baud_rate(self, baud_rate: int) -> None:
        port = self._require()
        port.baudrate = baud_rate

    @property
    def baud_rate(self) -> int:
        return int(self._require().baudrate)

    async def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)


def transport_for_url(url: str) -> ByteTransport:
    """``iec21+tcp://HOST:PORT`` or ``iec21:///dev/ttyX[?framing=8N1]`` (``iec21:loop://`` for tests)."""
    parts = urlsplit(url)
    if parts.scheme == "iec21+tcp":
        if not parts.hostname or parts.port is None:
            raise MeterError(f"IEC 62056-21 TCP URL needs host and port: {url!r}")
        return TcpByteTransport(parts.hostname, parts.port)
    if parts.scheme == "iec21":
        framing = parse_qs(parts.query).get("framing", ["7E1"])[0].upper()
        device = parts.path if parts.path.startswith("/") else url.split(":", 1)[1].split("?", 1)[0]
        if not device:
            raise MeterError(f"IEC 62056-21 serial URL needs a device path: {url!r}")
        return SerialByteTransport(device, framing=framing)
    raise MeterError(f"not an IEC 62056-21 URL (iec21+tcp://HOST:PORT or iec21:///dev/ttyX): {url!r}")


def _printed(data_set: DataSet) -> str:
    """The line as the meter printed it (no re-validation: meters put "!" or "/" in text values)."""
    return data_set.address + "".join(
        f"({v.value})" if v.unit is None else f"({v.value}*{v.unit})" for v in data_set.values
    )


def value_of(data_set: DataSet) -> Scalar | None:
    """Numbers become float when the meter printed a unit or a decimal point; everything else stays text.

    Pure digit strings without a unit (serial numbers, status codes) keep their leading zeros as str.
    """
    first = data_set.values[0] if data_set.values else None
    if first is None or first.value.strip() == "":
        return None
    if first.is_numeric() and (first.unit is not None or "." in first.value):
        return float(first.as_decimal())
    return first.value.strip()


class Iec21Driver(MeterDriver):
    """Read-only IEC 62056-21 mode C driver.

    ``mapping`` is VMRS key -> data set address as the meter prints it ("1.8.0", "C.1.0", "1-0:32.7.0"), or
    an :class:`Iec21Clock` naming the time and date data sets of the meter clock.
    ``guard`` wraps each whole session (the bus arbiter's guard for the port; None talks directly).
    ``reply_timeout`` bounds each silence (first byte of a reply, or gap inside one); ``read_timeout`` bounds
    a whole session, which at 300 baud takes about 1 s per 30 characters of readout.
    ``turnaround_delay`` is the pause before answering the meter (IEC 62056-21 t_r >= 200 ms on a real line).
    """

    def __init__(
        self,
        transport: ByteTransport,
        mapping: Mapping[str, str | Iec21Clock],
        *,
        device_address: str = "",
        guard: Guard | None = None,
        reply_timeout: float = 2.0,
        read_timeout: float = 120.0,
        turnaround_delay: float = 0.2,
        max_baud_rate: int = 19200,
    ) -> None:
        for key, target in mapping.items():
            addresses = (target.time, target.date) if isinstance(target, Iec21Clock) else (target,)
            for address in addresses:
                try:
                    ReadoutAddress.parse(address)
                except Iec21DecodeError as exc:
                    raise MeterError(f"mapping for key {key!r}: {exc}") from exc
        self.transport = transport
        self.mapping = dict(mapping)
        self.device_address = device_address
        self._guard = guard or _direct
        self.reply_timeout = reply_timeout
        self.read_timeout = read_timeout
        self.turnaround_delay = turnaround_delay
        self.max_baud_rate = max_baud_rate
        # Set once a meter ignored the rate it offered: later sessions stay at 300 baud.
        self.stay_at_300 = False
        self.last_identification: str | None = None
        self.last_baud_rate: int | None = None

    async def connect(self) -> None:
        await self.transport.open()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.transport.close()

    async def act(self, action: MeterAction, params: Mapping[str, Any] | None = None) -> ActionResult:
        raise MeterError(f"{action.value} is not supported by IEC 62056-21 readout")

    async def read_readout(self) -> ReadoutComplete:
        """Run one mode C session (under the guard, if any) and return the whole readout."""
        result: ReadoutComplete = await self._guard(self._read_readout)
        return result

    async def _read_readout(self) -> ReadoutComplete:
        await self.transport.open()
        client = ModeCClient(
            self.device_address, max_baud_rate=self.max_baud_rate, stay_at_300=self.stay_at_300
        )
        try:
            result = await asyncio.wait_for(self._session(client), self.read_timeout)
        except TimeoutError as exc:
            raise MeterUnreachable(
                f"IEC 62056-21 readout from {self.transport!r} not complete within {self.read_timeout} s"
            ) from exc
        except Iec21Timeout as exc:
            raise MeterUnreachable(f"IEC 62056-21 meter at {self.transport!r}: {exc}") from exc
        except Iec21Error as exc:
            raise MeterError(f"IEC 62056-21 meter at {self.transport!r} sent a bad message: {exc}") from exc
        if client.fallback_used:
            self.stay_at_300 = True
        ident = result.identification
        self.last_identification = f"{ident.manufacturer}{ident.baud_char}{ident.identification}"
        self.last_baud_rate = result.baud_rate
        return result

    async def _session(self, client: ModeCClient) -> ReadoutComplete:
        actions = client.start()
        while True:
            for action in actions:
                if isinstance(action, ReadoutComplete):
                    return action
                if isinstance(action, SwitchBaudRate):
                    await self.transport.set_baud_rate(action.baud_rate)
                elif isinstance(action, SendBytes):
                    if self.turnaround_delay and client.identification is not None:
                        await asyncio.sleep(self.turnaround_delay)
                    await self.transport.write(action.data)
            try:
                data = await self.transport.read_some(self.reply_timeout)
            except TimeoutError:
                actions = client.timed_out()
                continue
            actions = client.receive_data(data)

    async def read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        readout = await self.read_readout()
        read_at = datetime.now(UTC)
        results: dict[str, KeyRead] = {}
        for key in keys:
            target = self.mapping.get(key)
            if target is None:
                results[key] = KeyRead(
                    key, None, None, read_at, error=f"no IEC 62056-21 data set mapped for key {key!r}"
                )
            elif isinstance(target, Iec21Clock):
                results[key] = _clock_read(key, target, readout.data_sets, read_at)
            else:
                results[key] = _data_set_read(key, target, readout.data_sets, read_at)
        return results


def _data_set_read(key: str, address: str, data_sets: Sequence[DataSet], read_at: datetime) -> KeyRead:
    data_set = find_data_set(data_sets, address)
    if data_set is None:
        return KeyRead(
            key,
            None,
            None,
            read_at,
            error=f"data set {address!r} not in the meter's readout",
            source=f"iec21:{address}",
        )
    value = value_of(data_set)
    return KeyRead(
        key=key,
        value=value,
        unit=data_set.unit,
        read_at=read_at,
        raw=_printed(data_set),
        error=None if value is not None else f"data set {address!r} is empty in the readout",
        source=f"iec21:{data_set.address}",
    )


def _clock_read(key: str, clock: Iec21Clock, data_sets: Sequence[DataSet], read_at: datetime) -> KeyRead:
    """Time and date data sets -> one ISO 8601 value (naive when the offset is unknown) or a per-key error."""
    what = f"clock data sets {clock.time!r} (time) and {clock.date!r} (date)"
    time_set = find_data_set(data_sets, clock.time)
    date_set = find_data_set(data_sets, clock.date)
    missing = [a for a, ds in ((clock.time, time_set), (clock.date, date_set)) if ds is None]
    if time_set is None or date_set is None:
        error = f"{what}: {' and '.join(repr(a) for a in missing)} not in the meter's readout"
        return KeyRead(key, None, None, read_at, error=error, source=clock.source)
    raw = _printed(time_set) + " " + _printed(date_set)
    try:
        moment = combine_readout_clock(time_set.value or "", date_set.value or "", clock.utc_offset)
    except Iec21DecodeError as exc:
        return KeyRead(key, None, None, read_at, raw=raw, error=f"{what}: {exc}", source=clock.source)
    # ISO 8601 text like the DLMS driver's clock; normalisation marks a value without offset as suspect.
    return KeyRead(key, moment.isoformat(timespec="seconds"), None, read_at, raw=raw, source=clock.source)
