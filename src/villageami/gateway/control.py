"""Command lifecycle: validate, journal, execute through the driver, confirm by read-back, report.

Statuses (G2): ``accepted -> executing -> succeeded | failed``, or straight to ``rejected`` (invalid, unknown
meter, unsupported) or ``expired`` (``expiresAt`` passed before execution). Every status change is published
as a command result through the outbox, so results survive uplink outages and gateway restarts.

Journal: every command is stored in SQLite (WAL, synchronous=FULL) under its ``commandId`` before it is
acknowledged. A duplicate ``commandId`` is never executed again: the stored latest result is published again.
The result is enqueued in the outbox *before* the journal records the new status, so a crash between the two
at worst publishes the same status twice; it never loses one.

Restart rule (documented in docs and tested): a command found ``accepted`` is executed unless it expired.
A command found ``executing`` may or may not have reached the meter, so it is **re-verified, not blindly
re-executed**: the gateway reads the target register back. If the meter is already in the target state the
command succeeded. If not, and the command has not expired, it is executed again; disconnect, reconnect and
clock sync set a state (they are idempotent), and this second execution happens only after a read-back showed
the first did not take effect. If it expired meanwhile, it fails with the read-back in the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from villageami.contract.envelope import CommandStatus, CommandType, DisconnectState, MessageKind, format_ts
from villageami.contract.errors import TopicError
from villageami.contract.topics import parse_topic
from villageami.contract.validation import validate_message
from villageami.contract.vmrs import CLOCK_KEY, DISCONNECT_KEY
from villageami.gateway.config import GatewayConfig
from villageami.gateway.events import EventDetector
from villageami.gateway.messages import DetectedEvent, Northbound, OutboxItem
from villageami.gateway.plausibility import clock_drift
from villageami.gateway.scheduler import MeterPoller, Scheduler
from villageami.gateway.storage import open_durable_db
from villageami.meters.driver import MeterAction, MeterError
from villageami.meters.normalise import VmrsReading, normalise_all

log = logging.getLogger("villageami.gateway.control")

LOCAL_ISSUER = "gateway:local-rule"
FINAL = frozenset(
    {CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.EXPIRED, CommandStatus.REJECTED}
)
METER_TYPES = frozenset(
    {CommandType.DISCONNECT, CommandType.RECONNECT, CommandType.READ_NOW, CommandType.SYNC_CLOCK}
)
GATEWAY_TYPES = frozenset({CommandType.PING, CommandType.RESCAN})
TARGETS: dict[CommandType, frozenset[str]] = {
    CommandType.DISCONNECT: frozenset({DisconnectState.DISCONNECTED}),
    # ready_for_reconnection: the relay is armed but needs the customer's button press (G12).
    CommandType.RECONNECT: frozenset({DisconnectState.CONNECTED, DisconnectState.READY_FOR_RECONNECTION}),
}


@dataclass(frozen=True, slots=True)
class CommandRecord:
    command_id: str
    meter_serial: str | None
    type: str
    status: CommandStatus
    expires_at: datetime | None
    issued_by: str
    detail: dict[str, Any] | None
    registers: list[dict[str, Any]]
    body: dict[str, Any]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    meter_serial TEXT,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at TEXT,
    issued_by TEXT NOT NULL,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    detail BLOB,
    registers BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_meter ON commands (meter_serial, received_at);
"""


