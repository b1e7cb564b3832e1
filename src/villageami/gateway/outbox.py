"""Durable outbox: every northbound message is written here before it may leave the gateway.

Guarantees (tested in tests/gateway/test_gw_outbox.py, including a SIGKILL mid-write loop):

* Every message gets a ``msgId`` (UUIDv4) and a per-gateway monotonic ``seq``. The seq counter and the message
  row are written in one transaction, so a crash can never hand out a seq twice or store a message without
  the counter moving past it.
* A message leaves the outbox only through :meth:`Outbox.ack`, which the uplink calls on the broker's PUBACK.
* Disk is bounded: when the stored payload bytes exceed ``max_bytes``, the oldest *telemetry* is evicted first
  and, in the same transaction, a ``data_gap`` event naming the evicted seq range and meters is enqueued.
  Events and command results are never evicted (the outbox may then exceed its bound; that is logged).
* At most one data_gap per meter waits in the outbox: a new eviction for a meter whose data_gap the broker has
  not acknowledged yet replaces that event (same transaction) by one covering both ranges. Otherwise a long
  outage adds one never-evictable event per reading and the outbox fills with data_gap events instead of
  readings (tests/gateway/test_gw_review_outbox.py).

Durability: SQLite in WAL mode with ``synchronous=FULL``. In WAL mode NORMAL already survives a process kill
(committed pages are in the WAL file, the OS keeps them), but it may lose the last commits on power loss; a
pole gateway loses power routinely, and the write rate is small (one message per meter per cycle), so
every commit pays one fsync. The methods are synchronous and short; event-loop callers call them
directly.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from villageami.contract.envelope import format_ts
from villageami.errors import VillageAmiError
from villageami.gateway.storage import open_durable_db

log = logging.getLogger("villageami.gateway.outbox")

# Message kinds. Only telemetry may be evicted.
TELEMETRY = "telemetry"
EVICTABLE_KINDS = frozenset({TELEMETRY})

# Builds the full envelope once msgId and seq are allocated: (msg_id, seq) -> envelope.
EnvelopeBuilder = Callable[[str, int], dict[str, Any]]


class OutboxError(VillageAmiError):
    """The outbox database cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    msg_id: str
    kind: str
    topic: str
    envelope: dict[str, Any]
    meter_serial: str | None
    created_at: datetime
    retain: bool

    def wire_payload(self, *, replayed: bool, published_at: datetime | None = None) -> bytes:
        """The bytes to publish. A replay adds ``replayed``/``publishedAt``; msgId never changes."""
        if not replayed:
            return orjson.dumps(self.envelope)
        body = dict(self.envelope)
        body["replayed"] = True
        body["publishedAt"] = format_ts(published_at or datetime.now(UTC))
        return orjson.dumps(body)


@dataclass(frozen=True, slots=True)
class MeterGap:
    """Telemetry of one meter evicted to keep the outbox within its bound."""

    meter_serial: str | None
    first_seq: int
    last_seq: int
    count: int
    first_ts: str | None
    last_ts: str | None


@dataclass(frozen=True, slots=True)
class Eviction:
    """What one eviction removed, per meter (the content of the data_gap events)."""

    gaps: tuple[MeterGap, ...]

    @property
    def count(self) -> int:
        return sum(g.count for g in self.gaps)


# Builds the data_gap event of one meter's gap: (gap) -> (topic, kind, builder).
GapEventFactory = Callable[[MeterGap], tuple[str, str, EnvelopeBuilder]]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    meter_serial TEXT,
    created_at TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_kind_seq ON messages (kind, seq);
