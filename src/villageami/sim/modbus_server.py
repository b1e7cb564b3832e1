"""Modbus meter simulator: a pymodbus server (SimDevice/SimData API) serving a profile's registers.

Each simulated unit has a small load model: constant power, so imported energy grows with time, steady
voltages and 50 Hz. Values are encoded with the profile's own type, word order, byte order and scale, and
refreshed before every read through the SimDevice ``action`` hook. Addresses outside the profile's register
span answer ILLEGAL ADDRESS, as a real meter does. A unit id that is not simulated (or one marked dead)
gets no answer at all, as on an RS-485 bus, so a client times out.

In-process use (tests)::

    async with ModbusSimulator(load_profile("eastron-sdm630"), units=[1, 2]) as sim:
        url = f"modbus+tcp://127.0.0.1:{sim.port}?unit=1"

Command line: ``villageami sim modbus --profile eastron-sdm630 [--port N] [--unit N]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from villageami.errors import VillageAmiError
from villageami.meters.modbus_driver import encode_value
from villageami.meters.normalise import convert_unit
from villageami.meters.profile import ModbusAddress, Profile, ProfileError, load_profile
from villageami.meters.profile import Protocol as ProfileProtocol

__all__ = ["LoadModel", "ModbusSimulator", "register"]


class SimulatorError(VillageAmiError):
    """The simulator cannot start with the given profile or options."""


@dataclass(slots=True)
class LoadModel:
    """One customer's load: constant power; energy import accumulates from ``import_kwh`` at start."""

    power_w: float = 450.0
    voltage_v: tuple[float, float, float] = (230.1, 229.4, 231.2)
    frequency_hz: float = 50.0
    import_kwh: float = 1234.5
    export_kwh: float = 0.0
    started: float = field(default=0.0)

    def values(self, now: float) -> dict[str, float]:
        """VMRS key -> value in VMRS units (kWh, W, V, Hz) at monotonic time ``now``."""
        hours = max(0.0, now - self.started) / 3600.0
        return {
            "1.8.0": self.import_kwh + self.power_w * hours / 1000.0,
            "2.8.0": self.export_kwh,
            "1.7.0": self.power_w,
            "32.7.0": self.voltage_v[0],
            "52.7.0": self.voltage_v[1],
            "72.7.0": self.voltage_v[2],
            "14.7.0": self.frequency_hz,
        }


_VMRS_UNIT = {"1.8.0": "kWh", "2.8.0": "kWh", "1.7.0": "W", "32.7.0": "V", "52.7.0": "V", "72.7.0": "V"}
_VMRS_UNIT["14.7.0"] = "Hz"


def _meter_value(key: str, vmrs_value: float, point: ModbusAddress) -> float:
    """A VMRS-unit value expressed in the unit the profile says the register holds."""
    unit = point.unit
    target = _VMRS_UNIT.get(key)
    if unit is None or target is None or unit == target:
        return vmrs_value
    # inverse of normalisation: 1 kWh in Wh is 1 / (Wh->kWh factor)
    return vmrs_value / float(convert_unit(1.0, unit, target))


class _Units:
    """Wraps pymodbus' SimCore so unknown or dead unit ids stay silent (NoSuchIdException + ignore flag)."""

    def __init__(self, core: Any, live: Callable[[int], bool]) -> None:
        self._core = core
        self._live = live

    def device_ids(self) -> list[int]:
        return [i for i in self._core.device_ids() if self._live(i)]

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1) -> Any:
        self._check(device_id)
        return await self._core.async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Any) -> Any:
        self._check(device_id)
        return await self._core.async_setValues(device_id, func_code, address, values)

    def _check(self, device_id: int) -> None:
        from pymodbus.exceptions import NoSuchIdException

        if not self._live(device_id):
            raise NoSuchIdException(f"unit {device_id} is not simulated or is dead")


