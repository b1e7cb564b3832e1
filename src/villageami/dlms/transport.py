"""Thin asyncio transports implementing :class:`villageami.dlms.link.ApduLink`.

- :class:`WrapperLink`: the IEC 62056-47 wrapper over TCP (:func:`tcp_wrapper_link`);
- :class:`HdlcLink`: HDLC over any byte stream, TCP (:func:`hdlc_tcp_link`) or a serial port at a set baud
  rate, 8N1 (:func:`hdlc_serial_link`).

The protocol logic lives in the sans-IO modules (``hdlc``, ``wrapper``); this module only moves bytes and
bounds every wait: connecting, each frame (retried ``max_retries`` times by the HDLC machine) and the whole
exchange (the ``timeout`` the caller passes). A dead meter therefore ends in LinkTimeout, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from villageami.dlms.errors import DecodeError, LinkError, LinkTimeout
from villageami.dlms.hdlc import (
    ApduReceived,
    HdlcAddress,
    HdlcClientConnection,
    HdlcParameters,
    LinkConnected,
    LinkDisconnected,
    LinkState,
    client_address,
    server_address,
)
from villageami.dlms.wrapper import WrapperPdu, WrapperStreamDecoder

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_FRAME_TIMEOUT = 1.5
DEFAULT_OPEN_TIMEOUT = 10.0


class ByteStream(Protocol):
    """A bidirectional byte pipe (TCP socket, serial port)."""

    description: str

    async def read(self, timeout: float) -> bytes:
        """Return at least one byte, or b"" when ``timeout`` passes first. Raises LinkError on EOF."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class TcpByteStream:
    """An asyncio TCP connection."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.host, self.port = host, port
        self.description = f"tcp://{host}:{port}"
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except TimeoutError as exc:
            raise LinkTimeout(
                f"connecting to {self.description} timed out after {self.connect_timeout}s"
            ) from exc
        except OSError as exc:
            raise LinkError(f"cannot connect to {self.description}: {exc}") from exc

    async def read(self, timeout: float) -> bytes:
        if self._reader is None:
            raise LinkError(f"{self.description} is not connected")
        try:
            data = await asyncio.wait_for(self._reader.read(4096), max(timeout, 0.0))
        except TimeoutError:
            return b""
        except OSError as exc:
            raise LinkError(f"reading from {self.description} failed: {exc}") from exc
        if not data:
            raise LinkError(f"{self.description} closed the connection")
        return data

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            raise LinkError(f"{self.description} is not connected")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"writing to {self.description} failed: {exc!r}") from exc

    def abort(self) -> None:
        """Drop the connection at once, without waiting (for a cancelled caller, which must not await)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


class SerialByteStream:
    """A serial port (pyserial), 8N1 at ``baud``. Blocking reads run in a worker thread with a short port
    timeout, so each read returns within ``poll_interval`` and the asyncio timeout stays exact."""

    def __init__(self, device: str, baud: int = 9600, *, poll_interval: float = 0.02) -> None:
        self.device, self.baud = device, baud
        self.description = f"serial://{device}@{baud}"
        self.poll_interval = poll_interval
        self._port: Any = None

    async def connect(self) -> None:
        import serial  # pyserial; imported here so TCP-only users do not need a serial stack

        def _open() -> Any:
            return serial.serial_for_url(
                self.device,
                baudrate=self.baud,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=self.poll_interval,
                write_timeout=5.0,
            )

        try:
            self._port = await asyncio.wait_for(asyncio.to_thread(_open), DEFAULT_CONNECT_TIMEOUT)
        except TimeoutError as exc:
            raise LinkTimeout(f"opening {self.description} timed out") from exc
        except (OSError, ValueError, serial.SerialException) as exc:
            raise LinkError(f"cannot open {self.description}: {exc}") from exc

    def _read_some(self) -> bytes:
        port = self._port
        waiting = port.in_waiting
        data: bytes = port.read(max(1, waiting))
        return data

    async def read(self, timeout: float) -> bytes:
        if self._port is None:
            raise LinkError(f"{self.description} is not open")
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = await asyncio.to_thread(self._read_some)
            except Exception as exc:  # pyserial raises SerialException/OSError/TypeError on a vanished device
                raise LinkError(f"reading from {self.description} failed: {exc}") from exc
            if data:
                return data
            if time.monotonic() >= deadline:
                return b""

    async def write(self, data: bytes) -> None:
        if self._port is None:
            raise LinkError(f"{self.description} is not open")
        try:
            await asyncio.to_thread(self._port.write, data)
        except Exception as exc:
            raise LinkError(f"writing to {self.description} failed: {exc}") from exc

    async def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)


