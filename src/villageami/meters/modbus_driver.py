"""Modbus driver: read a profile's VMRS keys from Modbus registers (TCP or RTU) in the fewest requests.

The pure part (request planning, register decoding/encoding) is separate from the asyncio part, which goes
through a small ``ModbusChannel`` seam so tests and the bus arbiter can wrap or replace it. The channel on
top of pymodbus is :class:`PymodbusChannel`; one channel (one pymodbus client) is shared by every meter on a
serial port.

Request planning groups the mapped registers of the same function code into one request when they are
contiguous, or within ``max_gap`` unmapped registers of each other, up to ``max_registers`` (125, the Modbus
limit for function 3/4). When a grouped request is refused (illegal address, for instance because it spans a
hole in the meter's map), the driver retries that group one key at a time, so one bad register never hides
the others.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from villageami.meters.driver import (
    ActionResult,
    KeyRead,
    MeterAction,
    MeterDriver,
    MeterError,
    MeterUnreachable,
)
from villageami.meters.profile import ModbusAddress, Profile
from villageami.meters.profile import Protocol as ProfileProtocol

__all__ = [
    "ModbusChannel",
    "ModbusDriver",
    "ModbusRejected",
    "ModbusRequest",
    "PymodbusChannel",
    "decode_registers",
    "encode_value",
    "plan_requests",
]

MAX_REGISTERS = 125
T = TypeVar("T")


class ModbusRejected(MeterError):
    """The meter answered with a Modbus exception (illegal address, illegal function, device busy...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


# --- pure: planning, decoding, encoding ---


@dataclass(frozen=True, slots=True)
class ModbusRequest:
    """One read request and the keys whose registers it covers."""

    function: int
    address: int
    count: int
    keys: tuple[str, ...]

    def slice_for(self, point: ModbusAddress, registers: Sequence[int]) -> Sequence[int]:
        start = point.address - self.address
        return registers[start : start + point.registers]


def plan_requests(
    points: Mapping[str, ModbusAddress], *, max_registers: int = MAX_REGISTERS, max_gap: int = 0
) -> list[ModbusRequest]:
    """Group points into the fewest requests: same function code, gaps of at most ``max_gap`` registers,
    at most ``max_registers`` per request. Deterministic: ordered by function, then address."""
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}, got {max_registers}")
    requests: list[ModbusRequest] = []
    ordered = sorted(points.items(), key=lambda kv: (kv[1].function, kv[1].address, kv[0]))
    start = end = function = -1
    keys: list[str] = []
    for key, point in ordered:
        p_end = point.address + point.registers  # exclusive
        fits = (
            keys
            and point.function == function
            and point.address - end <= max_gap
            and max(end, p_end) - start <= max_registers
        )
        if fits:
            end = max(end, p_end)
            keys.append(key)
            continue
        if keys:
            requests.append(ModbusRequest(function, start, end - start, tuple(keys)))
        function, start, end, keys = point.function, point.address, p_end, [key]
    if keys:
        requests.append(ModbusRequest(function, start, end - start, tuple(keys)))
    return requests


def _ordered_bytes(registers: Sequence[int], point: ModbusAddress) -> bytes:
    """Registers as they arrive -> big-endian bytes of the value (most significant byte first)."""
    if len(registers) != point.registers:
        raise ValueError(f"{point.type} needs {point.registers} registers, got {len(registers)}")
    words = list(registers)
    if point.word_order == "little":
        words.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in words)
    if point.byte_order == "little":
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    return data


def decode_registers(registers: Sequence[int], point: ModbusAddress) -> int | float:
    """Decode one value (type, word order, byte order, signedness) and apply the scale."""
    for word in registers:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"register value {word} is not 16-bit")
    (number,) = struct.unpack(">" + point.type.struct_code, _ordered_bytes(registers, point))
    if point.scale == 1:
        return number  # type: ignore[no-any-return]
    scaled = number * point.scale
    # An integer register with an integral scale stays an integer (e.g. scale 10 on a uint16).
    if not point.type.is_float and float(point.scale).is_integer():
        return int(scaled)
    return float(scaled)


