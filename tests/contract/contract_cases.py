"""Shared cases for the contract tests: one valid message of every kind, and the invalid-message catalogue.

Valid messages are written out literally (not built with villageami.contract.envelope), so the builders are
tested against independent expectations. Each invalid case is a valid message with one thing broken and
the JSON pointer the validator must report.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream"

FEEDER = "feeder-north-paravur-01"
GATEWAY = "pole-ems-0042"
SERIAL = "DS1000-88421"
ROOT = f"openami/v1/{FEEDER}/{GATEWAY}"
METER_ROOT = f"{ROOT}/meter/{SERIAL}"

TOPICS = {
    "telemetry": f"{METER_ROOT}/telemetry",
    "event": f"{METER_ROOT}/event",
    "command": f"{METER_ROOT}/command",
    "command-result": f"{METER_ROOT}/command/result",
    "status": f"{ROOT}/gateway/status",
    "inventory": f"{ROOT}/gateway/inventory",
}


def upstream_example() -> dict[str, Any]:
    spec = json.loads((UPSTREAM / "northbound-mqtt-v0.1.json").read_text(encoding="utf-8"))
    example: dict[str, Any] = spec["payloadEnvelope"]["example"]
    return example


TELEMETRY: dict[str, Any] = {
    "schemaVersion": "0.2",
    "msgId": "0b6f8a52-6d0e-4c1f-9a38-2f5c1d7e9b10",
    "seq": 1041,
    "ts": "2026-06-22T14:30:00.000Z",
    "feederId": FEEDER,
    "gatewayId": GATEWAY,
    "meterSerial": SERIAL,
    "registers": [
        {
            "obis": "1.8.0",
            "value": 1842.5,
            "unit": "kWh",
            "quality": "good",
            "readAt": "2026-06-22T14:29:58Z",
        },
        {"obis": "1.7.0", "value": 412, "unit": "W", "quality": "good"},
        {"obis": "32.7.0", "value": 229.8, "unit": "V", "quality": "good"},
        {"obis": "14.7.0", "value": 50.01, "unit": "Hz", "quality": "good"},
        {"obis": "0.0.0", "value": "2026-06-22T15:30:02+01:00", "unit": "datetime", "quality": "good"},
        {"obis": "96.8.0", "value": 350.0, "unit": "KES", "quality": "good"},
        {
            "obis": "96.5.0",
            "value": 5,
            "raw": "0x0005",
            "flags": ["cover_open"],
            "unmappedBits": 1,
            "unit": "bitfield",
            "quality": "suspect",
            "reason": "bit 0 not in the ICD profile",
        },
        {"obis": "0.0.96.3.10.255", "value": "connected", "unit": "enum", "quality": "good"},
        {
            "obis": "2.8.0",
            "value": 3.25,
            "unit": "kWh",
            "quality": "comms_lost",
            "readAt": "2026-06-22T13:00:00+00:00",
        },
    ],
}

EVENT: dict[str, Any] = {
    "schemaVersion": "0.2",
    "msgId": "9d1e0c8e-55a4-4a4b-8f0f-3c1c0a7b2d11",
    "seq": 1043,
    "ts": "2026-06-22T14:31:00Z",
    "feederId": FEEDER,
    "gatewayId": GATEWAY,
    "meterSerial": SERIAL,
    "event": {
        "type": "tamper",
        "severity": "high",
        "state": "raised",
        "detail": {"flags": ["cover_open"], "vendorCode": "0x0004"},
    },
    "registers": [{"obis": "96.5.0", "value": 4, "raw": "0x0004", "unit": "bitfield", "quality": "good"}],
}

COMMAND: dict[str, Any] = {
    "schemaVersion": "0.2",
    "commandId": "3f1c2b7a-8e4d-4f6a-9b1c-5d2e7f8a9b0c",
    "ts": "2026-06-22T14:31:00Z",
    "expiresAt": "2026-06-22T14:46:00Z",
    "issuedBy": "hes:operator-7",
    "type": "disconnect",
    "params": {},
    "reason": "credit_exhausted",
    "sipCallId": None,
}

COMMAND_RESULT: dict[str, Any] = {
    "schemaVersion": "0.2",
    "msgId": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
    "seq": 1042,
    "commandId": "3f1c2b7a-8e4d-4f6a-9b1c-5d2e7f8a9b0c",
    "ts": "2026-06-22T14:31:07Z",
    "feederId": FEEDER,
    "gatewayId": GATEWAY,
    "meterSerial": SERIAL,
    "status": "succeeded",
    "detail": None,
    "registers": [{"obis": "0.0.96.3.10.255", "value": "disconnected", "unit": "enum", "quality": "good"}],
}

STATUS: dict[str, Any] = {
    "schemaVersion": "0.2",
    "feederId": FEEDER,
    "gatewayId": GATEWAY,
    "state": "online",
    "ts": "2026-06-22T14:00:00Z",
    "fw": "villageami-0.1.0",
    "bootTs": "2026-06-22T13:58:12Z",
    "clockSource": "ntp",
    "bufferDepth": 0,
}

LAST_WILL: dict[str, Any] = {
    "schemaVersion": "0.2",
    "feederId": FEEDER,
    "gatewayId": GATEWAY,
    "state": "offline",
    "ts": None,
}

INVENTORY: dict[str, Any] = {
    "schemaVersion": "0.2",
    "msgId": "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b",
    "seq": 7,
    "ts": "2026-06-22T14:00:05Z",
    "feederId": FEEDER,
    "gatewayId": GATEWAY,
    "meters": [
        {
            "meterSerial": SERIAL,
            "vendor": "Donsun",
            "model": "DS1000",
            "readPath": "dlms-hdlc",
            "role": "customer",
            "prepaid": True,
            "registers": ["1.8.0", "1.7.0", "32.7.0", "0.0.0", "96.5.0", "0.0.96.3.10.255"],
        },
        {
            "meterSerial": f"{GATEWAY}-ch1",
            "readPath": "modbus-rtu",
            "role": "feeder",
            "channel": 1,
            "phases": 3,
            "registers": ["1.8.0", "32.7.0", "52.7.0", "72.7.0"],
        },
    ],
}

VALID: dict[str, tuple[str, dict[str, Any]]] = {
    "telemetry": ("telemetry", TELEMETRY),
    "event": ("event", EVENT),
    "command": ("command", COMMAND),
    "command-result": ("command-result", COMMAND_RESULT),
    "status": ("status", STATUS),
    "last-will": ("status", LAST_WILL),
    "inventory": ("inventory", INVENTORY),
}


@dataclass(frozen=True)
class Invalid:
    name: str
    kind: str
    message: Any
    pointer: str
    topic: str | None = None


def _edit(base: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    message = copy.deepcopy(base)
    change(message)
    return message


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(message: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = message
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(message: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = message
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return change


def _case(
    name: str,
    kind: str,
    base: dict[str, Any],
    change: Callable[[dict[str, Any]], object],
    pointer: str,
    topic: str | None = None,
) -> Invalid:
    return Invalid(name, kind, _edit(base, change), pointer, topic)


T, E, C, R, S, INV = TELEMETRY, EVENT, COMMAND, COMMAND_RESULT, STATUS, INVENTORY
CMD_TOPIC = TOPICS["command"]

INVALID: list[Invalid] = [
    # telemetry: envelope
    _case("missing ts", "telemetry", T, _drop("ts"), "/ts"),
    _case("missing feederId", "telemetry", T, _drop("feederId"), "/feederId"),
    _case("empty registers", "telemetry", T, _set("registers", []), "/registers"),
    _case("registers not an array", "telemetry", T, _set("registers", {}), "/registers"),
    _case("ts without offset", "telemetry", T, _set("ts", "2026-06-22T14:30:00"), "/ts"),
    _case("ts date only", "telemetry", T, _set("ts", "2026-06-22"), "/ts"),
    _case("ts with trailing newline", "telemetry", T, _set("ts", "2026-06-22T14:30:00Z\n"), "/ts"),
    _case("ts as epoch number", "telemetry", T, _set("ts", 1781965800), "/ts"),
    _case("feederId with slash", "telemetry", T, _set("feederId", "feeder/1"), "/feederId"),
    _case("gatewayId too long", "telemetry", T, _set("gatewayId", "g" * 65), "/gatewayId"),
    _case("meterSerial with space", "telemetry", T, _set("meterSerial", "DS1000 88421"), "/meterSerial"),
    _case("msgId not a uuid", "telemetry", T, _set("msgId", "msg-1"), "/msgId"),
    _case("seq negative", "telemetry", T, _set("seq", -1), "/seq"),
    _case("seq as text", "telemetry", T, _set("seq", "1041"), "/seq"),
    _case("schemaVersion 1.0", "telemetry", T, _set("schemaVersion", "1.0"), "/schemaVersion"),
    _case("v0.2 without msgId", "telemetry", T, _drop("msgId"), "/msgId"),
    _case("v0.2 without seq", "telemetry", T, _drop("seq"), "/seq"),
    _case("unexpected field", "telemetry", T, _set("colour", "blue"), "/colour"),
    _case("replayed as text", "telemetry", T, _set("replayed", "yes"), "/replayed"),
    _case(
        "publishedAt without offset", "telemetry", T, _set("publishedAt", "2026-06-22 14:30"), "/publishedAt"
    ),
    # telemetry: registers
    _case("register without unit", "telemetry", T, _drop("registers/0/unit"), "/registers/0/unit"),
    _case("register without quality", "telemetry", T, _drop("registers/1/quality"), "/registers/1/quality"),
    _case("unknown quality", "telemetry", T, _set("registers/1/quality", "bad"), "/registers/1/quality"),
    _case("value null", "telemetry", T, _set("registers/0/value", None), "/registers/0/value"),
    _case("obis with two groups", "telemetry", T, _set("registers/0/obis", "1.8"), "/registers/0/obis"),
    _case(
        "obis as logical name", "telemetry", T, _set("registers/0/obis", "1-0:1.8.0.255"), "/registers/0/obis"
    ),
    _case(
        "obis not canonical", "telemetry", T, _set("registers/0/obis", "1.0.1.8.0.255"), "/registers/0/obis"
    ),
    _case("energy in Wh", "telemetry", T, _set("registers/0/unit", "Wh"), "/registers/0/unit"),
    _case("power in kW", "telemetry", T, _set("registers/1/unit", "kW"), "/registers/1/unit"),
    _case("energy as text", "telemetry", T, _set("registers/0/value", "1842.5"), "/registers/0/value"),
    _case("voltage as boolean", "telemetry", T, _set("registers/2/value", True), "/registers/2/value"),
    _case(
        "credit in lower-case currency", "telemetry", T, _set("registers/5/unit", "kes"), "/registers/5/unit"
    ),
    _case(
        "clock without offset",
        "telemetry",
        T,
        _set("registers/4/value", "2026-06-22T15:30:02"),
        "/registers/4/value",
    ),
    _case("clock as number", "telemetry", T, _set("registers/4/value", 1781965800), "/registers/4/value"),
    _case("bitfield negative", "telemetry", T, _set("registers/6/value", -5), "/registers/6/value"),
    _case("bitfield fractional", "telemetry", T, _set("registers/6/value", 5.5), "/registers/6/value"),
    _case("raw differs from value", "telemetry", T, _set("registers/6/raw", "0x0004"), "/registers/6/raw"),
    _case("raw not hex", "telemetry", T, _set("registers/6/raw", "5"), "/registers/6/raw"),
    _case(
        "flags not snake_case",
        "telemetry",
        T,
        _set("registers/6/flags", ["Cover Open"]),
        "/registers/6/flags/0",
    ),
    _case(
        "flags repeated",
        "telemetry",
        T,
        _set("registers/6/flags", ["magnetic", "magnetic"]),
        "/registers/6/flags/1",
    ),
    _case(
        "unmapped bits not in value",
        "telemetry",
        T,
        _set("registers/6/unmappedBits", 2),
        "/registers/6/unmappedBits",
    ),
    _case(
        "flags on an energy register", "telemetry", T, _set("registers/0/flags", ["x"]), "/registers/0/flags"
    ),
    _case("disconnect state off", "telemetry", T, _set("registers/7/value", "off"), "/registers/7/value"),
    _case("comms_lost without readAt", "telemetry", T, _drop("registers/8/readAt"), "/registers/8/readAt"),
    _case(
        "readAt without offset",
        "telemetry",
        T,
        _set("registers/0/readAt", "2026-06-22T14:29:58"),
        "/registers/0/readAt",
    ),
    _case("register twice", "telemetry", T, _set("registers/1", T["registers"][0]), "/registers/1/obis"),
    _case("unexpected register field", "telemetry", T, _set("registers/0/scaler", -3), "/registers/0/scaler"),
    _case(
        "feederId not the topic's",
        "telemetry",
        T,
        _set("feederId", "feeder-south-02"),
        "/feederId",
        TOPICS["telemetry"],
    ),
    _case(
        "meterSerial not the topic's",
        "telemetry",
        T,
        _set("meterSerial", "OTHER-1"),
        "/meterSerial",
        TOPICS["telemetry"],
    ),
    # event
    _case("unknown event type", "event", E, _set("event/type", "explosion"), "/event/type"),
    _case("event without severity", "event", E, _drop("event/severity"), "/event/severity"),
    _case("event state on", "event", E, _set("event/state", "on"), "/event/state"),
    _case("event without msgId", "event", E, _drop("msgId"), "/msgId"),
    _case("event detail as text", "event", E, _set("event/detail", "cover"), "/event/detail"),
    # command
    _case("command without expiresAt", "command", C, _drop("expiresAt"), "/expiresAt"),
    _case(
        "command expires before issue", "command", C, _set("expiresAt", "2026-06-22T14:30:00Z"), "/expiresAt"
    ),
    _case("unknown command type", "command", C, _set("type", "explode"), "/type"),
    _case("commandId not a uuid", "command", C, _set("commandId", "cmd-1"), "/commandId"),
    _case("command without issuedBy", "command", C, _drop("issuedBy"), "/issuedBy"),
    _case("disconnect with params", "command", C, _set("params", {"delay": 5}), "/params/delay"),
    _case(
        "set_mode without mode", "command", C, lambda m: m.update(type="set_mode", params={}), "/params/mode"
    ),
    _case(
        "set_mode eco",
        "command",
        C,
        lambda m: m.update(type="set_mode", params={"mode": "eco"}),
        "/params/mode",
    ),
    _case(
        "credit display in dollars",
        "command",
        C,
        lambda m: m.update(type="set_credit_display", params={"value": 5, "unit": "dollars"}),
        "/params/unit",
    ),
    _case("ping on a meter topic", "command", C, _set("type", "ping"), "/type", CMD_TOPIC),
    _case(
        "disconnect on the gateway topic",
        "command",
        C,
        _set("type", "disconnect"),
        "/type",
        f"{ROOT}/gateway/command",
    ),
    _case(
        "read_now unknown key",
        "command",
        C,
        lambda m: m.update(type="read_now", params={"registers": ["9.9.9"]}),
        "/params/registers/0",
    ),
    # command result
    _case("unknown result status", "command-result", R, _set("status", "done"), "/status"),
    _case("result without commandId", "command-result", R, _drop("commandId"), "/commandId"),
    _case("result without feederId", "command-result", R, _drop("feederId"), "/feederId"),
    _case(
        "meter result with null serial",
        "command-result",
        R,
        _set("meterSerial", None),
        "/meterSerial",
        TOPICS["command-result"],
    ),
    _case("meterSerial as number", "command-result", R, _set("meterSerial", 88421), "/meterSerial"),
    # gateway status
    _case("unknown gateway state", "status", S, _set("state", "sleeping"), "/state"),
    _case("online status without time", "status", S, _set("ts", None), "/ts"),
    _case("negative buffer depth", "status", S, _set("bufferDepth", -1), "/bufferDepth"),
    _case("unknown clock source", "status", S, _set("clockSource", "sundial"), "/clockSource"),
    # inventory
    _case("unknown meter role", "inventory", INV, _set("meters/0/role", "landlord"), "/meters/0/role"),
    _case(
        "meter listed twice", "inventory", INV, _set("meters/1/meterSerial", SERIAL), "/meters/1/meterSerial"
    ),
    _case("inventory without meters", "inventory", INV, _drop("meters"), "/meters"),
    _case("three-and-a-half phases", "inventory", INV, _set("meters/1/phases", 2), "/meters/1/phases"),
    # not a message at all
    Invalid("array instead of object", "telemetry", [TELEMETRY], ""),
    Invalid("kind cannot be told", "auto", {"ts": "2026-06-22T14:30:00Z"}, ""),
]