# -------------------------------------------------------------------------------------------- Wrapper


class WrapperLink:
    """ApduLink over the IEC 62056-47 wrapper on TCP. TCP is reliable, so there are no link retries: a
    missing answer is LinkTimeout after ``timeout``, and the connection is dropped (the stream would be out
    of step). Concurrent callers are served one exchange at a time. A caller cancelled mid-exchange drops
    the connection too, so its late answer can never be taken for the next request's."""

    def __init__(self, stream: TcpByteStream, *, client_wport: int = 16, server_wport: int = 1) -> None:
        self.stream = stream
        self.client_wport, self.server_wport = client_wport, server_wport
        self._decoder = WrapperStreamDecoder(expect_destination=client_wport)
        # APDUs decoded but not yet handed out: one TCP read can carry a push and the response together.
        self._received: deque[bytes] = deque()
        self._connected = False
        self._lock = asyncio.Lock()

    @property
    def description(self) -> str:
        return f"dlms+tcp://{self.stream.host}:{self.stream.port}?client={self.client_wport}&server={self.server_wport}"

    async def open(self) -> None:
        async with self._lock:
            await self._open()

    async def _open(self) -> None:
        if self._connected:
            return
        await self.stream.connect()
        self._decoder = WrapperStreamDecoder(expect_destination=self.client_wport)
        self._received.clear()
        self._connected = True

    async def exchange(self, apdu: bytes, timeout: float) -> bytes:
        pdu = WrapperPdu(self.client_wport, self.server_wport, apdu).encode()
        async with self._lock:
            try:
                await self._open()
                try:
                    await self.stream.write(pdu)
                except LinkError:
                    await self._close()
                    raise
                return await self._receive(timeout)
            except asyncio.CancelledError:
                self._abort()
                raise

    async def receive(self, timeout: float) -> bytes:
        """The server's next APDU (a response, or a push that overtook it), waiting at most ``timeout``."""
        async with self._lock:
            try:
                return await self._receive(timeout)
            except asyncio.CancelledError:
                self._abort()
                raise

    def _abort(self) -> None:
        self._connected = False
        self._received.clear()
        self.stream.abort()

    async def _receive(self, timeout: float) -> bytes:
        if self._received:
            return self._received.popleft()
        if not self._connected:
            raise LinkError(f"{self.description} is not connected")
        deadline = time.monotonic() + timeout
        try:
            while not self._received:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkTimeout(f"{self.description}: no answer within {timeout}s")
                data = await self.stream.read(remaining)
                self._received.extend(
                    pdu.payload for pdu in self._decoder.feed(data) if pdu.source_wport == self.server_wport
                )
        except DecodeError as exc:
            await self._close()
            raise LinkError(f"{self.description}: bad wrapper header from the meter: {exc}") from exc
        except LinkError:
            await self._close()
            raise
        return self._received.popleft()

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        self._connected = False
        self._received.clear()
        await self.stream.close()


# ----------------------------------------------------------------------------------------------- HDLC


@dataclass(frozen=True, slots=True)
class HdlcLinkSettings:
    client: HdlcAddress
    server: HdlcAddress
    parameters: HdlcParameters = field(default_factory=HdlcParameters)
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT  # wait per frame before a retry (poll/resend)
    max_retries: int = 3
    open_timeout: float = DEFAULT_OPEN_TIMEOUT  # bound on SNRM/UA incl. retries


