"""The DLMS driver against villageami's DLMS simulator (wrapper and HDLC over TCP)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from villageami.dlms.errors import DecodeError
from villageami.meters.dlms_driver import DlmsDriver
from villageami.meters.driver import MeterAction, MeterUnreachable
from villageami.meters.factory import open_driver
from villageami.meters.normalise import normalise_all
from villageami.meters.profile import load_profile
from villageami.sim.dlms_server import DlmsSimulator, FaultMode

T = TypeVar("T")
PROFILE = load_profile("dlms-generic-prepaid-1ph")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(factory(), 60))


@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
def test_reads_every_mapped_key(transport: str) -> None:
    async def main() -> None:
        async with DlmsSimulator(transport=transport) as sim:  # type: ignore[arg-type]
            driver = open_driver(sim.url, PROFILE)
            assert isinstance(driver, DlmsDriver)
            async with driver:
                reads = await driver.read(list(PROFILE.registers))
                first_requests = driver.requests_sent
                again = await driver.read(["1.8.0", "32.7.0"])
                # scaler_unit is cached: the second read asks only for the two values (one GET-with-list)
                assert driver.requests_sent - first_requests == 1
            assert all(r.ok for r in reads.values()), {k: r.error for k, r in reads.items() if not r.ok}
            assert reads["0.0.96.1.1.255"].value == "SIM00000001"
            assert reads["1.8.0"].unit == "Wh" and isinstance(reads["1.8.0"].value, int)
            assert reads["32.7.0"].unit == "V" and reads["32.7.0"].value == pytest.approx(230.0, abs=15)
            assert reads["14.7.0"].unit == "Hz" and reads["14.7.0"].value == pytest.approx(50.0, abs=1)
            assert reads["0.0.96.3.10.255"].value == 1  # control_state connected
            assert reads["1.8.0"].source == "1-0:1.8.0.255/3/2"
            assert again["1.8.0"].value >= reads["1.8.0"].value  # type: ignore[operator]
            result = normalise_all(reads, PROFILE)
            assert result.omitted == {}
            by_key = {r.key: r for r in result.readings}
            assert by_key["0.0.96.3.10.255"].value == "connected"
            assert by_key["96.5.0"].quality == "suspect"  # the generic profile has no bit table
            assert by_key["0.0.0"].value.endswith(("Z", "+00:00")) or "+" in by_key["0.0.0"].value

    run(main)


def test_get_with_list_is_split_at_max_list() -> None:
    async def main() -> None:
        async with DlmsSimulator() as sim:
            driver = open_driver(sim.url + "&max_list=2", PROFILE)
            assert isinstance(driver, DlmsDriver)
            async with driver:
                reads = await driver.read(list(PROFILE.registers))
            # 9 values + 5 scaler_units = 14 attributes in lists of 2
            assert driver.requests_sent == 7
            assert all(r.ok for r in reads.values())

    run(main)


def test_disconnect_and_reconnect_with_read_back() -> None:
    async def main() -> None:
        async with DlmsSimulator() as sim:
            driver = open_driver(sim.url, PROFILE)
            async with driver:
                off = await driver.act(MeterAction.DISCONNECT)
                assert off.ok, off.detail
                assert off.readback["0.0.96.3.10.255"].value == 0
                assert "output_state false" in (off.detail or "")
                assert sim.meter().output_state is False
                on = await driver.act(MeterAction.RECONNECT)
                assert on.ok, on.detail
                assert on.readback["0.0.96.3.10.255"].value in (1, 2)

    run(main)


def test_silent_meter_is_unreachable() -> None:
    async def main() -> None:
        async with DlmsSimulator(fault=FaultMode.NO_ANSWER) as sim:
            driver = open_driver(sim.url + "&timeout=0.5", PROFILE)
            with pytest.raises(MeterUnreachable):
                async with driver:
                    await driver.read(["1.8.0"])

    run(main)


@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
def test_meter_that_recovers_is_read_again(transport: str) -> None:
    """A link lost mid-life (meter silent a while) must not leave the driver believing it is associated."""

    async def main() -> None:
        async with DlmsSimulator(transport=transport) as sim:  # type: ignore[arg-type]
            driver = open_driver(sim.url + "&timeout=0.5", PROFILE)
            async with driver:
                assert (await driver.read(["1.8.0"]))["1.8.0"].ok
                sim.fault = FaultMode.NO_ANSWER
                with pytest.raises(MeterUnreachable):
                    await driver.read(["1.8.0"])
                sim.fault = FaultMode.NONE
                again = await driver.read(["1.8.0", "32.7.0"])
            assert all(r.ok for r in again.values()), {k: r.error for k, r in again.items() if not r.ok}

    run(main)


def test_simulator_profile_publishes_tamper_flags_and_credit() -> None:
    profile = load_profile("villageami-sim-dlms-1p")

    async def main() -> None:
        async with DlmsSimulator() as sim:
            sim.meter().set_tamper("cover_open")
            sim.meter().set_tamper("magnetic_field")
            driver = open_driver(sim.url, profile)
            async with driver:
                reads = await driver.read(list(profile.registers))
        result = normalise_all(reads, profile)
        assert result.omitted == {}
        by_key = {r.key: r for r in result.readings}
        tamper = by_key["96.5.0"]
        assert tamper.flags is not None and {"cover_open", "magnetic"} <= set(tamper.flags)
        assert tamper.unmapped_bits == 0 and tamper.quality == "good"
        credit = by_key["96.8.0"]
        assert credit.unit == "kWh" and credit.value == pytest.approx(25.0, abs=0.5)  # initial_kwh 25

    run(main)


def test_falls_back_to_single_gets_when_get_with_list_is_answered_wrongly() -> None:
    """A meter that grants multiple-references but answers a list wrongly is still read, one GET per key."""

    async def main() -> None:
        async with DlmsSimulator() as sim:
            driver = open_driver(sim.url, PROFILE)
            assert isinstance(driver, DlmsDriver)
            calls = 0

            async def broken_get_with_list(*_args: object, **_kwargs: object) -> list[object]:
                nonlocal calls
                calls += 1
                raise DecodeError("get-with-list asked for 5 attributes, got 1 results")

            async with driver:
                driver.client.get_with_list = broken_get_with_list  # type: ignore[method-assign]
                reads = await driver.read(["1.8.0", "32.7.0", "0.0.96.1.1.255"])
                assert driver.with_list_unreliable
                before = driver.requests_sent
                await driver.read(["1.8.0", "32.7.0"])
                # scaler_units are cached, so exactly one GET per key and no further list attempt
                assert driver.requests_sent - before == 2
            assert calls == 1
            assert all(r.ok for r in reads.values()), {k: r.error for k, r in reads.items() if not r.ok}
            assert reads["0.0.96.1.1.255"].value == "SIM00000001"

    run(main)
