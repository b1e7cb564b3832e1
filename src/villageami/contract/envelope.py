"""Builders for every northbound message, as plain dicts ready for orjson.

Timestamps are RFC 3339 strings (UTC, ``Z``, millisecond precision). Builders check what is cheap to
check (ids, aware datetimes, canonical keys); :func:`villageami.contract.validation.validate_message`
is the full check.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from villageami.contract import schemas_source as _s
from villageami.contract.errors import EnvelopeError
from villageami.contract.obis import Obis
from villageami.contract.vmrs import RFC3339, VMRS, ValueType, lookup_key

__all__ = [
    "SCHEMA_VERSION",
    "ClockSource",
    "CommandStatus",
    "CommandType",
    "DisconnectState",
    "EventState",
    "EventType",
    "GatewayState",
    "MessageKind",
    "MeterRole",
    "Quality",
    "Severity",
    "command",
    "command_result",
    "event",
    "format_ts",
    "gateway_inventory",
    "gateway_status",
    "inventory_meter",
    "last_will",
    "new_msg_id",
    "register_entry",
    "telemetry",
]

# 0.2 = upstream 0.1 plus the G1-G30 resolutions (msgId/seq mandatory, results, status, inventory).
SCHEMA_VERSION = "0.2"
UPSTREAM_SCHEMA_VERSION = "0.1"

_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class MessageKind(StrEnum):
    """The six message kinds; values are the ``--kind`` names of ``villageami validate``."""

    TELEMETRY = "telemetry"
    EVENT = "event"
    COMMAND = "command"
    COMMAND_RESULT = "command-result"
    STATUS = "status"
    INVENTORY = "inventory"


class Quality(StrEnum):
    """Register quality (G14): good = fresh, plausible; suspect = failed checks; comms_lost = last known."""

    GOOD = "good"
    SUSPECT = "suspect"
    COMMS_LOST = "comms_lost"


class EventType(StrEnum):
    """Event types: the G3 starter enum plus villageami's additions (docs/contract.md)."""

    TAMPER = "tamper"
    DISCONNECT_STATE_CHANGED = "disconnect_state_changed"
    CREDIT_LOW = "credit_low"
    CREDIT_EXHAUSTED = "credit_exhausted"
    TOKEN_ACCEPTED = "token_accepted"
    TOKEN_REJECTED = "token_rejected"
    METER_COMMS_LOST = "meter_comms_lost"
    METER_COMMS_RESTORED = "meter_comms_restored"
    CLOCK_DRIFT = "clock_drift"
    POWER_FAIL_LAST_GASP = "power_fail_last_gasp"
    POWER_RESTORED = "power_restored"
    OVERLOAD_TRIP = "overload_trip"
    LEAKAGE_ALERT = "leakage_alert"
    ENERGY_BALANCE_ALERT = "energy_balance_alert"
    METER_DISAGREEMENT = "meter_disagreement"
    NEUTRAL_IMBALANCE = "neutral_imbalance"
    DATA_GAP = "data_gap"
    REGISTER_DECREASED = "register_decreased"
    CONSUMPTION_WHILE_DISCONNECTED = "consumption_while_disconnected"
    VENDOR_EVENT = "vendor_event"


class Severity(StrEnum):
    """Event severity."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class EventState(StrEnum):
    """raised / cleared for conditions; momentary for one-shot events (token_accepted, data_gap)."""

    RAISED = "raised"
    CLEARED = "cleared"
    MOMENTARY = "momentary"


class CommandType(StrEnum):
    """Command types (G1): meter level, then gateway level (ping, rescan)."""

    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    READ_NOW = "read_now"
    SYNC_CLOCK = "sync_clock"
    SET_MODE = "set_mode"
    SET_CREDIT_DISPLAY = "set_credit_display"
    PING = "ping"
    RESCAN = "rescan"


class CommandStatus(StrEnum):
    """Command result statuses (G2)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class GatewayState(StrEnum):
    """Gateway status state (G6)."""

    ONLINE = "online"
    OFFLINE = "offline"


