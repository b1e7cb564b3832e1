"""Adversarial review of commands: reused commandIds and commandIds that break the contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from gw_fakes import meter_entry
from test_gw_control import command, results, send
from test_gw_reads import build, messages


def test_reused_command_id_with_a_different_type_is_not_reported_as_that_command_succeeding(
    tmp_path: Path,
) -> None:
    # Before the fix a reconnect reusing a disconnect's commandId got the disconnect's "succeeded" back
    # with only duplicate: true, so the head-end believed its reconnect had run.
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    topic, off, command_id = command(gateway, "disconnect")
    reused = orjson.dumps(orjson.loads(off) | {"type": "reconnect"})

    async def scenario() -> None:
        await send(gateway, topic, off)
        await send(gateway, topic, reused)
        await send(gateway, topic, off)  # a genuine re-send stays a plain duplicate

    asyncio.run(scenario())
    assert fleet.meters["M1"].actions == [fleet.meters["M1"].actions[0]], "executed once only"
    assert fleet.meters["M1"].relay == "disconnected"
    got = results(gateway, command_id)
    assert [r["status"] for r in got] == ["accepted", "executing", "succeeded", "succeeded", "succeeded"]
    conflict = got[3]["detail"]
    assert conflict["duplicate"] is True
    assert "'disconnect'" in conflict["conflict"] and "type" in conflict["conflict"]
    assert "not executed" in conflict["conflict"]
    assert got[4]["detail"] == {"readback": "disconnected", "duplicate": True}


def test_reused_command_id_on_another_meter_is_flagged(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1"), meter_entry("M2")])
    topic, off, command_id = command(gateway, "disconnect")
    other_topic, _, _ = command(gateway, "disconnect", serial="M2")

    async def scenario() -> None:
        await send(gateway, topic, off)
        await send(gateway, other_topic, off)

    asyncio.run(scenario())
    assert fleet.meters["M2"].relay == "connected"
    got = results(gateway, command_id)
    assert "meter" in got[-1]["detail"]["conflict"]


def test_command_id_that_breaks_the_contract_never_produces_an_invalid_result(tmp_path: Path) -> None:
    # Before the fix the rejected result echoed the bad commandId, so the gateway itself published a
    # message that fails the contract (the head-end drops it) and journaled a 5000-character key.
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    topic, body, _ = command(gateway, "disconnect")
    bad_ids = ["t1", "x" * 5000, "a/b\u0000c"]

    async def scenario() -> None:
        for bad in bad_ids:
            await send(gateway, topic, orjson.dumps(orjson.loads(body) | {"commandId": bad}))

    asyncio.run(scenario())
    assert messages(gateway, "/command/result") == []  # messages() validates every stored message
    assert fleet.meters["M1"].actions == []
    assert all(gateway.journal.get(bad) is None for bad in bad_ids)


def test_valid_command_id_with_malformed_body_is_rejected_naming_the_problem(tmp_path: Path) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    topic, body, command_id = command(gateway, "disconnect")

    async def scenario() -> None:
        await send(gateway, topic, orjson.dumps(orjson.loads(body) | {"expiresAt": 5, "params": "zz"}))

    asyncio.run(scenario())
    (result,) = results(gateway, command_id)
    assert result["status"] == "rejected"
    problems = " ".join(result["detail"]["problems"])
    assert "/expiresAt" in problems and "/params" in problems
    assert fleet.meters["M1"].actions == []
