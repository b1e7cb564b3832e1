"""The Modbus simulator: serves a profile's registers with the profile's encoding and a load model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import yaml
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.meters.modbus_driver import decode_registers
from villageami.meters.profile import load_profile, parse_profile
from villageami.sim.modbus_server import LoadModel, ModbusSimulator, SimulatorError

T = TypeVar("T")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(factory(), 30))


PROV = {"source": "test fixture", "evidence": "doc", "confidence": "T1", "status": "expected"}
WH_PROFILE = {
    "format": "villageami-profile/1",
    "name": "wh-counter",
    "identity": {"vendor": "test", "model": "Wh counter", "provenance": PROV},
    "protocols": ["modbus"],
    "registers": {
        "1.8.0": {
            "modbus": {"function": 3, "address": 10, "type": "uint32", "word_order": "little", "unit": "Wh"},
            "provenance": PROV,
        },
        "1.7.0": {
            "modbus": {"function": 4, "address": 0, "type": "int16", "scale": 0.1, "unit": "kW"},
            "provenance": PROV,
        },
    },
}


def test_registers_follow_the_profile_encoding_and_units() -> None:
    profile = parse_profile(yaml.safe_load(yaml.safe_dump(WH_PROFILE)), "test")
    now = [0.0]

    async def main() -> None:
        from pymodbus.client import AsyncModbusTcpClient

        loads = {1: LoadModel(power_w=1500.0, import_kwh=70000.0, started=0.0)}
        async with ModbusSimulator(profile, loads=loads, clock=lambda: now[0]) as sim:
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0)
            await client.connect()
            try:
                energy = await client.read_holding_registers(10, count=2, device_id=1)
                power = await client.read_input_registers(0, count=1, device_id=1)
                beyond = await client.read_holding_registers(12, count=1, device_id=1)
            finally:
                client.close()
        # 70 000 kWh = 70 000 000 Wh = 0x042C_1D80, low word first
        assert energy.registers == [0x1D80, 0x042C]
        assert decode_registers(power.registers, profile.registers["1.7.0"].modbus) == pytest.approx(1.5)  # type: ignore[arg-type]
        assert power.registers == [15]
        assert beyond.isError() and beyond.exception_code == 2  # outside the profile's span: ILLEGAL ADDRESS
        assert sim.reads == 2

    run(main)


def test_set_value_pins_a_reading_and_dead_units_stay_silent() -> None:
    profile = load_profile("eastron-sdm120")

    async def main() -> None:
        from pymodbus.client import AsyncModbusTcpClient
        from pymodbus.exceptions import ModbusIOException

        async with ModbusSimulator(profile, units=[1, 2]) as sim:
            sim.set_value(2, "32.7.0", 242.5)
            sim.dead.add(1)
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.3, retries=0)
            await client.connect()
            try:
                voltage = await client.read_input_registers(0, count=2, device_id=2)
                assert voltage.registers == [0x4372, 0x8000]  # 242.5 as float32, high word first
                for silent in (1, 3):
                    with pytest.raises(ModbusIOException):
                        await client.read_input_registers(0, count=2, device_id=silent)
            finally:
                client.close()

    run(main)


def test_a_profile_without_modbus_registers_is_refused() -> None:
    with pytest.raises(SimulatorError, match="maps no Modbus registers"):
        ModbusSimulator(load_profile("dlms-generic-prepaid-1ph"))


def test_cli_help_and_bad_profile() -> None:
    runner = CliRunner()
    helped = runner.invoke(build_app(), ["sim", "modbus", "--help"])
    assert helped.exit_code == 0 and "--profile" in helped.output
    bad = runner.invoke(build_app(), ["sim", "modbus", "--profile", "no-such", "--port", "0"])
    assert bad.exit_code == 2 and "no such profile" in bad.stderr
