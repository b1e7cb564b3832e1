"""Adversarial review of the read loops: a driver bug on one meter must not starve its bus neighbours."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gw_fakes import FakeMeter, meter_entry
from test_gw_reads import ALL, build, cycle, messages

from villageami.meters.driver import KeyRead


class BuggyMeter(FakeMeter):
    """A driver that raises an exception type the scheduler does not expect (a decoding bug)."""

    async def read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        raise ValueError("unexpected byte 0x7e in frame")


def test_unexpected_driver_exception_marks_the_meter_failed_and_reads_its_neighbours(tmp_path: Path) -> None:
    # Before the fix the ValueError escaped run_cycle: the whole bus loop restarted (fresh schedule, same
    # meter first) and the meters after the buggy one on the bus were never read.
    gateway, fleet = build(tmp_path, [meter_entry("BAD"), meter_entry("M2")])
    fleet.meters["BAD"] = BuggyMeter("BAD")
    gateway.pollers["BAD"].driver = fleet.meters["BAD"]
    fleet.meters.setdefault("M2", FakeMeter("M2"))
    asyncio.run(cycle(gateway, ALL))
    assert [t["meterSerial"] for t in messages(gateway, "/telemetry")] == ["M2"]
    events = [e for e in messages(gateway, "/event") if e["meterSerial"] == "BAD"]
    assert [e["event"]["type"] for e in events] == ["meter_comms_lost"]
    assert "ValueError" in str(events[0]["event"]["detail"])
    bad = gateway.pollers["BAD"]
    assert bad.failures == 1 and not bad.connected  # backoff applies, and the link is reset


def test_unexpected_exception_in_concurrent_tcp_cycle_does_not_abandon_other_reads(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("BAD", bus=None), meter_entry("T2", bus=None)])
    fleet.meters["BAD"] = BuggyMeter("BAD")
    gateway.pollers["BAD"].driver = fleet.meters["BAD"]

    async def run() -> None:
        pollers = list(gateway.pollers.values())
        await gateway.scheduler.run_cycle("tcp", pollers, ALL, concurrent=True)

    asyncio.run(run())
    assert [t["meterSerial"] for t in messages(gateway, "/telemetry")] == ["T2"]
    assert gateway.pollers["BAD"].failures == 1
