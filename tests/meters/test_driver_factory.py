"""open_driver: URL + profile -> the right driver; IEC 62056-21 through the factory and normalisation."""

from __future__ import annotations

import asyncio

import pytest

from villageami.meters.bus import BusArbiter
from villageami.meters.dlms_driver import DlmsDriver
from villageami.meters.factory import SerialPorts, open_driver
from villageami.meters.iec21_driver import Iec21Driver
from villageami.meters.modbus_driver import ModbusDriver
from villageami.meters.normalise import normalise_all
from villageami.meters.profile import ProfileError, load_profile
from villageami.meters.url import UrlError
from villageami.sim.iec21_server import Iec21Simulator


def test_each_scheme_gets_its_driver() -> None:
    async def main() -> None:
        ports = SerialPorts()
        arbiter = BusArbiter()
        a = open_driver(
            "modbus+rtu:///dev/ttyNOPE?unit=2&baud=2400", "eastron-sdm120", ports=ports, arbiter=arbiter
        )
        b = open_driver("modbus+rtu:///dev/ttyNOPE?unit=3", "eastron-sdm120", ports=ports, arbiter=arbiter)
        assert isinstance(a, ModbusDriver) and isinstance(b, ModbusDriver)
        assert a.channel is b.channel and a.channel.port_key == "/dev/ttyNOPE"  # one port, shared
        assert (a.unit, b.unit) == (2, 3)
        tcp = open_driver("modbus+tcp://127.0.0.1:1502", "eastron-sdm630")
        assert isinstance(tcp, ModbusDriver) and tcp.channel.port_key is None and tcp.unit == 1
        for url in (
            "dlms+tcp://127.0.0.1:4059",
            "dlms+hdlc+tcp://127.0.0.1:4059?physical=17",
            "dlms+hdlc:///dev/ttyNOPE?baud=9600&max_list=4",
        ):
            assert isinstance(open_driver(url, "donsun-ds1000"), DlmsDriver)
        assert isinstance(open_driver("iec21+tcp://127.0.0.1:1", "iec21-generic-mode-c"), Iec21Driver)
        await ports.close()

    asyncio.run(main())


def test_profile_and_url_mismatches_are_clear() -> None:
    with pytest.raises(ProfileError, match="no modbus registers \\(profile speaks dlms\\)"):
        open_driver("modbus+tcp://127.0.0.1:502", "inhemeter-i310")
    with pytest.raises(UrlError, match="unknown scheme"):
        open_driver("mbus://x:1", "eastron-sdm120")
    with pytest.raises(ProfileError, match="no such profile"):
        open_driver("modbus+tcp://127.0.0.1:502", "nope")


def test_iec21_meter_through_the_factory() -> None:
    profile = load_profile("iec21-generic-mode-c")

    async def main() -> None:
        async with Iec21Simulator() as sim:
            driver = open_driver(f"iec21+tcp://127.0.0.1:{sim.port}", profile)
            async with driver:
                reads = await driver.read(list(profile.registers))
        result = normalise_all(reads, profile)
        by_key = {r.key: r for r in result.readings}
        assert by_key["0.0.96.1.1.255"].value == "18438636"
        assert by_key["1.7.0"].value == 450.0 and by_key["1.7.0"].unit == "W"  # printed as 00.450 kW
        assert by_key["1.8.0"].unit == "kWh" and by_key["1.8.0"].value == pytest.approx(1234.5, abs=0.01)
        assert set(result.omitted) == {"2.8.0"}  # this readout has no export register

    asyncio.run(asyncio.wait_for(main(), 30))