class CommandJournal:
    """Durable record of every command and its latest status."""

    def __init__(self, path: str | Path) -> None:
        self._db = open_durable_db(path, _SCHEMA, what="command journal")

    def get(self, command_id: str) -> CommandRecord | None:
        row = self._db.execute(
            "SELECT command_id, meter_serial, type, status, expires_at, issued_by, detail, registers, body"
            " FROM commands WHERE command_id = ?",
            (command_id,),
        ).fetchone()
        return None if row is None else _record(row)

    def insert(self, record: CommandRecord, now: datetime) -> None:
        self._db.execute(
            "INSERT INTO commands (command_id, meter_serial, type, status, expires_at, issued_by,"
            " received_at, updated_at, detail, registers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.command_id,
                record.meter_serial,
                record.type,
                record.status.value,
                None if record.expires_at is None else record.expires_at.isoformat(),
                record.issued_by,
                now.isoformat(),
                now.isoformat(),
                None if record.detail is None else orjson.dumps(record.detail),
                orjson.dumps(record.registers),
                orjson.dumps(record.body),
            ),
        )

    def update(
        self,
        command_id: str,
        status: CommandStatus,
        now: datetime,
        detail: Mapping[str, Any] | None,
        registers: Sequence[Mapping[str, Any]],
    ) -> None:
        self._db.execute(
            "UPDATE commands SET status = ?, updated_at = ?, detail = ?, registers = ? WHERE command_id = ?",
            (
                status.value,
                now.isoformat(),
                None if detail is None else orjson.dumps(dict(detail)),
                orjson.dumps([dict(r) for r in registers]),
                command_id,
            ),
        )

    def unfinished(self) -> list[CommandRecord]:
        rows = self._db.execute(
            "SELECT command_id, meter_serial, type, status, expires_at, issued_by, detail, registers, body"
            " FROM commands WHERE status IN ('accepted', 'executing') ORDER BY received_at"
        ).fetchall()
        return [_record(r) for r in rows]

    def latest_for_meter(self, serial: str) -> CommandRecord | None:
        row = self._db.execute(
            "SELECT command_id, meter_serial, type, status, expires_at, issued_by, detail, registers, body"
            " FROM commands WHERE meter_serial = ? AND type IN ('disconnect', 'reconnect')"
            " ORDER BY received_at DESC, rowid DESC LIMIT 1",
            (serial,),
        ).fetchone()
        return None if row is None else _record(row)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def _record(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        command_id=row[0],
        meter_serial=row[1],
        type=row[2],
        status=CommandStatus(row[3]),
        expires_at=None if row[4] is None else datetime.fromisoformat(row[4]),
        issued_by=row[5],
        detail=None if row[6] is None else orjson.loads(row[6]),
        registers=orjson.loads(row[7]),
        body=orjson.loads(row[8]),
    )


