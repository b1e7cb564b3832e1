"""Source of the JSON Schemas (Draft 2020-12) of every northbound message.

The shipped files in ``data/schemas/`` (and their published copy in ``docs/schemas/``) are generated
from this module so the shared definitions are written once; each file is self-contained (local ``$defs``
only). Regenerate with ``python -m villageami.contract.schemas_source [DOCS_DIR]``; a test checks the
shipped files equal what this module builds.

Keywords used (the subset the fast validator compiles): type, enum, const, pattern, minLength, maxLength,
minimum, maximum, properties, required, additionalProperties, items, minItems, maxItems, uniqueItems,
$ref (local), $defs, anyOf, allOf, if/then/else; annotations (title, description, format, examples,
$comment, deprecated) are ignored by both validators.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://villageami.org/schemas/openami/v1/"

Schema = dict[str, Any]

ID_PATTERN = "^[A-Za-z0-9._-]{1,64}$"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TS_PATTERN = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    "(\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# A VMRS key is a short C.D.E code or a six-group dotted code (e.g. 0.0.96.3.10.255).
OBIS_KEY_PATTERN = "^[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3})?$"
LOGICAL_NAME_PATTERN = "^[0-9]{1,3}-[0-9]{1,3}:[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}$"
SCHEMA_VERSION_PATTERN = "^0\\.[0-9]{1,3}$"
FLAG_PATTERN = "^[a-z][a-z0-9_]{0,63}$"

RAW_HEX_PATTERN = "^0x[0-9A-Fa-f]{1,32}$"
READ_PATH_PATTERN = "^[a-z0-9][a-z0-9._-]{0,31}$"

# Plain words for each pattern, used by the fast validator's error messages.
PATTERN_NAMES = {
    ID_PATTERN: "an id: 1-64 characters of A-Z a-z 0-9 . _ -",
    UUID_PATTERN: "a UUID",
    TS_PATTERN: "an RFC 3339 date-time with offset (Z or ±hh:mm)",
    OBIS_KEY_PATTERN: "a VMRS key such as 1.8.0 or 0.0.96.3.10.255",
    LOGICAL_NAME_PATTERN: "a logical name A-B:C.D.E.F such as 1-0:1.8.0.255",
    SCHEMA_VERSION_PATTERN: "a 0.x schema version",
    FLAG_PATTERN: "a snake_case flag name",
    RAW_HEX_PATTERN: "hex such as 0x0004",
    READ_PATH_PATTERN: "a read path such as dlms-hdlc or modbus-rtu (lower case)",
}

QUALITIES = ["good", "suspect", "comms_lost"]
EVENT_TYPES = [
    # G3 starter enum
    "tamper",
    "disconnect_state_changed",
    "credit_low",
    "credit_exhausted",
    "token_accepted",
    "token_rejected",
    "meter_comms_lost",
    "meter_comms_restored",
    "clock_drift",
    "power_fail_last_gasp",
    "power_restored",
    "overload_trip",
    "leakage_alert",
    "energy_balance_alert",
    "meter_disagreement",
    "neutral_imbalance",
    # villageami additions (docs/contract.md, "Event types")
    "data_gap",
    "register_decreased",
    "consumption_while_disconnected",
    "vendor_event",
]
SEVERITIES = ["info", "low", "medium", "high", "critical"]
EVENT_STATES = ["raised", "cleared", "momentary"]
METER_COMMANDS = ["disconnect", "reconnect", "read_now", "sync_clock", "set_mode", "set_credit_display"]
GATEWAY_COMMANDS = ["ping", "rescan"]
COMMAND_STATUSES = ["accepted", "rejected", "executing", "succeeded", "failed", "expired"]
GATEWAY_STATES = ["online", "offline"]
CLOCK_SOURCES = ["ntp", "gps", "rtc", "none"]
METER_ROLES = ["customer", "feeder", "branch", "tenant-circuit"]
METER_MODES = ["auto", "manual"]


def _common_defs() -> dict[str, Schema]:
    return {
        "id": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "feederId / gatewayId / meterSerial: 1-64 of A-Z a-z 0-9 . _ - (G21)",
        },
        "uuid": {"type": "string", "pattern": UUID_PATTERN, "format": "uuid"},
        "timestamp": {
            "type": "string",
            "pattern": TS_PATTERN,
            "format": "date-time",
            "description": "RFC 3339 date-time with an offset (Z or +hh:mm); producers send UTC with Z (G8)",
        },
        "schemaVersion": {
            "type": "string",
            "pattern": SCHEMA_VERSION_PATTERN,
            "description": "0.x; consumers accept every 0.x (G25). Absent means 0.1.",
        },
        "seq": {
            "type": "integer",
            "minimum": 0,
            "maximum": 9007199254740991,
            "description": "monotonic per gateway, persisted across restarts (G7)",
        },
        "sipCallId": {"type": ["string", "null"], "minLength": 1, "maxLength": 256},
        "detail": {"type": ["object", "null"], "description": "free-form details; vendor codes here"},
    }


def _register_defs() -> dict[str, Schema]:
    return {
        "register": {
            "type": "object",
            "required": ["obis", "value", "unit", "quality"],
            "properties": {
                "obis": {
                    "type": "string",
                    "pattern": OBIS_KEY_PATTERN,
                    "description": "the canonical VMRS key (G10); 96.11.1 accepted as deprecated alias",
                },
                "value": {"type": ["number", "string", "boolean"]},
                "unit": {"type": "string", "minLength": 1, "maxLength": 16},
                "quality": {"enum": QUALITIES},
                "reason": {"type": "string", "minLength": 1, "maxLength": 200},
                "readAt": {"$ref": "#/$defs/timestamp"},
                "raw": {"type": "string", "pattern": RAW_HEX_PATTERN},
                "flags": {
                    "type": "array",
                    "items": {"type": "string", "pattern": FLAG_PATTERN},
                    "uniqueItems": True,
                    "maxItems": 64,
                },
                "unmappedBits": {"type": "integer", "minimum": 0},
                "logicalName": {"type": "string", "pattern": LOGICAL_NAME_PATTERN},
                "classId": {"type": "integer", "minimum": 0, "maximum": 65535},
                "attr": {"type": "integer", "minimum": -128, "maximum": 127},
            },
            "additionalProperties": False,
            # comms_lost repeats the last-known value, so it must say when that value was read (G14).
            "if": {"properties": {"quality": {"const": "comms_lost"}}, "required": ["quality"]},
            "then": {"required": ["readAt"]},
        },
    }


def _envelope_props() -> dict[str, Schema]:
    return {
        "schemaVersion": {"$ref": "#/$defs/schemaVersion"},
        "msgId": {"$ref": "#/$defs/uuid"},
        "seq": {"$ref": "#/$defs/seq"},
        "ts": {"$ref": "#/$defs/timestamp"},
        "publishedAt": {"$ref": "#/$defs/timestamp"},
        "replayed": {"type": "boolean"},
        "feederId": {"$ref": "#/$defs/id"},
        "gatewayId": {"$ref": "#/$defs/id"},
    }


# Messages of schemaVersion 0.2+ must carry msgId and seq; a 0.1 envelope (or one without schemaVersion,
# like the upstream example) may omit them and gets a deprecation warning from the semantic checks.
_IDS_UNLESS_V01: Schema = {
    "if": {"properties": {"schemaVersion": {"const": "0.1"}}},
    "else": {"required": ["msgId", "seq"]},
}


def _document(name: str, title: str, body: Schema, defs: dict[str, Schema]) -> Schema:
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{ID_BASE}{name}.schema.json",
        "title": title,
        **body,
        "$defs": defs,
    }


def telemetry_schema() -> Schema:
    props = _envelope_props()
    props |= {
        "meterSerial": {"$ref": "#/$defs/id"},
        "sipCallId": {"$ref": "#/$defs/sipCallId"},
        "registers": {"type": "array", "minItems": 1, "maxItems": 256, "items": {"$ref": "#/$defs/register"}},
    }
    body: Schema = {
        "description": "Topic openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/telemetry, QoS 1, "
        "not retained.",
        "type": "object",
        "required": ["ts", "feederId", "gatewayId", "meterSerial", "registers"],
        "properties": props,
        "additionalProperties": False,
        **_IDS_UNLESS_V01,
    }
    return _document("telemetry", "OpenAMI v1 meter telemetry", body, _common_defs() | _register_defs())


def event_schema() -> Schema:
    props = _envelope_props()
    props |= {
        "meterSerial": {"$ref": "#/$defs/id"},
        "sipCallId": {"$ref": "#/$defs/sipCallId"},
        "event": {
            "type": "object",
            "required": ["type", "severity", "state"],
            "properties": {
                "type": {"enum": EVENT_TYPES},
                "severity": {"enum": SEVERITIES},
                "state": {"enum": EVENT_STATES},
                "detail": {"$ref": "#/$defs/detail"},
            },
            "additionalProperties": False,
        },
        "registers": {"type": "array", "maxItems": 256, "items": {"$ref": "#/$defs/register"}},
    }
    body: Schema = {
        "description": "Topic openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/event, QoS 1, "
        "not retained.",
        "type": "object",
        "required": ["msgId", "seq", "ts", "feederId", "gatewayId", "meterSerial", "event"],
        "properties": props,
        "additionalProperties": False,
    }
    return _document("event", "OpenAMI v1 meter event", body, _common_defs() | _register_defs())


def _params(properties: Schema, required: list[str]) -> Schema:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _when_type(command_type: str, params: Schema) -> Schema:
    return {
        "if": {"properties": {"type": {"const": command_type}}, "required": ["type"]},
        "then": {"properties": {"params": params}},
    }


def command_schema() -> Schema:
    body: Schema = {
        "description": (
            "Topics openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/command (meter commands) and "
            ".../gateway/command (ping, rescan); QoS 1, never retained (G5)."
        ),
        "type": "object",
        "required": ["commandId", "ts", "expiresAt", "issuedBy", "type", "params"],
        "properties": {
            "schemaVersion": {"$ref": "#/$defs/schemaVersion"},
            "commandId": {"$ref": "#/$defs/uuid"},
            "ts": {"$ref": "#/$defs/timestamp"},
            "expiresAt": {"$ref": "#/$defs/timestamp"},
            "issuedBy": {"type": "string", "minLength": 1, "maxLength": 128},
            "type": {"enum": METER_COMMANDS + GATEWAY_COMMANDS},
            "params": {"type": "object"},
            "reason": {"type": ["string", "null"], "maxLength": 200},
            "sipCallId": {"$ref": "#/$defs/sipCallId"},
            "feederId": {"$ref": "#/$defs/id"},
            "gatewayId": {"$ref": "#/$defs/id"},
            "meterSerial": {"$ref": "#/$defs/id"},
        },
        "additionalProperties": False,
        "allOf": [
            _when_type("disconnect", _params({}, [])),
            _when_type("reconnect", _params({}, [])),
            _when_type("ping", _params({}, [])),
            _when_type(
                "read_now",
                _params(
                    {
                        "registers": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "pattern": OBIS_KEY_PATTERN},
                        }
                    },
                    [],
                ),
            ),
            _when_type("sync_clock", _params({"maxDriftSeconds": {"type": "number", "minimum": 0}}, [])),
            _when_type("set_mode", _params({"mode": {"enum": METER_MODES}}, ["mode"])),
            _when_type(
                "set_credit_display",
                _params(
                    {
                        "value": {"type": "number"},
                        "unit": {"type": "string", "minLength": 1, "maxLength": 16},
                    },
                    ["value", "unit"],
                ),
            ),
            _when_type("rescan", _params({"channels": {"type": "array", "items": {"type": "integer"}}}, [])),
        ],
    }
    return _document("command", "OpenAMI v1 command", body, _common_defs())


def command_result_schema() -> Schema:
    props = _envelope_props()
    props |= {
        "commandId": {"$ref": "#/$defs/uuid"},
        "meterSerial": {"anyOf": [{"$ref": "#/$defs/id"}, {"type": "null"}]},
        "status": {"enum": COMMAND_STATUSES},
        "detail": {"$ref": "#/$defs/detail"},
        "registers": {"type": "array", "maxItems": 256, "items": {"$ref": "#/$defs/register"}},
    }
    body: Schema = {
        "description": (
            "Topics .../meter/{meterSerial}/command/result and .../gateway/command/result; QoS 1, "
            "not retained (G2)."
        ),
        "type": "object",
        "required": ["msgId", "seq", "commandId", "ts", "feederId", "gatewayId", "status"],
        "properties": props,
        "additionalProperties": False,
    }
    return _document("command-result", "OpenAMI v1 command result", body, _common_defs() | _register_defs())


def status_schema() -> Schema:
    props = _envelope_props()
    props |= {
        "ts": {"anyOf": [{"$ref": "#/$defs/timestamp"}, {"type": "null"}]},
        "state": {"enum": GATEWAY_STATES},
        "fw": {"type": "string", "minLength": 1, "maxLength": 64},
        "bootTs": {"$ref": "#/$defs/timestamp"},
        "bufferDepth": {"type": "integer", "minimum": 0},
        "evictedTelemetry": {"type": "integer", "minimum": 0},
        "meterCount": {"type": "integer", "minimum": 0},
        "clockSource": {"enum": CLOCK_SOURCES},
        "reason": {"type": "string", "maxLength": 200},
    }
    body: Schema = {
        "description": (
            "Topic openami/v1/{feederId}/{gatewayId}/gateway/status, QoS 1, retained; also the MQTT last "
            "will (state offline, ts null) (G5, G6)."
        ),
        "type": "object",
        "required": ["feederId", "gatewayId", "state", "ts"],
        "properties": props,
        "additionalProperties": False,
        # Only the last will (composed at connect time) may lack a time.
        "if": {"properties": {"state": {"const": "online"}}, "required": ["state"]},
        "then": {"properties": {"ts": {"$ref": "#/$defs/timestamp"}}},
    }
    return _document("status", "OpenAMI v1 gateway status", body, _common_defs())


def inventory_schema() -> Schema:
    meter: Schema = {
        "type": "object",
        "required": ["meterSerial", "readPath", "role", "registers"],
        "properties": {
            "meterSerial": {"$ref": "#/$defs/id"},
            "serialAsRead": {"type": "string", "minLength": 1, "maxLength": 128},
            "vendor": {"type": "string", "maxLength": 64},
            "model": {"type": "string", "maxLength": 64},
            "profile": {"type": "string", "maxLength": 128},
            "readPath": {"type": "string", "pattern": READ_PATH_PATTERN},
            "role": {"enum": METER_ROLES},
            "channel": {"type": "integer", "minimum": 0},
            "phases": {"enum": [1, 3]},
            "prepaid": {"type": "boolean"},
            "netMetered": {"type": "boolean"},
            "registers": {
                "type": "array",
                "items": {"type": "string", "pattern": OBIS_KEY_PATTERN},
                "uniqueItems": True,
            },
        },
        "additionalProperties": False,
    }
    props = _envelope_props()
    props |= {
        "fw": {"type": "string", "minLength": 1, "maxLength": 64},
        "model": {"type": "string", "maxLength": 64},
        "meters": {"type": "array", "maxItems": 1024, "items": {"$ref": "#/$defs/inventoryMeter"}},
    }
    body: Schema = {
        "description": "Topic openami/v1/{feederId}/{gatewayId}/gateway/inventory, QoS 1, retained (G4).",
        "type": "object",
        "required": ["ts", "feederId", "gatewayId", "meters"],
        "properties": props,
        "additionalProperties": False,
    }
    return _document(
        "inventory", "OpenAMI v1 gateway inventory", body, _common_defs() | {"inventoryMeter": meter}
    )


SCHEMA_BUILDERS = {
    "telemetry": telemetry_schema,
    "event": event_schema,
    "command": command_schema,
    "command-result": command_result_schema,
    "status": status_schema,
    "inventory": inventory_schema,
}


def render(schema: Schema) -> str:
    """The canonical file text of a schema."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, build in SCHEMA_BUILDERS.items():
        path = directory / f"{kind}.schema.json"
        path.write_text(render(build()), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    package_dir = Path(__file__).parent / "data" / "schemas"
    targets = [package_dir, *(Path(arg) for arg in sys.argv[1:])]
    for target in targets:
        for path in write_all(target):
            print(path)