-- The data_gap events still in the outbox, so a later eviction of the same meter merges into them.
-- meter_key is the serial ('' for telemetry without one).
CREATE TABLE IF NOT EXISTS gap_events (
    seq INTEGER PRIMARY KEY,
    meter_key TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first_ts TEXT,
    last_ts TEXT
);
CREATE INDEX IF NOT EXISTS gap_events_meter ON gap_events (meter_key);
"""


class Outbox:
    """A SQLite-backed, crash-safe message queue with per-gateway seq numbers."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        gap_event: GapEventFactory | None = None,
        on_eviction: Callable[[Eviction], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._gap_event = gap_event
        self._on_eviction = on_eviction
        # BEGIN IMMEDIATE around each enqueue makes the seq read-modify-write atomic.
        self._db = open_durable_db(self.path, _SCHEMA, what="outbox database", error=OutboxError)
        self._bytes = 0
        self._over_bound_logged = False
        self._recount()

    def _recount(self) -> None:
        # The in-memory byte count mirrors the table; after a rolled-back transaction it is read again.
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0])

    # -- writing ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _insert(
        self,
        db: sqlite3.Connection,
        topic: str,
        kind: str,
        build: EnvelopeBuilder,
        meter_serial: str | None,
        retain: bool,
    ) -> StoredMessage:
        seq = int(
            db.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value").fetchone()[
                0
            ]
        )
        msg_id = str(uuid.uuid4())
        envelope = build(msg_id, seq)
        if envelope.get("msgId") != msg_id or envelope.get("seq") != seq:
            raise OutboxError(f"envelope builder for {topic} did not carry msgId/seq {msg_id}/{seq}")
        if meter_serial is None and isinstance(envelope.get("meterSerial"), str):
            meter_serial = envelope["meterSerial"]
        payload = orjson.dumps(envelope)
        now = datetime.now(UTC)
        db.execute(
            "INSERT INTO messages (seq, msg_id, kind, topic, payload, size, meter_serial, created_at, retain)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, msg_id, kind, topic, payload, len(payload), meter_serial, now.isoformat(), int(retain)),
        )
        self._bytes += len(payload)
        return StoredMessage(seq, msg_id, kind, topic, envelope, meter_serial, now, retain)

    def enqueue(
        self,
        topic: str,
        kind: str,
        build: EnvelopeBuilder,
        *,
        meter_serial: str | None = None,
        retain: bool = False,
    ) -> StoredMessage:
        """Allocate msgId + seq, build the envelope and store it durably. Returns once committed (fsynced)."""
        try:
            with self._transaction() as db:
                stored = self._insert(db, topic, kind, build, meter_serial, retain)
                eviction = self._evict_if_needed(db) if self._bytes > self.max_bytes else None
        except sqlite3.Error as exc:
            self._recount()
            raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from exc
        except BaseException:
            self._recount()
            raise
        if eviction is not None and self._on_eviction is not None:
            self._on_eviction(eviction)
        self._log_bound()
        return stored

    def _log_bound(self) -> None:
        # Once per crossing: only events and command results are left and they are never evicted.
        over = self._bytes > self.max_bytes
        if over and not self._over_bound_logged:
            log.warning(
                f"outbox {self.path} exceeds its bound of {self.max_bytes} bytes ({self._bytes} stored):"
                " only events and command results are left and they are never evicted",
                extra={"storedBytes": self._bytes, "maxBytes": self.max_bytes},
            )
        self._over_bound_logged = over

    def _evict_if_needed(self, db: sqlite3.Connection) -> Eviction | None:
        """Drop the oldest telemetry to fit; enqueue the data_gap event in the same transaction."""
        excess = self._bytes - self.max_bytes
        rows = db.execute(
            "SELECT seq, size, meter_serial, payload FROM messages WHERE kind = ? ORDER BY seq", (TELEMETRY,)
        )
        evicted: list[tuple[int, int, str | None, bytes]] = []
        freed = 0
        for row in rows:
            if freed >= excess:
                break
            evicted.append(row)
            freed += int(row[1])
        if not evicted:
            return None
        seqs = [r[0] for r in evicted]
        db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in seqs])
        self._bytes -= freed
        by_meter: dict[str | None, list[tuple[int, bytes]]] = {}
        for seq, _, serial, payload in evicted:
            by_meter.setdefault(serial, []).append((seq, payload))
        gaps: list[MeterGap] = []
        for serial, items in by_meter.items():
            first_ts = orjson.loads(items[0][1]).get("ts")
            last_ts = orjson.loads(items[-1][1]).get("ts")
            gaps.append(MeterGap(serial, items[0][0], items[-1][0], len(items), first_ts, last_ts))
        eviction = Eviction(tuple(gaps))
        if self._gap_event is not None:
            for gap in gaps:
                merged = self._merge_pending_gap(db, gap)
                topic, kind, build = self._gap_event(merged)
                stored = self._insert(db, topic, kind, build, merged.meter_serial, False)
                db.execute(
                    "INSERT INTO gap_events (seq, meter_key, first_seq, last_seq, count, first_ts, last_ts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        stored.seq,
                        merged.meter_serial or "",
                        merged.first_seq,
                        merged.last_seq,
                        merged.count,
                        merged.first_ts,
                        merged.last_ts,
                    ),
                )
        return eviction

    def _merge_pending_gap(self, db: sqlite3.Connection, gap: MeterGap) -> MeterGap:
        """Remove the meter's unacknowledged data_gap (if any) and return ``gap`` widened to cover it."""
        key = gap.meter_serial or ""
        rows = db.execute(
            "SELECT g.seq, g.first_seq, g.count, g.first_ts, m.size FROM gap_events g"
            " LEFT JOIN messages m ON m.seq = g.seq WHERE g.meter_key = ? ORDER BY g.seq",
            (key,),
        ).fetchall()
        db.execute("DELETE FROM gap_events WHERE meter_key = ?", (key,))
        merged = gap
        for seq, first_seq, count, first_ts, size in rows:
            if size is None:
                continue  # acknowledged meanwhile: that range was delivered
            db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
            self._bytes -= int(size)
            merged = MeterGap(
                gap.meter_serial,
                min(first_seq, merged.first_seq),
                merged.last_seq,
                merged.count + int(count),
                first_ts if first_seq < merged.first_seq else merged.first_ts,
                merged.last_ts,
            )
        return merged

    def ack(self, seq: int) -> None:
        """The broker acknowledged this message (PUBACK): remove it for good."""
        try:
            with self._transaction() as db:
                row = db.execute("DELETE FROM messages WHERE seq = ? RETURNING size", (seq,)).fetchone()
                db.execute("DELETE FROM gap_events WHERE seq = ?", (seq,))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot delete message seq {seq} from outbox {self.path}: {exc}") from exc
        if row is not None:
            self._bytes -= int(row[0])

    # -- reading ---------------------------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[StoredMessage]:
        """Stored messages with seq > after_seq, in seq order."""
        rows = self._db.execute(
            "SELECT seq, msg_id, kind, topic, payload, meter_serial, created_at, retain"
            " FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [
            StoredMessage(
                seq=r[0],
                msg_id=r[1],
                kind=r[2],
                topic=r[3],
                envelope=orjson.loads(r[4]),
                meter_serial=r[5],
                created_at=datetime.fromisoformat(r[6]),
                retain=bool(r[7]),
            )
            for r in rows
        ]

    def depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def stored_bytes(self) -> int:
        return self._bytes

    def last_seq(self) -> int:
        """The highest seq ever allocated (also after its message was acknowledged and deleted)."""
        return int(self._db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0])

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
