"""Edge-detected meter events: each fires once per change, never once per cycle.

Per meter the detector remembers the last tamper flags, disconnect state, credit band, clock-drift and comms
condition, and power state (from 96.11.5 where the meter reports it). A condition is ``raised`` when entered
and ``cleared`` when left; a disconnect state change is ``momentary`` with ``from``/``to``. The first
observation after start only raises conditions that are already active (tamper flags set, credit low,
clock off); it never reports a "change" it did not see.

The per-meter state survives a restart: :class:`EdgeStateStore` keeps it in SQLite (a table in the command
journal's database) and the gateway saves a meter's state after the events that changed it are in the outbox.
So a restart neither raises an active condition again nor misses a clear that happened while the gateway was
down. A crash between "events in the outbox" and "state saved" at worst sends the same edge twice; it never
loses one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from villageami.contract.envelope import EventState, EventType, Severity
from villageami.contract.vmrs import CREDIT_KEY, DISCONNECT_KEY, TAMPER_KEY
from villageami.errors import VillageAmiError
from villageami.gateway.messages import DetectedEvent
from villageami.gateway.storage import open_durable_db
from villageami.meters.normalise import VmrsReading

POWER_KEY = "96.11.5"
_POWER_FAIL_WORDS = ("power_fail", "power fail", "last_gasp", "last gasp", "power_down", "power down")
_POWER_RESTORED_WORDS = ("power_restored", "power restored", "power_up", "power up")


@dataclass(slots=True)
class _MeterState:
    tamper_flags: frozenset[str] | None = None
    tamper_raw: int | None = None
    disconnect: str | None = None
    credit_low: bool = False
    credit_exhausted: bool = False
    clock_drift: bool = False
    comms_lost: bool = False
    power_failed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tamperFlags": None if self.tamper_flags is None else sorted(self.tamper_flags),
            "tamperRaw": self.tamper_raw,
            "disconnect": self.disconnect,
            "creditLow": self.credit_low,
            "creditExhausted": self.credit_exhausted,
            "clockDrift": self.clock_drift,
            "commsLost": self.comms_lost,
            "powerFailed": self.power_failed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _MeterState:
        """Tolerant: a field missing (older row) or of the wrong type falls back to "not seen"."""

        def flag(name: str) -> bool:
            return data.get(name) is True

        flags = data.get("tamperFlags")
        raw = data.get("tamperRaw")
        disconnect = data.get("disconnect")
        power = data.get("powerFailed")
        return cls(
            tamper_flags=frozenset(str(f) for f in flags) if isinstance(flags, list) else None,
            tamper_raw=raw if isinstance(raw, int) and not isinstance(raw, bool) else None,
            disconnect=disconnect if isinstance(disconnect, str) else None,
            credit_low=flag("creditLow"),
            credit_exhausted=flag("creditExhausted"),
            clock_drift=flag("clockDrift"),
            comms_lost=flag("commsLost"),
            power_failed=power if isinstance(power, bool) else None,
        )


class EdgeStateError(VillageAmiError):
    """The event edge-state table cannot be opened or written."""


_EDGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_state (
    meter_serial TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
"""