class HdlcLink:
    """ApduLink over HDLC on a byte stream (TCP or serial). Drives :class:`HdlcClientConnection`."""

    def __init__(self, stream: TcpByteStream | SerialByteStream, settings: HdlcLinkSettings) -> None:
        self.stream = stream
        self.settings = settings
        self.connection = self._new_connection()
        self._stream_open = False
        self._lock = asyncio.Lock()

    def _new_connection(self) -> HdlcClientConnection:
        s = self.settings
        return HdlcClientConnection(s.client, s.server, s.parameters, max_retries=s.max_retries)

    @property
    def description(self) -> str:
        return f"HDLC {self.settings.client}->{self.settings.server} on {self.stream.description}"

    @property
    def negotiated(self) -> LinkConnected:
        return self.connection.negotiated

    async def open(self) -> None:
        async with self._lock:
            if self.connection.state is LinkState.CONNECTED:
                return
            if not self._stream_open:
                await self.stream.connect()
                self._stream_open = True
            self.connection = self._new_connection()
            try:
                await self._run(self.connection.connect(), LinkConnected, self.settings.open_timeout)
            except LinkError:
                await self._drop()
                raise

    async def exchange(self, apdu: bytes, timeout: float) -> bytes:
        if self.connection.state is not LinkState.CONNECTED:
            await self.open()
        async with self._lock:
            try:
                event = await self._run(self.connection.send_apdu(apdu), ApduReceived, timeout)
            except LinkError:
                # After a timeout the sequence numbers are unknown; start over with SNRM next time.
                await self._drop()
                raise
            except asyncio.CancelledError:
                # The caller gave up mid-exchange: its answer may still come. A fresh machine (state
                # disconnected) makes the next exchange send SNRM first, which resets the server's sequence
                # numbers; the late answer arrives while we wait for UA and is ignored.
                self.connection = self._new_connection()
                raise
            assert isinstance(event, ApduReceived)
            return event.apdu

    async def close(self) -> None:
        async with self._lock:
            if self.connection.state is LinkState.CONNECTED:
                with contextlib.suppress(LinkError):
                    await self._run(
                        self.connection.disconnect(), LinkDisconnected, self.settings.frame_timeout
                    )
            await self._drop()

    async def _drop(self) -> None:
        self.connection = self._new_connection()
        if self._stream_open:
            self._stream_open = False
            await self.stream.close()

    async def _run(self, first: bytes, want: type, timeout: float) -> object:
        """Write ``first``, then pump reads/writes until an event of type ``want`` or LinkTimeout."""
        connection = self.connection
        deadline = time.monotonic() + timeout
        await self.stream.write(first)
        frame_deadline = time.monotonic() + self.settings.frame_timeout
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise LinkTimeout(f"{self.description}: no complete answer within {timeout}s")
            data = await self.stream.read(min(frame_deadline, deadline) - now)
            if data:
                events = connection.receive_data(data)
                outgoing = connection.data_to_send()
                if outgoing:
                    await self.stream.write(outgoing)
                    frame_deadline = time.monotonic() + self.settings.frame_timeout
                for event in events:
                    if isinstance(event, want):
                        return event
                    if isinstance(event, LinkDisconnected) and want is not LinkDisconnected:
                        raise LinkError(f"{self.description}: the meter dropped the link ({event.reason})")
            elif time.monotonic() >= frame_deadline:
                try:
                    retry = connection.on_timeout()
                except LinkTimeout as exc:
                    raise LinkTimeout(f"{self.description}: {exc}") from exc
                await self.stream.write(retry)
                frame_deadline = time.monotonic() + self.settings.frame_timeout


# ------------------------------------------------------------------------------------- Constructors


def tcp_wrapper_link(
    host: str,
    port: int,
    *,
    client: int = 16,
    server: int = 1,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> WrapperLink:
    """``dlms+tcp://HOST:PORT?client=16&server=1``."""
    return WrapperLink(
        TcpByteStream(host, port, connect_timeout=connect_timeout), client_wport=client, server_wport=server
    )


def _hdlc_settings(
    client: int,
    server: int,
    physical: int | None,
    max_info: int,
    frame_timeout: float,
    max_retries: int,
) -> HdlcLinkSettings:
    return HdlcLinkSettings(
        client=client_address(client),
        server=server_address(server, physical),
        parameters=HdlcParameters(max_info, max_info),
        frame_timeout=frame_timeout,
        max_retries=max_retries,
        open_timeout=frame_timeout * (max_retries + 1) + 1.0,
    )


def hdlc_tcp_link(
    host: str,
    port: int,
    *,
    client: int = 16,
    server: int = 1,
    physical: int | None = None,
    max_info: int = 128,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    max_retries: int = 3,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> HdlcLink:
    """``dlms+hdlc+tcp://HOST:PORT?client=16&server=1[&physical=17]``: HDLC frames over a TCP socket."""
    return HdlcLink(
        TcpByteStream(host, port, connect_timeout=connect_timeout),
        _hdlc_settings(client, server, physical, max_info, frame_timeout, max_retries),
    )


def hdlc_serial_link(
    device: str,
    *,
    baud: int = 9600,
    client: int = 16,
    server: int = 1,
    physical: int | None = None,
    max_info: int = 128,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    max_retries: int = 3,
) -> HdlcLink:
    """``dlms+hdlc:///dev/ttyX?baud=9600&client=16&server=1[&physical=17]``: HDLC on a serial port, 8N1."""
    return HdlcLink(
        SerialByteStream(device, baud),
        _hdlc_settings(client, server, physical, max_info, frame_timeout, max_retries),
    )
