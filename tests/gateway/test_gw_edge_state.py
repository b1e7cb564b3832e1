"""Event edge state survives a restart: no second "raised" for an active condition, no missed clear."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from gw_fakes import FakeFleet, make_config, meter_entry, no_profile
from test_gw_reads import ALL, messages

from villageami.gateway.app import Gateway
from villageami.gateway.config import GatewayConfig
from villageami.gateway.events import EdgeStateStore, EventDetector


def start(config: GatewayConfig, tmp_path: Path, fleet: FakeFleet) -> Gateway:
    return Gateway(config, base_dir=tmp_path, driver_factory=fleet, profile_loader=no_profile)


def stop(gateway: Gateway) -> None:
    """What ``Gateway.run`` does on its way out, minus the loops (the tests drive cycles directly)."""
    gateway.outbox.close()
    gateway.journal.close()
    gateway.edge_store.close()


def cycle_then_stop(gateway: Gateway) -> list[tuple[str, str, str]]:
    """One read cycle over every meter; the (meter, type, state) of the events it produced."""
    before = gateway.outbox.last_seq()

    async def run() -> None:
        pollers = list(gateway.pollers.values())
        await gateway.scheduler.run_cycle("test", pollers, ALL, concurrent=False)

    asyncio.run(run())
    found = [
        (e["meterSerial"], e["event"]["type"], e["event"]["state"])
        for e in messages(gateway, "/event")
        if e["seq"] > before
    ]
    stop(gateway)
    return sorted(found)


def test_restart_neither_re_raises_active_conditions_nor_misses_clears(tmp_path: Path) -> None:
    config = make_config(tmp_path, [meter_entry("M1"), meter_entry("M2"), meter_entry("M3")])
    fleet = FakeFleet()
    first = start(config, tmp_path, fleet)
    m1, m2, m3 = (fleet.meters[s] for s in ("M1", "M2", "M3"))
    m1.tamper_bits = 0b101
    m1.credit_kwh = 2.0  # below the default creditLowThreshold of 5
    m1.clock_offset_s = 600.0  # beyond the default clockDriftS of 120
    m1.relay = "disconnected"
    m2.dead = True
    m3.credit_kwh = 0.0
    raised = cycle_then_stop(first)
    assert raised == [
        ("M1", "clock_drift", "raised"),
        ("M1", "credit_low", "raised"),
        ("M1", "tamper", "raised"),
        ("M2", "meter_comms_lost", "raised"),
        ("M3", "credit_exhausted", "raised"),
    ]

    # Same conditions after a restart: nothing new to say.
    assert cycle_then_stop(start(config, tmp_path, fleet)) == []

    # Everything clears while the gateway is down; the next run reports each clear once.
    m1.tamper_bits = 0b001
    m1.credit_kwh = 50.0
    m1.clock_offset_s = 0.0
    m1.relay = "connected"
    m2.dead = False
    m3.credit_kwh = 50.0
    cleared = cycle_then_stop(start(config, tmp_path, fleet))
    assert cleared == [
        ("M1", "clock_drift", "cleared"),
        ("M1", "credit_low", "cleared"),
        ("M1", "disconnect_state_changed", "momentary"),
        ("M1", "tamper", "cleared"),
        ("M2", "meter_comms_restored", "cleared"),
        ("M3", "credit_exhausted", "cleared"),
    ]
    fourth = start(config, tmp_path, fleet)
    assert fourth.detector.snapshot("M1")["tamperFlags"] == ["bit0"]
    assert cycle_then_stop(fourth) == []


def test_disconnect_change_while_down_is_reported_with_from_and_to(tmp_path: Path) -> None:
    config = make_config(tmp_path, [meter_entry("M1")])
    fleet = FakeFleet()
    cycle_then_stop(start(config, tmp_path, fleet))
    fleet.meters["M1"].relay = "disconnected"
    gateway = start(config, tmp_path, fleet)
    before = gateway.outbox.last_seq()
    asyncio.run(gateway.scheduler.run_cycle("t", list(gateway.pollers.values()), ALL, concurrent=False))
    changes = [
        e["event"]
        for e in messages(gateway, "/event")
        if e["seq"] > before and e["event"]["type"] == "disconnect_state_changed"
    ]
    stop(gateway)
    assert [(c["detail"]["from"], c["detail"]["to"]) for c in changes] == [("connected", "disconnected")]


def test_store_round_trip_and_tolerates_bad_rows(tmp_path: Path) -> None:
    store = EdgeStateStore(tmp_path / "state.db")
    detector = EventDetector()
    now = datetime.now(UTC)
    detector.comms_failed("A", now, "timeout")
    store.save("A", detector.snapshot("A"), now)
    store.save("B", {"tamperFlags": "not-a-list", "creditLow": "yes", "disconnect": 3}, now)
    loaded = store.load()
    store.close()
    restored = EventDetector()
    restored.restore(loaded)
    assert restored.snapshot("A")["commsLost"] is True
    assert restored.snapshot("B") == EventDetector().snapshot("never-seen"), "bad fields fall back to unseen"