class ClockSource(StrEnum):
    """Where the gateway's clock comes from."""

    NTP = "ntp"
    GPS = "gps"
    RTC = "rtc"
    NONE = "none"


class MeterRole(StrEnum):
    """Inventory role of a metering point (G4)."""

    CUSTOMER = "customer"
    FEEDER = "feeder"
    BRANCH = "branch"
    TENANT_CIRCUIT = "tenant-circuit"


class DisconnectState(StrEnum):
    """Values of the disconnect-control register 0.0.96.3.10.255 (G12)."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    READY_FOR_RECONNECTION = "ready_for_reconnection"


METER_COMMAND_TYPES = frozenset(_s.METER_COMMANDS)
GATEWAY_COMMAND_TYPES = frozenset(_s.GATEWAY_COMMANDS)


def new_msg_id() -> str:
    """A fresh message id (UUIDv4 text)."""
    return str(uuid.uuid4())


new_command_id = new_msg_id


def format_ts(dt: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` and milliseconds, e.g. ``2026-06-22T14:30:00.000Z``. Rejects naive times."""
    if not isinstance(dt, datetime):
        raise EnvelopeError(f"a timestamp must be a datetime, got {type(dt).__name__}: {dt!r}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise EnvelopeError(
            f"naive datetime {dt.isoformat()!r}: give a timezone (UTC) so the offset is known"
        )
    return (
        dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.astimezone(UTC).microsecond // 1000:03d}Z"
    )


def _ts(value: datetime | str, what: str) -> str:
    if isinstance(value, str):
        if RFC3339.fullmatch(value) is None:
            raise EnvelopeError(f"{what} {value!r} is not an RFC 3339 date-time with offset (Z or ±hh:mm)")
        return value
    return format_ts(value)