class EdgeStateStore:
    """Which conditions are raised per meter, durably (SQLite WAL, synchronous=FULL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_durable_db(self.path, _EDGE_SCHEMA, what="event state table in", error=EdgeStateError)

    def load(self) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT meter_serial, state FROM event_state").fetchall()
        out: dict[str, dict[str, Any]] = {}
        for serial, blob in rows:
            with contextlib.suppress(orjson.JSONDecodeError):
                data = orjson.loads(blob)
                if isinstance(data, dict):
                    out[str(serial)] = data
        return out

    def save(self, serial: str, state: Mapping[str, Any], now: datetime) -> None:
        try:
            self._db.execute(
                "INSERT INTO event_state (meter_serial, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (meter_serial) DO UPDATE"
                " SET state = excluded.state, updated_at = excluded.updated_at",
                (serial, orjson.dumps(dict(state)), now.isoformat()),
            )
        except sqlite3.Error as exc:
            raise EdgeStateError(f"cannot save event state of meter {serial} in {self.path}: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


@dataclass(slots=True)
class EventDetector:
    credit_low_threshold: float = 5.0
    clock_drift_threshold_s: float = 120.0
    _meters: dict[str, _MeterState] = field(default_factory=dict)
    _touched: set[str] = field(default_factory=set)

    def _state(self, serial: str) -> _MeterState:
        self._touched.add(serial)
        return self._meters.setdefault(serial, _MeterState())

    # -- persistence -----------------------------------------------------------------------------------------

    def snapshot(self, serial: str) -> dict[str, Any]:
        """The meter's edge state as JSON-ready data (what :class:`EdgeStateStore` keeps)."""
        state = self._meters.get(serial)
        return (state or _MeterState()).to_json()

    def restore(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Start from saved state, e.g. ``EdgeStateStore.load()`` after a restart."""
        for serial, data in states.items():
            self._meters[serial] = _MeterState.from_json(data)

    def take_touched(self) -> set[str]:
        """Meters whose state may have changed since the last call (the caller saves what differs)."""
        touched, self._touched = self._touched, set()
        return touched

    def disconnect_state(self, serial: str) -> str | None:
        return self._state(serial).disconnect

    def credit_exhausted(self, serial: str) -> bool:
        return self._state(serial).credit_exhausted

    # -- comms -----------------------------------------------------------------------------------------------

    def comms_failed(self, serial: str, ts: datetime, reason: str) -> list[DetectedEvent]:
        state = self._state(serial)
        if state.comms_lost:
            return []
        state.comms_lost = True
        detail = {"reason": reason}
        return [
            DetectedEvent(serial, EventType.METER_COMMS_LOST, Severity.MEDIUM, EventState.RAISED, ts, detail)
        ]

    def comms_ok(self, serial: str, ts: datetime) -> list[DetectedEvent]:
        state = self._state(serial)
        if not state.comms_lost:
            return []
        state.comms_lost = False
        return [DetectedEvent(serial, EventType.METER_COMMS_RESTORED, Severity.INFO, EventState.CLEARED, ts)]

    # -- readings --------------------------------------------------------------------------------------------

    def observe(
        self, serial: str, readings: list[VmrsReading], ts: datetime, clock_drift_s: float | None = None
    ) -> list[DetectedEvent]:
        state = self._state(serial)
        by_key = {r.key: r for r in readings}
        events: list[DetectedEvent] = []
        if (tamper := by_key.get(TAMPER_KEY)) is not None:
            events += self._tamper(serial, state, tamper, ts)
        if (disconnect := by_key.get(DISCONNECT_KEY)) is not None:
            events += self._disconnect(serial, state, disconnect, ts)
        if (credit := by_key.get(CREDIT_KEY)) is not None:
            events += self._credit(serial, state, credit, ts)
        if clock_drift_s is not None:
            events += self._clock(serial, state, clock_drift_s, ts, by_key)
        if (power := by_key.get(POWER_KEY)) is not None:
            events += self._power(serial, state, power, ts)
        return events

    def _tamper(
        self, serial: str, state: _MeterState, reading: VmrsReading, ts: datetime
    ) -> list[DetectedEvent]:
        raw = reading.value if isinstance(reading.value, int) else None
        if reading.flags is not None:
            flags = frozenset(reading.flags)
        elif raw is not None:
            # No bit table for this model: the raw bits are all we can name.
            flags = frozenset(f"bit{i}" for i in range(raw.bit_length()) if raw >> i & 1)
        else:
            return []
        previous = state.tamper_flags or frozenset()
        state.tamper_flags, state.tamper_raw = flags, raw
        entry = [reading.to_entry()]
        events: list[DetectedEvent] = []
        if raised := flags - previous:
            detail: dict[str, Any] = {"flags": sorted(raised), "activeFlags": sorted(flags)}
            if reading.raw is not None:
                detail["vendorCode"] = reading.raw
            events.append(
                DetectedEvent(serial, EventType.TAMPER, Severity.HIGH, EventState.RAISED, ts, detail, entry)
            )
        if cleared := previous - flags:
            detail = {"flags": sorted(cleared), "activeFlags": sorted(flags)}
            events.append(
                DetectedEvent(serial, EventType.TAMPER, Severity.INFO, EventState.CLEARED, ts, detail, entry)
            )
        return events

    def _disconnect(
        self, serial: str, state: _MeterState, reading: VmrsReading, ts: datetime
    ) -> list[DetectedEvent]:
        value = str(reading.value)
        previous, state.disconnect = state.disconnect, value
        if previous is None or previous == value:
            return []
        return [
            DetectedEvent(
                serial,
                EventType.DISCONNECT_STATE_CHANGED,
                Severity.INFO,
                EventState.MOMENTARY,
                ts,
                {"from": previous, "to": value},
                [reading.to_entry()],
            )
        ]

    def _credit(
        self, serial: str, state: _MeterState, reading: VmrsReading, ts: datetime
    ) -> list[DetectedEvent]:
        value = reading.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return []
        credit = float(value)
        entry = [reading.to_entry()]
        events: list[DetectedEvent] = []
        detail = {"credit": credit, "unit": reading.unit, "threshold": self.credit_low_threshold}
        exhausted = credit <= 0
        low = credit < self.credit_low_threshold and not exhausted
        if low and not state.credit_low:
            events.append(
                DetectedEvent(
                    serial, EventType.CREDIT_LOW, Severity.LOW, EventState.RAISED, ts, detail, entry
                )
            )
        elif not low and state.credit_low and not exhausted:
            events.append(
                DetectedEvent(
                    serial, EventType.CREDIT_LOW, Severity.INFO, EventState.CLEARED, ts, detail, entry
                )
            )
        if exhausted and not state.credit_exhausted:
            events.append(
                DetectedEvent(
                    serial, EventType.CREDIT_EXHAUSTED, Severity.MEDIUM, EventState.RAISED, ts, detail, entry
                )
            )
        elif not exhausted and state.credit_exhausted:
            events.append(
                DetectedEvent(
                    serial, EventType.CREDIT_EXHAUSTED, Severity.INFO, EventState.CLEARED, ts, detail, entry
                )
            )
        # Going from low straight to exhausted keeps "low" raised: exhausted is the stronger condition.
        state.credit_low = low or (exhausted and state.credit_low)
        state.credit_exhausted = exhausted
        return events

    def _clock(
        self, serial: str, state: _MeterState, drift: float, ts: datetime, by_key: dict[str, VmrsReading]
    ) -> list[DetectedEvent]:
        off = abs(drift) > self.clock_drift_threshold_s
        if off == state.clock_drift:
            return []
        state.clock_drift = off
        clock = [r.to_entry() for k, r in by_key.items() if k == "0.0.0"]
        detail = {"driftS": round(drift, 3), "thresholdS": self.clock_drift_threshold_s}
        if off:
            return [
                DetectedEvent(
                    serial, EventType.CLOCK_DRIFT, Severity.LOW, EventState.RAISED, ts, detail, clock
                )
            ]
        return [
            DetectedEvent(serial, EventType.CLOCK_DRIFT, Severity.INFO, EventState.CLEARED, ts, detail, clock)
        ]

    def _power(
        self, serial: str, state: _MeterState, reading: VmrsReading, ts: datetime
    ) -> list[DetectedEvent]:
        text = str(reading.value).lower()
        if any(w in text for w in _POWER_FAIL_WORDS):
            failed = True
        elif any(w in text for w in _POWER_RESTORED_WORDS):
            failed = False
        else:
            return []
        previous, state.power_failed = state.power_failed, failed
        if previous == failed:
            return []
        entry = [reading.to_entry()]
        detail = {"reported": str(reading.value)}
        if failed:
            return [
                DetectedEvent(
                    serial,
                    EventType.POWER_FAIL_LAST_GASP,
                    Severity.HIGH,
                    EventState.RAISED,
                    ts,
                    detail,
                    entry,
                )
            ]
        if previous is None:
            return []  # "restored" as first observation says nothing new
        return [
            DetectedEvent(
                serial, EventType.POWER_RESTORED, Severity.INFO, EventState.CLEARED, ts, detail, entry
            )
        ]