def _conflict(stored: CommandRecord, serial: str | None, message: Mapping[str, Any]) -> str | None:
    """Why a re-sent commandId is not the stored command (another meter, type or params), or None."""
    differs = [
        name
        for name, before, now in (
            ("meter", stored.meter_serial, serial),
            ("type", stored.body.get("type"), message.get("type")),
            ("params", stored.body.get("params"), message.get("params")),
        )
        if before != now
    ]
    if not differs:
        return None
    return (
        f"commandId {stored.command_id} was already used for a {stored.type!r} command"
        f" (meter {stored.meter_serial!r}); this one differs in {', '.join(differs)} and was not executed"
    )


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class CommandProcessor:
    """Receives commands from the uplink (or local rules) and runs them to a final, confirmed status."""

    def __init__(
        self,
        config: GatewayConfig,
        northbound: Northbound,
        enqueue: Callable[[OutboxItem], None],
        journal: CommandJournal,
        pollers: Mapping[str, MeterPoller],
        scheduler: Scheduler,
        detector: EventDetector,
        *,
        publish_events: Callable[[Sequence[DetectedEvent]], None],
        on_rescan: Callable[[], None] = lambda: None,
        on_status: Callable[[str], None] = lambda status: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.northbound = northbound
        self._enqueue = enqueue
        self.journal = journal
        self.pollers = pollers
        self.scheduler = scheduler
        self.detector = detector
        self._publish_events = publish_events
        self._on_rescan = on_rescan
        self._on_status = on_status
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts: dict[str, int] = {}

    # -- intake ----------------------------------------------------------------------------------------------

    def handle_message(self, topic: str, payload: bytes) -> None:
        """Called on the event loop for each message on a command topic."""
        try:
            parsed_topic = parse_topic(topic, root=self.northbound.root)
        except TopicError as exc:
            log.warning("command on a foreign topic ignored", extra={"topic": topic, "error": str(exc)})
            return
        if parsed_topic.kind is not MessageKind.COMMAND:
            return
        serial = parsed_topic.meter_serial
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            log.warning(
                "command is not JSON; no commandId to answer", extra={"topic": topic, "error": str(exc)}
            )
            return
        command_id = message.get("commandId") if isinstance(message, dict) else None
        if not isinstance(command_id, str) or not command_id:
            log.warning("command without commandId ignored", extra={"topic": topic})
            return
        problems = [
            p for p in validate_message(message, MessageKind.COMMAND, parsed_topic) if p.severity == "error"
        ]
        bad_id = [str(p) for p in problems if p.pointer == "/commandId"]
        if bad_id:
            # A result must carry the commandId, and one that breaks the contract would make the result
            # itself invalid (dropped by the head-end): like a missing commandId, it cannot be answered.
            log.warning(
                f"command with an invalid commandId ignored: {bad_id[0]}",
                extra={"topic": topic, "commandId": command_id[:80]},
            )
            return
        now = self.clock()
        stored = self.journal.get(command_id)
        if stored is not None:
            self._count("duplicate")
            log.info("duplicate command: re-publishing stored result", extra={"commandId": command_id})
            detail = dict(stored.detail or {}) | {"duplicate": True}
            conflict = _conflict(stored, serial, message)
            if conflict is not None:
                # The same commandId for a different command: never run it, and say so, so the stored
                # status of the first command is not mistaken for this one's.
                log.warning(conflict, extra={"commandId": command_id, "topic": topic})
                detail["conflict"] = conflict
            self._publish(stored.meter_serial, command_id, stored.status, now, detail, stored.registers)
            return
        ctype = message.get("type")
        record = CommandRecord(
            command_id=command_id,
            meter_serial=serial,
            type=str(ctype),
            status=CommandStatus.ACCEPTED,
            expires_at=_parse_ts(message.get("expiresAt")),
            issued_by=str(message.get("issuedBy", "")),
            detail=None,
            registers=[],
            body=message,
        )
        if problems:
            reasons = [str(p) for p in problems[:10]]
            self._finish_new(
                record, CommandStatus.REJECTED, now, {"reason": "invalid command", "problems": reasons}
            )
            return
        self.submit(record, now)

    def submit(self, record: CommandRecord, now: datetime) -> None:
        """Admit a (valid) command: reject, expire, or journal as accepted and start executing it."""
        allowed = METER_TYPES if record.meter_serial is not None else GATEWAY_TYPES
        if record.type not in allowed:
            level = "meter" if record.meter_serial is not None else "gateway"
            detail = {"reason": f"command type {record.type!r} is not supported at {level} level"}
            self._finish_new(record, CommandStatus.REJECTED, now, detail)
            return
        if record.meter_serial is not None and record.meter_serial not in self.pollers:
            detail = {"reason": f"meter {record.meter_serial!r} is not read by this gateway"}
            self._finish_new(record, CommandStatus.REJECTED, now, detail)
            return
        if record.expires_at is not None and record.expires_at <= now:
            detail = {"reason": f"expired at {format_ts(record.expires_at)} before it reached the gateway"}
            self._finish_new(record, CommandStatus.EXPIRED, now, detail)
            return
        self._publish(record.meter_serial, record.command_id, CommandStatus.ACCEPTED, now, None, [])
        self.journal.insert(record, now)
        self._count(CommandStatus.ACCEPTED)
        self._start(record, recovering=False)

    def submit_local(self, serial: str, ctype: CommandType, reason: str) -> str:
        """A command from a local rule; journaled and reported like any other. Returns its commandId."""
        now = self.clock()
        ttl = self.config.commands.ttl_s.get(ctype.value, 900.0)
        command_id = str(uuid.uuid4())
        body: dict[str, Any] = {
            "commandId": command_id,
            "ts": format_ts(now),
            "expiresAt": format_ts(now + timedelta(seconds=ttl)),
            "issuedBy": LOCAL_ISSUER,
            "type": ctype.value,
            "params": {},
            "reason": reason,
        }
        record = CommandRecord(
            command_id, serial, ctype.value, CommandStatus.ACCEPTED, now + timedelta(seconds=ttl),
            LOCAL_ISSUER, None, [], body,
        )  # fmt: skip
        self.submit(record, now)
        return command_id

    def recover(self) -> None:
        """At start: finish what a previous run left accepted or executing (see the module doc)."""
        for record in self.journal.unfinished():
            log.info(
                "recovering command", extra={"commandId": record.command_id, "status": record.status.value}
            )
            self._start(record, recovering=record.status is CommandStatus.EXECUTING)

    def pending(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- execution -------------------------------------------------------------------------------------------

    def _start(self, record: CommandRecord, *, recovering: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._run(record, recovering))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, record: CommandRecord, recovering: bool) -> None:
        try:
            if record.meter_serial is None:
                await self._gateway_command(record)
            else:
                await self._meter_command(record, recovering)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave the command hanging without a result
            log.exception("command execution crashed", extra={"commandId": record.command_id})
            self._finish(
                record, CommandStatus.FAILED, {"reason": f"gateway error: {type(exc).__name__}: {exc}"}
            )

    async def _gateway_command(self, record: CommandRecord) -> None:
        if record.type == CommandType.RESCAN:
            self._on_rescan()
        self._finish(record, CommandStatus.SUCCEEDED, {"type": record.type})

    async def _meter_command(self, record: CommandRecord, recovering: bool) -> None:
        assert record.meter_serial is not None
        poller = self.pollers[record.meter_serial]
        ctype = CommandType(record.type)
        async with poller.lock:
            if recovering:
                verified = await self._verify(poller, ctype)
                if verified is not None and verified[0]:
                    detail = {
                        "reason": "verified by read-back after gateway restart",
                        "readback": verified[2],
                    }
                    self._finish(record, CommandStatus.SUCCEEDED, detail, verified[1])
                    return
            if self._expired(record):
                detail = {"reason": "expired before it could be executed"}
                if recovering:
                    detail["reason"] = "gateway restarted mid-command; expired, not re-executed"
                    self._finish(record, CommandStatus.FAILED, detail)
                else:
                    self._finish(record, CommandStatus.EXPIRED, detail)
                return
            self._status(record, CommandStatus.EXECUTING, None, [])
            try:
                status, detail, registers = await self._execute(poller, ctype, record)
            except (MeterError, TimeoutError, OSError, ConnectionError) as exc:
                await poller.reset()
                status = CommandStatus.FAILED
                detail = {"reason": f"meter error: {type(exc).__name__}: {exc}"}
                registers = []
        self._finish(record, status, detail, registers)

    async def _execute(
        self, poller: MeterPoller, ctype: CommandType, record: CommandRecord
    ) -> tuple[CommandStatus, dict[str, Any], list[dict[str, Any]]]:
        timeout = self.config.schedules.read_timeout_s
        if ctype is CommandType.READ_NOW:
            keys = poller.supported(_all_keys())
            ok = await self.scheduler.read_and_publish(poller, keys)
            registers = [poller.last[k].to_entry() for k in keys if k in poller.last]
            if not ok:
                return CommandStatus.FAILED, {"reason": "meter did not answer"}, registers
            return CommandStatus.SUCCEEDED, {"keys": len(registers)}, registers
        if ctype is CommandType.SYNC_CLOCK:
            now = self.clock()
            params = {"time": format_ts(now)}
            result = await _bounded(
                poller, timeout, lambda: poller.driver.act(MeterAction.SYNC_CLOCK, params)
            )
            reading = await self._read_back(poller, CLOCK_KEY, result.readback)
            drift = None if reading is None else clock_drift(reading)
            registers = [] if reading is None else [reading.to_entry()]
            if not result.ok or drift is None or abs(drift) > self.config.plausibility.clock_drift_s:
                detail = {"reason": result.detail or "clock not confirmed by read-back", "driftS": drift}
                return CommandStatus.FAILED, detail, registers
            return CommandStatus.SUCCEEDED, {"driftS": round(drift, 3)}, registers
        action = MeterAction.DISCONNECT if ctype is CommandType.DISCONNECT else MeterAction.RECONNECT
        result = await _bounded(poller, timeout, lambda: poller.driver.act(action))
        reading = await self._read_back(poller, DISCONNECT_KEY, result.readback)
        registers = [] if reading is None else [reading.to_entry()]
        value = None if reading is None else str(reading.value)
        if reading is not None:
            self._publish_events(self.detector.observe(poller.serial, [reading], self.clock()))
        if value in TARGETS[ctype]:
            ok_detail: dict[str, Any] = {"readback": value}
            if value == DisconnectState.READY_FOR_RECONNECTION:
                ok_detail["note"] = "relay armed; the customer must press the meter button to reconnect"
            return CommandStatus.SUCCEEDED, ok_detail, registers
        detail = {"reason": result.detail or "read-back does not show the target state", "readback": value}
        detail["expected"] = sorted(TARGETS[ctype])
        return CommandStatus.FAILED, detail, registers

    async def _verify(
        self, poller: MeterPoller, ctype: CommandType
    ) -> tuple[bool, list[dict[str, Any]], Any] | None:
        """Read back the command's target register; None when the meter cannot be read."""
        if ctype is CommandType.READ_NOW:
            return None  # reading again is the command itself
        key = CLOCK_KEY if ctype is CommandType.SYNC_CLOCK else DISCONNECT_KEY
        try:
            reading = await self._read_back(poller, key, {})
        except (MeterError, TimeoutError, OSError, ConnectionError):
            await poller.reset()
            return None
        if reading is None:
            return None
        if ctype is CommandType.SYNC_CLOCK:
            drift = clock_drift(reading)
            reached = drift is not None and abs(drift) <= self.config.plausibility.clock_drift_s
        else:
            reached = str(reading.value) in TARGETS[ctype]
        return reached, [reading.to_entry()], reading.value

    async def _read_back(
        self, poller: MeterPoller, key: str, readback: Mapping[str, Any]
    ) -> VmrsReading | None:
        read = readback.get(key)
        reads = {key: read} if read is not None and read.ok else await poller.read([key], self._timeout())
        normalised = normalise_all(reads, poller.profile)
        return next((r for r in normalised.readings if r.key == key), None)

    def _timeout(self) -> float:
        return self.config.schedules.read_timeout_s

    def _expired(self, record: CommandRecord) -> bool:
        return record.expires_at is not None and record.expires_at <= self.clock()

    # -- reporting -------------------------------------------------------------------------------------------

    def _publish(
        self,
        serial: str | None,
        command_id: str,
        status: CommandStatus,
        now: datetime,
        detail: Mapping[str, Any] | None,
        registers: Sequence[Mapping[str, Any]],
    ) -> None:
        self._enqueue(
            self.northbound.command_result(serial, command_id, status.value, now, detail, registers)
        )

    def _status(
        self,
        record: CommandRecord,
        status: CommandStatus,
        detail: Mapping[str, Any] | None,
        registers: Sequence[Mapping[str, Any]],
    ) -> None:
        now = self.clock()
        self._publish(record.meter_serial, record.command_id, status, now, detail, registers)
        self.journal.update(record.command_id, status, now, detail, registers)
        self._count(status)

    def _finish(
        self,
        record: CommandRecord,
        status: CommandStatus,
        detail: Mapping[str, Any] | None,
        registers: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._status(record, status, detail, registers)
        log.info(
            "command finished",
            extra={"commandId": record.command_id, "status": status.value, "meter": record.meter_serial},
        )

    def _finish_new(
        self, record: CommandRecord, status: CommandStatus, now: datetime, detail: Mapping[str, Any]
    ) -> None:
        """A command ending at intake (rejected/expired) is journaled: a duplicate gets the same answer."""
        self._publish(record.meter_serial, record.command_id, status, now, detail, [])
        final = CommandRecord(
            record.command_id, record.meter_serial, record.type, status, record.expires_at,
            record.issued_by, dict(detail), [], record.body,
        )  # fmt: skip
        self.journal.insert(final, now)
        self._count(status)
        log.info("command refused", extra={"commandId": record.command_id, "status": status.value, **detail})

    def _count(self, status: str) -> None:
        self.counts[str(status)] = self.counts.get(str(status), 0) + 1
        self._on_status(str(status))


async def _bounded(poller: MeterPoller, timeout: float, call: Callable[[], Any]) -> Any:
    async def go() -> Any:
        if not poller.connected:
            await poller.driver.connect()
            poller.connected = True
        return await call()

    return await asyncio.wait_for(go(), timeout)


def _all_keys() -> list[str]:
    from villageami.gateway.config import ReadClass, keys_for

    keys: list[str] = []
    for rc in ReadClass:
        keys.extend(keys_for(rc))
    return list(dict.fromkeys(keys))