def _id(value: str, what: str) -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise EnvelopeError(f"{what} {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _raw_hex(value: int) -> str:
    digits = f"{value:X}"
    width = max(4, len(digits) + len(digits) % 2)
    return f"0x{value:0{width}X}"


def register_entry(
    obis: str | Obis,
    value: Any,
    unit: str,
    quality: str = "good",
    *,
    read_at: datetime | str | None = None,
    reason: str | None = None,
    raw: str | None = None,
    flags: Iterable[str] | None = None,
    unmapped_bits: int | None = None,
    logical_name: str | Obis | None = None,
) -> dict[str, Any]:
    """One ``registers`` item. ``obis`` may be any spelling that maps to a VMRS key; it is canonicalised.

    For the bitfield register (96.5.0) ``raw`` defaults to the value in hex (G13).
    """
    key = lookup_key(obis)
    if key is None:
        key = obis.to_dotted() if isinstance(obis, Obis) else obis.strip()
    if isinstance(value, str):
        value = str(value)  # plain str, not a StrEnum member (DisconnectState)
    entry: dict[str, Any] = {"obis": key, "value": value, "unit": str(unit), "quality": str(quality)}
    if read_at is not None:
        entry["readAt"] = _ts(read_at, "readAt")
    if reason is not None:
        entry["reason"] = reason
    register = VMRS.get(key)
    is_bitfield = register is not None and register.value_type is ValueType.BITFIELD
    if raw is None and is_bitfield and type(value) is int and value >= 0:
        raw = _raw_hex(value)
    if raw is not None:
        entry["raw"] = raw
    if flags is not None:
        entry["flags"] = list(flags)
    if unmapped_bits is not None:
        entry["unmappedBits"] = unmapped_bits
    if logical_name is not None:
        entry["logicalName"] = (
            logical_name.to_logical_name() if isinstance(logical_name, Obis) else logical_name
        )
    return entry


def _header(msg_id: str | None, seq: int | None, ts: datetime | str | None) -> dict[str, Any]:
    head: dict[str, Any] = {"schemaVersion": SCHEMA_VERSION}
    if msg_id is not None:
        head["msgId"] = msg_id
    if seq is not None:
        if type(seq) is not int or seq < 0:
            raise EnvelopeError(f"seq must be a non-negative integer, got {seq!r}")
        head["seq"] = seq
    head["ts"] = None if ts is None else _ts(ts, "ts")
    return head


def _replay(message: dict[str, Any], published_at: datetime | str | None, replayed: bool) -> dict[str, Any]:
    if replayed:
        message["replayed"] = True
    if published_at is not None:
        message["publishedAt"] = _ts(published_at, "publishedAt")
    return message


def telemetry(
    *,
    feeder_id: str,
    gateway_id: str,
    meter_serial: str,
    registers: Sequence[Mapping[str, Any]],
    ts: datetime | str,
    msg_id: str,
    seq: int,
    sip_call_id: str | None = None,
    published_at: datetime | str | None = None,
    replayed: bool = False,
) -> dict[str, Any]:
    """A meter telemetry envelope (G8, G15, G24: registers must not be empty)."""
    if not registers:
        raise EnvelopeError(
            f"telemetry for meter {meter_serial!r} needs at least one register (G24: use gateway status)"
        )
    message = _header(msg_id, seq, ts)
    message |= {
        "feederId": _id(feeder_id, "feederId"),
        "gatewayId": _id(gateway_id, "gatewayId"),
        "meterSerial": _id(meter_serial, "meterSerial"),
    }
    if sip_call_id is not None:
        message["sipCallId"] = sip_call_id
    message["registers"] = [dict(r) for r in registers]
    return _replay(message, published_at, replayed)


def event(
    *,
    feeder_id: str,
    gateway_id: str,
    meter_serial: str,
    event_type: str,
    severity: str,
    state: str,
    ts: datetime | str,
    msg_id: str,
    seq: int,
    detail: Mapping[str, Any] | None = None,
    registers: Sequence[Mapping[str, Any]] = (),
    sip_call_id: str | None = None,
    published_at: datetime | str | None = None,
    replayed: bool = False,
) -> dict[str, Any]:
    """A meter event (G3); ``registers`` holds the registers that triggered it."""
    message = _header(msg_id, seq, ts)
    message |= {
        "feederId": _id(feeder_id, "feederId"),
        "gatewayId": _id(gateway_id, "gatewayId"),
        "meterSerial": _id(meter_serial, "meterSerial"),
    }
    if sip_call_id is not None:
        message["sipCallId"] = sip_call_id
    body: dict[str, Any] = {"type": str(event_type), "severity": str(severity), "state": str(state)}
    if detail is not None:
        body["detail"] = dict(detail)
    message["event"] = body
    message["registers"] = [dict(r) for r in registers]
    return _replay(message, published_at, replayed)


def command(
    *,
    command_id: str,
    command_type: str,
    ts: datetime | str,
    expires_at: datetime | str,
    issued_by: str,
    params: Mapping[str, Any] | None = None,
    reason: str | None = None,
    sip_call_id: str | None = None,
    feeder_id: str | None = None,
    gateway_id: str | None = None,
    meter_serial: str | None = None,
) -> dict[str, Any]:
    """A command from the head-end (G1, G20: every command expires)."""
    message: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "commandId": command_id,
        "ts": _ts(ts, "ts"),
        "expiresAt": _ts(expires_at, "expiresAt"),
        "issuedBy": issued_by,
        "type": str(command_type),
        "params": dict(params or {}),
    }
    if reason is not None:
        message["reason"] = reason
    if sip_call_id is not None:
        message["sipCallId"] = sip_call_id
    for field, value in (("feederId", feeder_id), ("gatewayId", gateway_id), ("meterSerial", meter_serial)):
        if value is not None:
            message[field] = _id(value, field)
    return message


