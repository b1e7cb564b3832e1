"""Outbox: atomic msgId/seq, PUBACK-gated delete, bounded disk with data_gap, survival of SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from villageami.gateway.outbox import EnvelopeBuilder, Eviction, MeterGap, Outbox


def telemetry(serial: str, value: float) -> EnvelopeBuilder:
    def build(msg_id: str, seq: int) -> dict[str, Any]:
        return {
            "msgId": msg_id,
            "seq": seq,
            "ts": f"2026-01-01T00:00:{seq % 60:02d}Z",
            "meterSerial": serial,
            "registers": [{"obis": "1.8.0", "value": value, "unit": "kWh", "quality": "good"}],
        }

    return build


def event(kind: str) -> EnvelopeBuilder:
    def build(msg_id: str, seq: int) -> dict[str, Any]:
        return {"msgId": msg_id, "seq": seq, "event": {"type": kind}}

    return build


def gap_event(gap: MeterGap) -> tuple[str, str, EnvelopeBuilder]:
    def build(msg_id: str, seq: int) -> dict[str, Any]:
        detail = {"firstSeq": gap.first_seq, "lastSeq": gap.last_seq, "count": gap.count}
        event = {"type": "data_gap", "detail": detail}
        return {"msgId": msg_id, "seq": seq, "meterSerial": gap.meter_serial, "event": event}

    return f"m/{gap.meter_serial}/event", "event", build


def test_seq_is_monotonic_and_msg_ids_unique(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    stored = [box.enqueue("t", "telemetry", telemetry("M1", i)) for i in range(5)]
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    assert len({m.msg_id for m in stored}) == 5
    assert all(m.envelope["seq"] == m.seq and m.envelope["msgId"] == m.msg_id for m in stored)


def test_ack_removes_only_that_message_and_seq_never_reused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for i in range(3):
        box.enqueue("t", "telemetry", telemetry("M1", i))
    box.ack(2)
    assert [m.seq for m in box.pending()] == [1, 3]
    box.ack(1)
    box.ack(3)
    box.close()
    reopened = Outbox(tmp_path / "o.db")
    assert reopened.depth() == 0
    assert reopened.enqueue("t", "telemetry", telemetry("M1", 9)).seq == 4


def test_pending_survives_reopen_in_seq_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for i in range(4):
        box.enqueue(f"t/{i}", "telemetry", telemetry("M1", i))
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert [m.topic for m in again.pending()] == ["t/0", "t/1", "t/2", "t/3"]
    assert [m.seq for m in again.pending(after_seq=2)] == [3, 4]


def test_replay_payload_marks_replayed_and_keeps_msg_id(tmp_path: Path) -> None:
    import orjson

    box = Outbox(tmp_path / "o.db")
    msg = box.enqueue("t", "telemetry", telemetry("M1", 1.0))
    live = orjson.loads(msg.wire_payload(replayed=False))
    replay = orjson.loads(msg.wire_payload(replayed=True))
    assert "replayed" not in live and "publishedAt" not in live
    assert replay["replayed"] is True and replay["publishedAt"].endswith("Z")
    assert replay["msgId"] == live["msgId"] == msg.msg_id


def test_bound_evicts_oldest_telemetry_never_events_and_reports_gap(tmp_path: Path) -> None:
    evictions: list[Eviction] = []
    box = Outbox(tmp_path / "o.db", max_bytes=10**9, gap_event=gap_event, on_eviction=evictions.append)
    one = box.enqueue("t", "telemetry", telemetry("M1", 0.0))
    size = len(one.wire_payload(replayed=False))
    box.enqueue("e", "event", event("tamper"))
    box.enqueue("t", "telemetry", telemetry("M2", 0.0))
    box.enqueue("r", "command_result", event("result"))
    # Room for about four telemetry messages: the next ones push the oldest telemetry out.
    box.max_bytes = box.stored_bytes() + size // 2
    box.enqueue("t", "telemetry", telemetry("M3", 0.0))
    assert evictions, "an eviction was expected"
    kept = box.pending()
    kinds = {m.seq: m.kind for m in kept}
    assert 2 in kinds and 4 in kinds, "events and command results are never evicted"
    assert 1 not in kinds, "the oldest telemetry goes first"
    gap = [m for m in kept if m.envelope.get("event", {}).get("type") == "data_gap"]
    assert len(gap) == 1
    assert gap[0].meter_serial == "M1"
    assert gap[0].envelope["event"]["detail"] == {"firstSeq": 1, "lastSeq": 1, "count": 1}
    assert box.stored_bytes() <= box.max_bytes + 2 * size


def test_bound_with_only_events_keeps_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=10, gap_event=gap_event)
    for _ in range(5):
        box.enqueue("e", "event", event("tamper"))
    assert box.depth() == 5


WRITER = textwrap.dedent(
    """
    import sys
    from villageami.gateway.outbox import Outbox
    box = Outbox(sys.argv[1])
    i = 0
    while True:
        def build(msg_id, seq, i=i):
            return {"msgId": msg_id, "seq": seq, "n": i}
        m = box.enqueue("t", "telemetry", build, meter_serial="M1")
        if m.seq % 3 == 0:
            box.ack(m.seq)  # acknowledged messages go away; the seq counter must not move back
        sys.stdout.write(f"{m.seq} {m.msg_id}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_sigkill_mid_write_loses_nothing_and_never_reuses_seq(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged: dict[int, str] = {}
    try:
        for line in proc.stdout:
            seq, msg_id = line.split()
            acknowledged[int(seq)] = msg_id
            if len(acknowledged) >= 200:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    box = Outbox(db)
    present = {m.seq: m.msg_id for m in box.pending(limit=100_000)}
    for seq, msg_id in acknowledged.items():
        if seq % 3 == 0:
            continue
        assert present.get(seq) == msg_id, f"acknowledged enqueue seq {seq} lost"
    # Seqs form a gap-free run: every seq up to the counter is present unless it was acked (multiples
    # of 3; the last one may have been killed between its enqueue and its ack).
    top = box.last_seq()
    assert top >= max(acknowledged)
    assert max(present) <= top
    for seq in range(1, top + 1):
        if seq % 3:
            assert seq in present, f"seq {seq} missing"
        elif seq in acknowledged:
            assert seq not in present, f"acked seq {seq} came back"
    assert box.enqueue("t", "telemetry", telemetry("M1", 0)).seq == top + 1