def encode_value(value: float, point: ModbusAddress) -> list[int]:
    """The registers a meter would hold for ``value`` (after scale). Used by the simulator and tests."""
    raw: float | int = value / point.scale if point.scale != 1 else value
    if not point.type.is_float:
        raw = round(raw)
    data = struct.pack(">" + point.type.struct_code, raw)
    if point.byte_order == "little":
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.word_order == "little":
        words.reverse()
    return words


# --- I/O seam ---


class ModbusChannel(Protocol):
    """A connected path to a Modbus server (a TCP device, or every unit on one serial port)."""

    @property
    def port_key(self) -> str | None:
        """The serial port this channel owns (None for TCP): meters sharing it are polled one at a time."""
        ...

    async def connect(self, timeout: float) -> None: ...

    async def read(self, function: int, address: int, count: int, unit: int, timeout: float) -> list[int]:
        """Read ``count`` registers. ModbusRejected for an exception response, MeterUnreachable on timeout."""
        ...

    async def close(self) -> None: ...


class PymodbusChannel:
    """A ``ModbusChannel`` over a pymodbus async client (TCP or serial).

    pymodbus retries are disabled: the caller's timeout bounds the whole transaction, and the bus arbiter
    decides about retries and back-off.
    """

    def __init__(self, make_client: Callable[[], Any], port_key: str | None, description: str) -> None:
        # pymodbus clients bind to the running event loop when built, so build on first connect.
        self._make_client = make_client
        self._client: Any = None
        self._port_key = port_key
        self.description = description
        self._connect_lock: asyncio.Lock | None = None

    @property
    def port_key(self) -> str | None:
        return self._port_key

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float) -> PymodbusChannel:
        def make() -> Any:
            from pymodbus.client import AsyncModbusTcpClient

            return AsyncModbusTcpClient(
                host, port=port, timeout=timeout, retries=0, reconnect_delay=0, reconnect_delay_max=0
            )

        return cls(make, None, f"modbus tcp {host}:{port}")

    @classmethod
    def rtu(
        cls, device: str, *, baud: int, parity: str, data_bits: int, stop_bits: int, timeout: float
    ) -> PymodbusChannel:
        def make() -> Any:
            from pymodbus.client import AsyncModbusSerialClient

            return AsyncModbusSerialClient(
                device,
                baudrate=baud,
                parity=parity,
                bytesize=data_bits,
                stopbits=stop_bits,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
                reconnect_delay_max=0,
            )

        return cls(make, device, f"modbus rtu {device}")

    async def connect(self, timeout: float) -> None:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._client is None:
                self._client = self._make_client()
            if self._client.connected:
                return
            try:
                ok = await asyncio.wait_for(self._client.connect(), timeout)
            except (TimeoutError, OSError) as err:
                raise MeterUnreachable(f"{self.description}: cannot connect ({err or 'timeout'})") from None
            if not ok:
                raise MeterUnreachable(f"{self.description}: cannot connect")

    async def read(self, function: int, address: int, count: int, unit: int, timeout: float) -> list[int]:
        from pymodbus.exceptions import ModbusException

        await self.connect(timeout)
        call = self._client.read_input_registers if function == 4 else self._client.read_holding_registers
        try:
            response = await asyncio.wait_for(call(address, count=count, device_id=unit), timeout)
        except TimeoutError:
            raise MeterUnreachable(
                f"{self.description} unit {unit}: no answer within {timeout:g} s (function {function})"
            ) from None
        except (ModbusException, OSError) as err:
            raise MeterUnreachable(f"{self.description} unit {unit}: no answer ({err})") from None
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise ModbusRejected(
                f"{self.description} unit {unit}: function {function} at {address} x{count} refused "
                f"(Modbus exception {code})",
                code,
            )
        registers = list(response.registers)
        if len(registers) < count:
            raise ModbusRejected(f"{self.description} unit {unit}: short answer, {len(registers)} of {count}")
        return registers[:count]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        except Exception:  # closing a dead link must never raise (driver contract)
            return


# --- driver ---


