"""The Modbus driver against the villageami simulator and against pymodbus' own server (its own encoding)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import yaml

from villageami.meters.driver import MeterUnreachable
from villageami.meters.factory import open_driver
from villageami.meters.modbus_driver import ModbusDriver, PymodbusChannel
from villageami.meters.profile import Profile, load_profile, parse_profile
from villageami.sim.modbus_server import ModbusSimulator

T = TypeVar("T")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(factory(), 30))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reads_every_key_from_the_simulator_in_the_planned_number_of_requests() -> None:
    profile = load_profile("eastron-sdm630")
    clock = FakeClock()

    async def main() -> None:
        async with ModbusSimulator(profile, units=[1, 2], clock=clock) as sim:
            driver = open_driver(f"modbus+tcp://127.0.0.1:{sim.port}?unit=2", profile)
            assert isinstance(driver, ModbusDriver)
            async with driver:
                reads = await driver.read(list(profile.registers))
                assert driver.requests_sent == 3  # (0..5), (52..53), (70..75)
            expected = sim.values(2)
            for key, read in reads.items():
                assert read.ok, read
                assert read.value == pytest.approx(expected[key], rel=1e-6)
                assert read.unit == profile.registers[key].modbus.unit  # type: ignore[union-attr]
                assert read.source is not None and read.source.startswith("modbus:2:4:")
            assert reads["1.7.0"].value == pytest.approx(550.0)  # unit 2's load model

    run(main)


def test_energy_accumulates_with_time() -> None:
    profile = load_profile("eastron-sdm120")
    clock = FakeClock()

    async def main() -> None:
        async with ModbusSimulator(profile, clock=clock) as sim:
            driver = open_driver(f"modbus+tcp://127.0.0.1:{sim.port}", profile)
            async with driver:
                first = (await driver.read(["1.8.0"]))["1.8.0"].value
                clock.now += 7200  # two hours at 450 W = 0.9 kWh
                second = (await driver.read(["1.8.0"]))["1.8.0"].value
            assert isinstance(first, float) and isinstance(second, float)
            assert second - first == pytest.approx(0.9, abs=1e-3)  # float32 resolution at ~1235 kWh

    run(main)


def test_one_grouped_request_with_max_gap() -> None:
    profile = load_profile("eastron-sdm630")

    async def main() -> None:
        async with ModbusSimulator(profile) as sim:
            driver = open_driver(f"modbus+tcp://127.0.0.1:{sim.port}?max_gap=64", profile)
            async with driver:
                reads = await driver.read(list(profile.registers))
                assert driver.requests_sent == 1
            assert all(r.ok for r in reads.values())

    run(main)


def _pymodbus_server_from_profile(profile: Profile, values: dict[str, float]) -> Any:
    """pymodbus' own SimData encoding (big-endian) at the profile's addresses; gaps stay invalid."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    kinds = {
        "float32": DataType.FLOAT32,
        "uint32": DataType.UINT32,
        "int32": DataType.INT32,
        "uint16": DataType.UINT16,
        "int16": DataType.INT16,
    }
    blocks = [
        SimData(e.modbus.address, values=values[k], datatype=kinds[e.modbus.type.value])
        for k, e in profile.registers.items()
        if e.modbus is not None
    ]
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    holding = [SimData(0, count=1, datatype=DataType.INVALID)]
    device = SimDevice(id=1, simdata=(bits, list(bits), holding, blocks))
    return ModbusTcpServer(device, address=("127.0.0.1", 0))


def test_against_pymodbus_own_server_configured_from_the_profile() -> None:
    profile = load_profile("eastron-sdm630")
    values = {
        "32.7.0": 231.5,
        "52.7.0": 229.25,
        "72.7.0": 230.75,
        "1.7.0": -120.5,
        "14.7.0": 49.875,
        "1.8.0": 4321.25,
        "2.8.0": 12.5,
    }

    async def main() -> None:
        server = _pymodbus_server_from_profile(profile, values)
        await server.serve_forever(background=True)
        port = server.transport.sockets[0].getsockname()[1]
        try:
            # max_gap=64 plans one request across holes pymodbus refuses: the driver falls back per key.
            driver = open_driver(f"modbus+tcp://127.0.0.1:{port}?max_gap=64", profile)
            async with driver:
                reads = await driver.read(list(profile.registers))
                assert driver.requests_sent == 1 + len(values)
            assert {k: r.value for k, r in reads.items()} == values  # exactly representable in float32
        finally:
            await server.shutdown()

    run(main)