class ModbusSimulator:
    """A profile served over Modbus TCP (default) or RTU on a serial device, for one or more unit ids."""

    def __init__(
        self,
        profile: Profile,
        *,
        units: Iterable[int] = (1,),
        host: str = "127.0.0.1",
        port: int = 0,
        serial: str | None = None,
        baud: int = 9600,
        loads: dict[int, LoadModel] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.points: dict[str, ModbusAddress] = {
            key: entry.modbus
            for key, entry in profile.entries_for(ProfileProtocol.MODBUS).items()
            if entry.modbus is not None
        }
        if not self.points:
            raise SimulatorError(f"profile {profile.name} maps no Modbus registers")
        self.units = sorted(set(units))
        self.host = host
        self._port = port
        self.serial = serial
        self.baud = baud
        self.clock = clock
        start = clock()
        self.loads = {u: LoadModel(power_w=450.0 + 100.0 * (u - 1), started=start) for u in self.units}
        if loads:
            self.loads.update(loads)
        self.overrides: dict[int, dict[str, float]] = {u: {} for u in self.units}
        self.dead: set[int] = set()
        self.reads = 0  # requests served, for tests
        self._server: Any = None

    # -- values --

    def values(self, unit: int) -> dict[str, float]:
        """VMRS key -> current value (VMRS units) for a unit, including overrides."""
        current = self.loads[unit].values(self.clock())
        current.update(self.overrides[unit])
        return {k: v for k, v in current.items() if k in self.points}

    def set_value(self, unit: int, key: str, value: float) -> None:
        """Pin a value (in VMRS units) regardless of the load model."""
        self.overrides[unit][key] = value

    # -- pymodbus wiring --

    def _device(self, unit: int) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks: dict[int, list[Any]] = {3: [], 4: []}
        for function in (3, 4):
            points = [p for p in self.points.values() if p.function == function]
            if not points:
                blocks[function] = [SimData(0, count=1, datatype=DataType.INVALID)]
                continue
            first = min(p.address for p in points)
            last = max(p.address + p.registers for p in points)
            blocks[function] = [SimData(first, values=[0] * (last - first), datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]

        async def refresh(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> None:
            self.reads += 1
            values = self.values(unit)
            for key, point in self.points.items():
                if point.function != function_code or key not in values:
                    continue
                words = encode_value(_meter_value(key, values[key], point), point)
                offset = point.address - start_address
                registers[offset : offset + len(words)] = words
            return None

        return SimDevice(id=unit, simdata=(bits, list(bits), blocks[3], blocks[4]), action=refresh)

    async def start(self) -> None:
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        devices = [self._device(u) for u in self.units]
        if self.serial is None:
            address = (self.host, self._port)
            self._server = ModbusTcpServer(devices, address=address, ignore_missing_devices=True)
        else:
            self._server = ModbusSerialServer(
                devices, port=self.serial, baudrate=self.baud, ignore_missing_devices=True
            )
        self._server.context = _Units(self._server.context, lambda u: u in self.units and u not in self.dead)
        await self._server.serve_forever(background=True)
        if self.serial is None:
            self._port = self._server.transport.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def register(sim_app: typer.Typer) -> None:
    """Add ``villageami sim modbus``."""

    @sim_app.command("modbus")
    def modbus(
        profile: str = typer.Option(..., "--profile", help="Profile name (eastron-sdm630) or YAML path."),
        port: int = typer.Option(5020, "--port", min=0, max=65535, help="TCP port (0 = any free port)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        unit: Annotated[list[int] | None, typer.Option("--unit", help="Unit id (default 1).")] = None,
        serial: str | None = typer.Option(None, "--serial", help="Serve Modbus RTU on this serial device."),
        baud: int = typer.Option(9600, "--baud", help="Baud rate with --serial."),
    ) -> None:
        """Serve a Modbus meter profile with a load model (energy accumulates) until interrupted."""
        try:
            loaded = load_profile(profile)
            simulator = ModbusSimulator(
                loaded, units=unit or [1], host=host, port=port, serial=serial, baud=baud
            )
        except (ProfileError, SimulatorError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

        async def run() -> None:
            try:
                await simulator.start()
            except (OSError, RuntimeError) as err:
                typer.echo(f"error: cannot listen: {err}", err=True)
                raise typer.Exit(1) from None
            where = serial or f"{host}:{simulator.port}"
            units = ",".join(str(u) for u in simulator.units)
            typer.echo(f"modbus simulator ({loaded.name}) on {where}, units {units}; Ctrl-C stops", err=True)
            try:
                await asyncio.Event().wait()
            finally:
                await simulator.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
