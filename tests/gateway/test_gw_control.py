"""Command lifecycle with fake meters: read-back confirmation, expiry, idempotency, restart, local rule."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from gw_fakes import FakeFleet, make_config, meter_entry, no_profile
from test_gw_reads import ALL, build, cycle, messages

from villageami.contract import envelope
from villageami.contract.envelope import CommandStatus
from villageami.gateway.app import Gateway
from villageami.gateway.control import CommandRecord
from villageami.meters.driver import MeterAction


def command(gateway: Gateway, ctype: str, serial: str | None = "M1", **kw: Any) -> tuple[str, bytes, str]:
    now = datetime.now(UTC)
    command_id = kw.pop("command_id", str(uuid.uuid4()))
    body = envelope.command(
        command_id=command_id,
        command_type=ctype,
        ts=kw.pop("ts", now),
        expires_at=kw.pop("expires_at", now + timedelta(minutes=15)),
        issued_by="hes:test",
        **kw,
    )
    topic = gateway.northbound.topic(envelope.MessageKind.COMMAND, serial)
    return topic, orjson.dumps(body), command_id


def results(gateway: Gateway, command_id: str) -> list[dict[str, Any]]:
    return [m for m in messages(gateway, "/command/result") if m["commandId"] == command_id]


async def send(gateway: Gateway, topic: str, payload: bytes) -> None:
    gateway.control.handle_message(topic, payload)
    await gateway.control.wait_idle()


def test_disconnect_and_reconnect_confirmed_by_read_back(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    off_topic, off, off_id = command(gateway, "disconnect")
    on_topic, on, on_id = command(gateway, "reconnect")

    async def scenario() -> None:
        await send(gateway, off_topic, off)
        assert fleet.meters["M1"].relay == "disconnected"
        await send(gateway, on_topic, on)

    asyncio.run(scenario())
    off_results = results(gateway, off_id)
    assert [r["status"] for r in off_results] == ["accepted", "executing", "succeeded"]
    assert off_results[-1]["registers"][0] == off_results[-1]["registers"][0] | {
        "obis": "0.0.96.3.10.255",
        "value": "disconnected",
    }
    assert [r["status"] for r in results(gateway, on_id)][-1] == "succeeded"
    assert fleet.meters["M1"].actions == [MeterAction.DISCONNECT, MeterAction.RECONNECT]


def test_relay_that_does_not_move_fails_with_read_back(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    fleet.meters["M1"].relay_stuck = True
    topic, payload, command_id = command(gateway, "disconnect")
    asyncio.run(send(gateway, topic, payload))
    final = results(gateway, command_id)[-1]
    assert final["status"] == "failed"
    assert final["detail"]["readback"] == "connected"


def test_expired_invalid_unknown_and_unsupported_commands_are_refused(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    now = datetime.now(UTC)
    # Issued 20 min ago with a 15 min TTL: held at the broker during an outage, stale on arrival (G20).
    expired = command(
        gateway, "disconnect", ts=now - timedelta(minutes=20), expires_at=now - timedelta(minutes=5)
    )
    unknown = command(gateway, "disconnect", serial="NOT-HERE")
    unsupported = command(gateway, "set_mode", params={"mode": "auto"})
    invalid_topic, _, invalid_id = command(gateway, "disconnect")
    invalid = orjson.dumps({"commandId": invalid_id, "type": "disconnect"})

    async def scenario() -> None:
        for topic, payload, _ in (expired, unknown, unsupported):
            await send(gateway, topic, payload)
        await send(gateway, invalid_topic, invalid)

    asyncio.run(scenario())
    assert [r["status"] for r in results(gateway, expired[2])] == ["expired"]
    assert [r["status"] for r in results(gateway, unknown[2])] == ["rejected"]
    assert [r["status"] for r in results(gateway, unsupported[2])] == ["rejected"]
    refused = results(gateway, invalid_id)
    assert [r["status"] for r in refused] == ["rejected"] and refused[0]["detail"]["problems"]
    assert fleet.meters["M1"].actions == [], "nothing refused reaches the meter"


def test_duplicate_command_id_republishes_stored_result_without_executing_again(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    topic, payload, command_id = command(gateway, "disconnect")

    async def scenario() -> None:
        await send(gateway, topic, payload)
        await send(gateway, topic, payload)

    asyncio.run(scenario())
    statuses = results(gateway, command_id)
    assert [r["status"] for r in statuses] == ["accepted", "executing", "succeeded", "succeeded"]
    assert statuses[-1]["detail"]["duplicate"] is True
    assert fleet.meters["M1"].actions == [MeterAction.DISCONNECT]


def test_read_now_and_sync_clock(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    fleet.meters["M1"].clock_offset_s = 900.0
    read_topic, read_payload, read_id = command(gateway, "read_now")
    sync_topic, sync_payload, sync_id = command(gateway, "sync_clock")

    async def scenario() -> None:
        await send(gateway, read_topic, read_payload)
        await send(gateway, sync_topic, sync_payload)

    asyncio.run(scenario())
    read_final = results(gateway, read_id)[-1]
    assert read_final["status"] == "succeeded"
    assert {r["obis"] for r in read_final["registers"]} >= {"1.8.0", "0.0.96.3.10.255"}
    assert messages(gateway, "/telemetry"), "read_now publishes telemetry too"
    sync_final = results(gateway, sync_id)[-1]
    assert sync_final["status"] == "succeeded" and abs(sync_final["detail"]["driftS"]) < 5


RESTART_ID = "5f0c1d2e-3b4a-4c5d-8e6f-708192a3b4c5"


def _restart_with(
    tmp_path: Path, record_status: CommandStatus, relay: str, expired: bool
) -> tuple[Gateway, Any]:
    """A gateway that died with a disconnect command in ``record_status``; the new one recovers it."""
    first, _ = build(tmp_path, [meter_entry("M1")])
    now = datetime.now(UTC)
    expires = now - timedelta(seconds=1) if expired else now + timedelta(minutes=5)
    record = CommandRecord(RESTART_ID, "M1", "disconnect", record_status, expires, "hes:test", None, [], {})
    first.journal.insert(record, now)
    first.outbox.close()
    first.journal.close()
    fleet = FakeFleet()
    config = make_config(tmp_path, [meter_entry("M1")])
    second = Gateway(config, base_dir=tmp_path, driver_factory=fleet, profile_loader=no_profile)
    fleet.meters["M1"].relay = relay

    async def scenario() -> None:
        second.control.recover()
        await second.control.wait_idle()

    asyncio.run(scenario())
    return second, fleet.meters["M1"]


def test_restart_mid_command_verifies_by_read_back_instead_of_re_executing(tmp_path: Path) -> None:
    gateway, meter = _restart_with(tmp_path, CommandStatus.EXECUTING, relay="disconnected", expired=False)
    final = results(gateway, RESTART_ID)[-1]
    assert final["status"] == "succeeded" and "read-back" in final["detail"]["reason"]
    assert meter.actions == [], "the relay was already open: not executed a second time"


def test_restart_mid_command_re_executes_only_when_read_back_shows_it_did_not_happen(tmp_path: Path) -> None:
    gateway, meter = _restart_with(tmp_path, CommandStatus.EXECUTING, relay="connected", expired=False)
    assert [r["status"] for r in results(gateway, RESTART_ID)] == ["executing", "succeeded"]
    assert meter.actions == [MeterAction.DISCONNECT]


def test_restart_mid_command_that_expired_fails_without_execution(tmp_path: Path) -> None:
    gateway, meter = _restart_with(tmp_path, CommandStatus.EXECUTING, relay="connected", expired=True)
    final = results(gateway, RESTART_ID)[-1]
    assert final["status"] == "failed" and meter.actions == []


def test_local_rule_disconnects_on_exhausted_credit_without_uplink(tmp_path: Path) -> None:
    meters = [meter_entry("M1", prepaid=True, enforcesCredit=False), meter_entry("M2", prepaid=True)]
    gateway, fleet = build(tmp_path, meters, rules={"autoDisconnectOnCreditExhausted": True})

    async def scenario() -> None:
        await cycle(gateway, ALL)
        fleet.meters["M1"].credit_kwh = 0.0
        fleet.meters["M2"].credit_kwh = 0.0
        await cycle(gateway, ALL)
        await gateway.control.wait_idle()
        await cycle(gateway, ALL)  # already disconnected: no second command
        await gateway.control.wait_idle()
        fleet.meters["M1"].credit_kwh = 10.0
        await cycle(gateway, ALL)
        await gateway.control.wait_idle()

    asyncio.run(scenario())
    assert not gateway.uplink.connected.is_set()
    assert fleet.meters["M1"].actions == [MeterAction.DISCONNECT, MeterAction.RECONNECT]
    assert fleet.meters["M2"].actions == [], "a meter that enforces credit itself is left alone"
    local = [r for r in messages(gateway, "/command/result") if r["status"] == "succeeded"]
    assert [r["meterSerial"] for r in local] == ["M1", "M1"]


def test_gateway_level_ping_is_answered_on_the_gateway_result_topic(tmp_path: Path) -> None:
    gateway, _ = build(tmp_path, [meter_entry("M1")])
    topic, payload, command_id = command(gateway, "ping", serial=None)
    asyncio.run(send(gateway, topic, payload))
    answered = [m for m in messages(gateway, "/gateway/command/result") if m["commandId"] == command_id]
    assert [m["status"] for m in answered] == ["accepted", "succeeded"]
    assert answered[-1]["meterSerial"] is None
