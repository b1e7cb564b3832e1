"""Reads -> normalisation -> plausibility -> telemetry/events in the outbox, with fake meters (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

from gw_fakes import FakeFleet, make_config, meter_entry, no_profile

from villageami.contract.validation import validate_message
from villageami.gateway.app import Gateway
from villageami.gateway.config import ReadClass

ALL = {ReadClass.INSTANTANEOUS, ReadClass.STATUS, ReadClass.CLOCK, ReadClass.STATIC}


def build(tmp_path: Path, meters: list[dict[str, Any]], **overrides: Any) -> tuple[Gateway, FakeFleet]:
    fleet = FakeFleet()
    gateway = Gateway(
        make_config(tmp_path, meters, **overrides),
        base_dir=tmp_path,
        driver_factory=fleet,
        profile_loader=no_profile,
    )
    return gateway, fleet


def messages(gateway: Gateway, suffix: str) -> list[dict[str, Any]]:
    found = []
    for m in gateway.outbox.pending(limit=10_000):
        if m.topic.endswith(suffix):
            problems = [p for p in validate_message(m.envelope, "auto", m.topic) if p.severity == "error"]
            assert not problems, (m.topic, m.envelope, problems)
            found.append(m.envelope)
    return found


def events(gateway: Gateway, etype: str) -> list[dict[str, Any]]:
    return [e["event"] for e in messages(gateway, "/event") if e["event"]["type"] == etype]


async def cycle(gateway: Gateway, classes: set[ReadClass] = ALL) -> None:
    pollers = list(gateway.pollers.values())
    await gateway.scheduler.run_cycle("test", pollers, classes, concurrent=False)


def test_cycle_publishes_valid_telemetry_per_meter(tmp_path: Path) -> None:
    gateway, _ = build(tmp_path, [meter_entry("M1"), meter_entry("M2")])
    asyncio.run(cycle(gateway))
    telemetry = messages(gateway, "/telemetry")
    assert [t["meterSerial"] for t in telemetry] == ["M1", "M2"]
    registers = {r["obis"]: r for r in telemetry[0]["registers"]}
    assert registers["1.8.0"]["value"] == 100.0 and registers["1.8.0"]["quality"] == "good"
    assert registers["0.0.96.3.10.255"]["value"] == "connected"
    assert [t["seq"] for t in telemetry] == sorted(t["seq"] for t in telemetry)


def test_cumulative_register_going_down_is_suspect_with_one_event(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])

    async def scenario() -> None:
        await cycle(gateway)
        fleet.meters["M1"].energy_kwh = 90.0
        await cycle(gateway)
        await cycle(gateway)

    asyncio.run(scenario())
    telemetry = messages(gateway, "/telemetry")
    last = {r["obis"]: r for r in telemetry[-1]["registers"]}
    assert last["1.8.0"]["quality"] == "suspect"
    assert "went down from 100.0 to 90" in last["1.8.0"]["reason"]
    assert len(events(gateway, "register_decreased")) == 1


def test_voltage_out_of_range_and_clock_drift_are_suspect(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    meter = fleet.meters["M1"]

    async def scenario() -> None:
        meter.voltage_v = 150.0
        meter.clock_offset_s = 600.0
        await cycle(gateway)
        await cycle(gateway)
        meter.clock_offset_s = 0.0
        await cycle(gateway)

    asyncio.run(scenario())
    first = {r["obis"]: r for r in messages(gateway, "/telemetry")[0]["registers"]}
    assert first["32.7.0"]["quality"] == "suspect" and "outside 180-270 V" in first["32.7.0"]["reason"]
    assert first["0.0.0"]["quality"] == "suspect"
    found = re.search(r"off by \+(\d+) s", first["0.0.0"]["reason"])
    assert found is not None and abs(int(found.group(1)) - 600) <= 1, "meter clock is read to the second"
    drift = events(gateway, "clock_drift")
    assert [d["state"] for d in drift] == ["raised", "cleared"], "edge-detected: once raised, once cleared"


def test_tamper_credit_and_disconnect_events_fire_once_per_change(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    meter = fleet.meters["M1"]

    async def scenario() -> None:
        await cycle(gateway)  # baseline: nothing to report
        meter.tamper_bits = 0b101
        meter.credit_kwh = 3.0
        await cycle(gateway)
        await cycle(gateway)  # same state: no repeat
        meter.tamper_bits = 0b001
        meter.credit_kwh = 0.0
        meter.relay = "disconnected"
        meter.power_event = "power_fail"
        await cycle(gateway)
        await cycle(gateway)
        meter.credit_kwh = 20.0
        meter.power_event = "power_restored"
        await cycle(gateway)

    asyncio.run(scenario())
    tamper = events(gateway, "tamper")
    assert [(t["state"], t["detail"]["flags"]) for t in tamper] == [
        ("raised", ["bit0", "bit2"]),
        ("cleared", ["bit2"]),
    ]
    assert [e["state"] for e in events(gateway, "credit_low")] == ["raised", "cleared"]
    assert [e["state"] for e in events(gateway, "credit_exhausted")] == ["raised", "cleared"]
    changes = events(gateway, "disconnect_state_changed")
    assert [(c["detail"]["from"], c["detail"]["to"]) for c in changes] == [("connected", "disconnected")]
    assert [e["state"] for e in events(gateway, "power_fail_last_gasp")] == ["raised"]
    assert [e["state"] for e in events(gateway, "power_restored")] == ["cleared"]


def test_dead_meter_publishes_comms_lost_once_and_neighbours_are_read(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1"), meter_entry("M2"), meter_entry("M3")])

    async def scenario() -> None:
        await cycle(gateway)
        fleet.meters["M2"].dead = True
        for _ in range(4):
            await cycle(gateway)
        fleet.meters["M2"].dead = False
        for _ in range(4):  # it is in backoff for a few cycles, then read again
            await cycle(gateway)

    asyncio.run(scenario())
    telemetry = messages(gateway, "/telemetry")
    assert sum(t["meterSerial"] == "M1" for t in telemetry) == 9
    assert sum(t["meterSerial"] == "M3" for t in telemetry) == 9
    first_good = next(t for t in telemetry if t["meterSerial"] == "M2")
    lost = [t for t in telemetry if t["meterSerial"] == "M2" and t["registers"][0]["quality"] == "comms_lost"]
    assert lost, "an unreachable meter repeats its last values as comms_lost"
    good_read_at = {r["obis"]: r["readAt"] for r in first_good["registers"]}
    assert all(r["readAt"] == good_read_at[r["obis"]] for r in lost[0]["registers"]), "original readAt kept"
    assert len(fleet.meters["M2"].reads) < 9, "a dead meter is backed off, not hammered every cycle"
    assert [e["state"] for e in events(gateway, "meter_comms_lost")] == ["raised"]
    assert [e["state"] for e in events(gateway, "meter_comms_restored")] == ["cleared"]


def test_hung_meter_delays_no_other_bus_and_neighbours_still_read(tmp_path: Path) -> None:
    meters = [
        meter_entry("HUNG", bus="bus-a"),
        meter_entry("A2", bus="bus-a"),
        meter_entry("B1", bus="bus-b"),
    ]
    gateway, fleet = build(tmp_path, meters, schedules={"readTimeoutS": 1.5})
    fleet.meters["HUNG"].hang = True

    async def scenario() -> tuple[int, int]:
        loops = gateway.loops()
        tasks = [asyncio.create_task(loops[name]()) for name in ("bus:bus-a", "bus:bus-b")]
        try:
            await asyncio.sleep(1.0)
            during = (len(fleet.meters["B1"].reads), len(fleet.meters["A2"].reads))
            await asyncio.sleep(1.0)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return during

    b1_during, a2_during = asyncio.run(scenario())
    assert b1_during >= 2, "bus-b kept its schedule while bus-a waited on the hung meter"
    assert a2_during == 0, "bus-a is one wire: A2 waits for HUNG's read timeout"
    assert len(fleet.meters["A2"].reads) >= 1, "after the timeout the neighbour on the same bus is read"
    assert events(gateway, "meter_comms_lost")[0]["detail"]["reason"].startswith("TimeoutError")