SWAPPED = """
format: villageami-profile/1
name: word-swap-test
identity:
  vendor: test
  model: word order and signedness cases
  provenance: {source: test fixture, evidence: doc, confidence: T1, status: expected}
protocols: [modbus]
registers:
  "1.8.0":
    modbus: {function: 3, address: 100, type: uint32, word_order: little, scale: 0.001, unit: kWh}
    provenance: {source: test fixture, evidence: doc, confidence: T1, status: expected}
  "1.7.0":
    modbus: {function: 3, address: 102, type: int16, unit: W}
    provenance: {source: test fixture, evidence: doc, confidence: T1, status: expected}
  "32.7.0":
    modbus: {function: 3, address: 103, type: uint16, scale: 0.1, unit: V}
    provenance: {source: test fixture, evidence: doc, confidence: T1, status: expected}
  "14.7.0":
    modbus: {function: 3, address: 200, type: uint16, scale: 0.01, unit: Hz}
    provenance: {source: test fixture, evidence: doc, confidence: T1, status: expected}
"""


def test_word_swapped_unsigned_and_signed_registers_over_the_wire() -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    profile = parse_profile(yaml.safe_load(SWAPPED), "test")
    # Raw registers written by hand: 0x8001_8000 Wh-counts with the low word first, -250 W, 230.7 V.
    holding = [SimData(100, values=[0x8000, 0x8001, 0xFF06, 2307], datatype=DataType.REGISTERS)]
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    inputs = [SimData(0, count=1, datatype=DataType.INVALID)]

    async def main() -> None:
        server = ModbusTcpServer(
            SimDevice(id=1, simdata=(bits, list(bits), holding, inputs)), address=("127.0.0.1", 0)
        )
        await server.serve_forever(background=True)
        port = server.transport.sockets[0].getsockname()[1]
        try:
            driver = open_driver(f"modbus+tcp://127.0.0.1:{port}", profile)
            async with driver:
                reads = await driver.read(["1.8.0", "1.7.0", "32.7.0", "14.7.0"])
        finally:
            await server.shutdown()
        assert reads["1.8.0"].value == pytest.approx(0x80018000 / 1000)  # not negative
        assert reads["1.8.0"].raw == [0x8000, 0x8001]
        assert reads["1.7.0"].value == -250
        assert reads["32.7.0"].value == pytest.approx(230.7)
        # 14.7.0 sits at an address the server does not serve: that key fails alone
        assert not reads["14.7.0"].ok and "exception 2" in (reads["14.7.0"].error or "")

    run(main)


def test_dead_unit_and_closed_port_are_unreachable() -> None:
    profile = load_profile("eastron-sdm120")

    async def main() -> None:
        async with ModbusSimulator(profile, units=[1]) as sim:
            sim.dead.add(1)
            driver = open_driver(f"modbus+tcp://127.0.0.1:{sim.port}?unit=1&timeout=0.3", profile)
            with pytest.raises(MeterUnreachable, match=r"no answer within 0\.3 s"):
                async with driver:
                    await driver.read(["1.8.0"])
            port = sim.port
        closed = open_driver(f"modbus+tcp://127.0.0.1:{port}?timeout=0.3", profile)
        with pytest.raises(MeterUnreachable, match="cannot connect"):
            await closed.connect()
        await closed.close()

    run(main)


def test_unmapped_key_is_a_per_key_error() -> None:
    profile = load_profile("eastron-sdm120")

    async def main() -> None:
        async with ModbusSimulator(profile) as sim:
            driver = ModbusDriver(PymodbusChannel.tcp("127.0.0.1", sim.port, 1.0), profile)
            async with driver:
                reads = await driver.read(["1.8.0", "96.5.0"])
        assert reads["1.8.0"].ok
        assert reads["96.5.0"].error == "not mapped in profile eastron-sdm120"

    run(main)
