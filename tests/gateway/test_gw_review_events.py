"""Adversarial review of events: an outbox write error must not swallow an edge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gw_fakes import meter_entry
from test_gw_reads import ALL, build, cycle, messages

from villageami.gateway.outbox import OutboxError


def test_edge_whose_message_could_not_be_stored_is_raised_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The detector flips its in-memory state before the message reaches the outbox. Before the fix, a write
    # error (disk full, I/O error) in between left the state "raised" with no event stored: the next reads
    # saw no change, so the tamper event was never published.
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    asyncio.run(cycle(gateway, ALL))
    fleet.meters["M1"].tamper_bits = 0b1
    real_enqueue = gateway.outbox.enqueue
    calls = {"n": 0}

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OutboxError("cannot write to outbox: database or disk is full")
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(gateway.outbox, "enqueue", failing_once)
    with pytest.raises(OutboxError):
        asyncio.run(cycle(gateway, ALL))  # the loop's supervisor logs and restarts it
    asyncio.run(cycle(gateway, ALL))
    tamper = [e["event"] for e in messages(gateway, "/event") if e["event"]["type"] == "tamper"]
    assert [t["state"] for t in tamper] == ["raised"]


def test_comms_lost_edge_survives_a_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, fleet = build(tmp_path, [meter_entry("M1")])
    asyncio.run(cycle(gateway, ALL))
    fleet.meters["M1"].dead = True
    real_enqueue = gateway.outbox.enqueue

    def event_fails(topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic.endswith("/event"):
            raise OutboxError("cannot write to outbox: disk I/O error")
        return real_enqueue(topic, *args, **kwargs)

    monkeypatch.setattr(gateway.outbox, "enqueue", event_fails)
    with pytest.raises(OutboxError):
        asyncio.run(cycle(gateway, ALL))
    monkeypatch.setattr(gateway.outbox, "enqueue", real_enqueue)
    gateway.pollers["M1"].skip_cycles = 0  # the dead-meter backoff is not what this test is about
    asyncio.run(cycle(gateway, ALL))
    lost = [e["event"] for e in messages(gateway, "/event") if e["event"]["type"] == "meter_comms_lost"]
    assert len(lost) == 1
