"""Adversarial review of the outbox: eviction under a long outage, and its accounting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_gw_outbox import event, gap_event, telemetry

from villageami.gateway.outbox import Eviction, Outbox


def _gaps(box: Outbox) -> list[dict[str, int]]:
    return [
        m.envelope["event"]["detail"]
        for m in box.pending(limit=10**6)
        if m.envelope.get("event", {}).get("type") == "data_gap"
    ]


def test_long_outage_keeps_outbox_bounded_and_every_evicted_reading_accounted(tmp_path: Path) -> None:
    # A broker outage of days: far more telemetry than fits. Before the fix every eviction added a new,
    # never-evictable data_gap event, so the outbox grew by one event per reading without bound.
    evictions: list[Eviction] = []
    box = Outbox(tmp_path / "o.db", max_bytes=4096, gap_event=gap_event, on_eviction=evictions.append)
    meters = ["M1", "M2", "M3"]
    enqueued = 0
    for i in range(600):
        box.enqueue("t", "telemetry", telemetry(meters[i % 3], float(i)))
        enqueued += 1
    gaps = _gaps(box)
    telemetry_left = [m for m in box.pending(limit=10**6) if m.kind == "telemetry"]
    assert telemetry_left, "the newest readings must still be stored"
    assert len(gaps) <= len(meters), f"one pending data_gap per meter at most, got {len(gaps)}"
    one_gap = max(len(m.wire_payload(replayed=False)) for m in box.pending(limit=10**6))
    assert box.stored_bytes() <= box.max_bytes + len(meters) * one_gap
    # Nothing is lost silently: every reading is either stored or counted in a data_gap.
    assert sum(g["count"] for g in gaps) + len(telemetry_left) == enqueued
    assert sum(e.count for e in evictions) == sum(g["count"] for g in gaps)


def test_merged_gap_covers_the_whole_evicted_range_per_meter(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=4096, gap_event=gap_event)
    seqs: dict[str, list[int]] = {"M1": [], "M2": []}
    for i in range(200):
        serial = "M1" if i % 2 == 0 else "M2"
        seqs[serial].append(box.enqueue("t", "telemetry", telemetry(serial, float(i))).seq)
    stored = {m.seq for m in box.pending(limit=10**6)}
    for m in box.pending(limit=10**6):
        detail = m.envelope.get("event", {}).get("detail")
        if detail is None:
            continue
        serial = m.meter_serial
        assert serial is not None
        evicted = [s for s in seqs[serial] if s not in stored]
        assert detail == {"firstSeq": evicted[0], "lastSeq": evicted[-1], "count": len(evicted)}


def test_acked_gap_is_not_merged_again(tmp_path: Path) -> None:
    # A data_gap the broker acknowledged is delivered; the next eviction reports only the new range.
    box = Outbox(tmp_path / "o.db", max_bytes=4096, gap_event=gap_event)
    for i in range(60):
        box.enqueue("t", "telemetry", telemetry("M1", float(i)))
    (first,) = [m for m in box.pending(limit=10**6) if m.kind == "event"]
    box.ack(first.seq)
    delivered = first.envelope["event"]["detail"]
    for i in range(60):
        box.enqueue("t", "telemetry", telemetry("M1", float(i)))
    (second,) = _gaps(box)
    assert second["firstSeq"] > delivered["lastSeq"]


def test_gap_merge_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=4096, gap_event=gap_event)
    for i in range(60):
        box.enqueue("t", "telemetry", telemetry("M1", float(i)))
    box.close()
    box = Outbox(tmp_path / "o.db", max_bytes=4096, gap_event=gap_event)
    for i in range(60):
        box.enqueue("t", "telemetry", telemetry("M1", float(i)))
    assert len(_gaps(box)) == 1


def test_outbox_over_its_bound_with_nothing_evictable_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # docs/gateway.md: "Events and command results are never evicted (the outbox may then exceed its bound;
    # that is logged)". Before the fix nothing was logged.
    box = Outbox(tmp_path / "o.db", max_bytes=10, gap_event=gap_event)
    with caplog.at_level(logging.WARNING, logger="villageami.gateway.outbox"):
        for _ in range(3):
            box.enqueue("e", "event", event("tamper"))
    assert box.depth() == 3
    assert any("exceeds its bound" in r.getMessage() for r in caplog.records)