def command_result(
    *,
    feeder_id: str,
    gateway_id: str,
    meter_serial: str | None,
    command_id: str,
    status: str,
    ts: datetime | str,
    msg_id: str,
    seq: int,
    detail: Mapping[str, Any] | None = None,
    registers: Sequence[Mapping[str, Any]] = (),
    published_at: datetime | str | None = None,
    replayed: bool = False,
) -> dict[str, Any]:
    """A command result (G2); ``meter_serial`` None for gateway-level commands."""
    message = _header(msg_id, seq, ts)
    message |= {
        "feederId": _id(feeder_id, "feederId"),
        "gatewayId": _id(gateway_id, "gatewayId"),
        "meterSerial": None if meter_serial is None else _id(meter_serial, "meterSerial"),
        "commandId": command_id,
        "status": str(status),
        "detail": None if detail is None else dict(detail),
        "registers": [dict(r) for r in registers],
    }
    return _replay(message, published_at, replayed)


def gateway_status(
    *,
    feeder_id: str,
    gateway_id: str,
    state: str,
    ts: datetime | str | None,
    msg_id: str | None = None,
    seq: int | None = None,
    fw: str | None = None,
    boot_ts: datetime | str | None = None,
    buffer_depth: int | None = None,
    evicted_telemetry: int | None = None,
    meter_count: int | None = None,
    clock_source: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Gateway status (retained, G6). ``ts`` may be None only for the last will."""
    message = _header(msg_id, seq, ts)
    message |= {"feederId": _id(feeder_id, "feederId"), "gatewayId": _id(gateway_id, "gatewayId")}
    message["state"] = str(state)
    optional: dict[str, Any] = {
        "fw": fw,
        "bootTs": None if boot_ts is None else _ts(boot_ts, "bootTs"),
        "bufferDepth": buffer_depth,
        "evictedTelemetry": evicted_telemetry,
        "meterCount": meter_count,
        "clockSource": None if clock_source is None else str(clock_source),
        "reason": reason,
    }
    message |= {k: v for k, v in optional.items() if v is not None}
    return message


def last_will(feeder_id: str, gateway_id: str) -> dict[str, Any]:
    """The MQTT last will: retained status ``offline`` with ``ts`` null (the broker sends it later)."""
    return gateway_status(feeder_id=feeder_id, gateway_id=gateway_id, state="offline", ts=None)


def inventory_meter(
    meter_serial: str,
    *,
    read_path: str,
    registers: Iterable[str],
    role: str = "customer",
    vendor: str | None = None,
    model: str | None = None,
    profile: str | None = None,
    serial_as_read: str | None = None,
    channel: int | None = None,
    phases: int | None = None,
    prepaid: bool | None = None,
    net_metered: bool | None = None,
) -> dict[str, Any]:
    """One ``meters`` item of the inventory: what the gateway reads and which VMRS keys it supports."""
    item: dict[str, Any] = {
        "meterSerial": _id(meter_serial, "meterSerial"),
        "readPath": read_path,
        "role": str(role),
        "registers": list(registers),
    }
    optional: dict[str, Any] = {
        "vendor": vendor,
        "model": model,
        "profile": profile,
        "serialAsRead": serial_as_read,
        "channel": channel,
        "phases": phases,
        "prepaid": prepaid,
        "netMetered": net_metered,
    }
    item |= {k: v for k, v in optional.items() if v is not None}
    return item


def gateway_inventory(
    *,
    feeder_id: str,
    gateway_id: str,
    ts: datetime | str,
    meters: Sequence[Mapping[str, Any]],
    msg_id: str | None = None,
    seq: int | None = None,
    fw: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Gateway inventory (retained, G4): every meter the gateway reads."""
    message = _header(msg_id, seq, ts)
    message |= {"feederId": _id(feeder_id, "feederId"), "gatewayId": _id(gateway_id, "gatewayId")}
    if fw is not None:
        message["fw"] = fw
    if model is not None:
        message["model"] = model
    message["meters"] = [dict(m) for m in meters]
    return message


def utc_now() -> datetime:
    """The current UTC time (a seam for callers that inject clocks)."""
    return datetime.now(UTC)