Guard = Callable[[Callable[[], Awaitable[list[int]]]], Awaitable[list[int]]]


async def _direct(op: Callable[[], Awaitable[list[int]]]) -> list[int]:
    return await op()


class ModbusDriver(MeterDriver):
    """Reads a profile's Modbus-mapped keys from one unit.

    ``guard`` wraps every transaction; the bus arbiter passes one that serialises a serial port and spaces
    frames. Without it, transactions go straight to the channel.
    """

    def __init__(
        self,
        channel: ModbusChannel,
        profile: Profile,
        *,
        unit: int | None = None,
        timeout: float = 2.0,
        max_gap: int | None = None,
        guard: Guard | None = None,
        owns_channel: bool = True,
    ) -> None:
        self.channel = channel
        self.profile = profile
        self.unit = profile.defaults.modbus.unit if unit is None else unit
        self.timeout = timeout
        self.max_gap = profile.defaults.modbus.max_gap if max_gap is None else max_gap
        self._guard = guard or _direct
        self._owns_channel = owns_channel
        self.points: dict[str, ModbusAddress] = {
            key: entry.modbus
            for key, entry in profile.entries_for(ProfileProtocol.MODBUS).items()
            if entry.modbus is not None
        }
        self.requests_sent = 0  # for tests and metrics

    async def connect(self) -> None:
        await self.channel.connect(self.timeout)

    async def _transaction(self, function: int, address: int, count: int) -> list[int]:
        async def op() -> list[int]:
            self.requests_sent += 1
            return await self.channel.read(function, address, count, self.unit, self.timeout)

        return await self._guard(op)

    async def read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        wanted = {k: self.points[k] for k in keys if k in self.points}
        results: dict[str, KeyRead] = {}
        now = datetime.now(UTC)
        for key in keys:
            if key not in self.points:
                error = f"not mapped in profile {self.profile.name}"
                results[key] = KeyRead(key, None, None, now, error=error)
        plan = plan_requests(
            wanted, max_registers=self.profile.defaults.modbus.max_registers, max_gap=self.max_gap
        )
        answered = False
        for request in plan:
            try:
                registers = await self._transaction(request.function, request.address, request.count)
            except ModbusRejected as err:
                answered = True
                if len(request.keys) == 1:
                    results[request.keys[0]] = self._failed(request.keys[0], str(err))
                    continue
                # A grouped request may span registers the meter does not serve: try each key alone.
                for key in request.keys:
                    results[key] = await self._read_one(key)
                continue
            except MeterUnreachable as err:
                if not answered:
                    raise
                for key in request.keys:
                    results[key] = self._failed(key, str(err))
                continue
            answered = True
            read_at = datetime.now(UTC)
            for key in request.keys:
                results[key] = self._decode(key, request.slice_for(wanted[key], registers), read_at)
        return {k: results[k] for k in keys}

    async def _read_one(self, key: str) -> KeyRead:
        point = self.points[key]
        try:
            registers = await self._transaction(point.function, point.address, point.registers)
        except (ModbusRejected, MeterUnreachable) as err:
            return self._failed(key, str(err))
        return self._decode(key, registers, datetime.now(UTC))

    def _source(self, point: ModbusAddress) -> str:
        return f"modbus:{self.unit}:{point.function}:0x{point.address:04X}"

    def _failed(self, key: str, error: str) -> KeyRead:
        return KeyRead(key, None, None, datetime.now(UTC), error=error, source=self._source(self.points[key]))

    def _decode(self, key: str, registers: Sequence[int], read_at: datetime) -> KeyRead:
        point = self.points[key]
        try:
            value = decode_registers(registers, point)
        except (ValueError, struct.error) as err:
            return KeyRead(key, None, None, read_at, raw=list(registers), error=f"cannot decode: {err}")
        return KeyRead(key, value, point.unit, read_at, raw=list(registers), source=self._source(point))

    async def act(self, action: MeterAction, params: Mapping[str, Any] | None = None) -> ActionResult:
        raise MeterError(f"profile {self.profile.name}: Modbus meters have no {action} action in villageami")

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()
