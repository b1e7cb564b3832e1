"""Envelope builders: each builds the message the contract documents, and it validates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from contract_cases import COMMAND, COMMAND_RESULT, EVENT, INVENTORY, LAST_WILL, STATUS

from villageami.contract import envelope as env
from villageami.contract import schemas_source
from villageami.contract.errors import EnvelopeError
from villageami.contract.validation import validate_message
from villageami.errors import VillageAmiError

DISCONNECT = "0.0.96.3.10.255"
TS = datetime(2026, 6, 22, 14, 30, 0, 123456, tzinfo=UTC)


def test_format_ts() -> None:
    assert env.format_ts(TS) == "2026-06-22T14:30:00.123Z"
    plus_one = datetime(2026, 6, 22, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    assert env.format_ts(plus_one) == "2026-06-22T14:30:00.000Z"


def test_format_ts_rejects_naive() -> None:
    with pytest.raises(EnvelopeError, match="naive") as info:
        env.format_ts(datetime(2026, 6, 22, 14, 30))
    assert isinstance(info.value, VillageAmiError)


def test_new_msg_id_is_uuid4() -> None:
    assert uuid.UUID(env.new_msg_id()).version == 4
    assert env.new_msg_id() != env.new_msg_id()


def test_register_entry_canonicalises_and_fills_raw() -> None:
    assert env.register_entry("1-0:1.8.0.255", 1.5, "kWh")["obis"] == "1.8.0"
    assert env.register_entry("96.11.1", "connected", "enum")["obis"] == "0.0.96.3.10.255"
    tamper = env.register_entry("96.5.0", 0x104, "bitfield", flags=["magnetic"], unmapped_bits=0x100)
    assert tamper == {
        "obis": "96.5.0",
        "value": 260,
        "unit": "bitfield",
        "quality": "good",
        "raw": "0x0104",
        "flags": ["magnetic"],
        "unmappedBits": 256,
    }
    stale = env.register_entry("1.7.0", 0, "W", "comms_lost", read_at=TS, reason="meter unreachable")
    assert stale["readAt"] == "2026-06-22T14:30:00.123Z" and stale["reason"] == "meter unreachable"


def test_telemetry_builder_validates_and_serialises() -> None:
    message = env.telemetry(
        feeder_id="f1",
        gateway_id="g1",
        meter_serial="m1",
        registers=[env.register_entry("1.8.0", 1.5, "kWh", logical_name="1-0:1.8.0.255")],
        ts=TS,
        msg_id=env.new_msg_id(),
        seq=0,
        replayed=True,
        published_at=TS + timedelta(hours=1),
    )
    assert message["schemaVersion"] == env.SCHEMA_VERSION == "0.2"
    assert message["replayed"] is True and message["publishedAt"] == "2026-06-22T15:30:00.123Z"
    assert (
        validate_message(
            orjson.loads(orjson.dumps(message)), "telemetry", "openami/v1/f1/g1/meter/m1/telemetry"
        )
        == []
    )


def test_telemetry_builder_rejects_empty_and_bad_ids() -> None:
    with pytest.raises(EnvelopeError, match="G24"):
        env.telemetry(feeder_id="f", gateway_id="g", meter_serial="m", registers=[], ts=TS, msg_id="x", seq=0)
    with pytest.raises(EnvelopeError, match="'a b'"):
        env.telemetry(
            feeder_id="a b", gateway_id="g", meter_serial="m", registers=[{}], ts=TS, msg_id="x", seq=0
        )


def _strip(message: dict[str, object], *keys: str) -> dict[str, object]:
    return {k: v for k, v in message.items() if k not in keys}


def test_event_builder_matches_documented_shape() -> None:
    built = env.event(
        feeder_id=EVENT["feederId"],
        gateway_id=EVENT["gatewayId"],
        meter_serial=EVENT["meterSerial"],
        event_type=env.EventType.TAMPER,
        severity=env.Severity.HIGH,
        state=env.EventState.RAISED,
        ts=EVENT["ts"],
        msg_id=EVENT["msgId"],
        seq=EVENT["seq"],
        detail=EVENT["event"]["detail"],
        registers=[env.register_entry("96.5.0", 4, "bitfield")],
    )
    assert built == EVENT


def test_command_and_result_builders() -> None:
    built = env.command(
        command_id=COMMAND["commandId"],
        command_type=env.CommandType.DISCONNECT,
        ts=COMMAND["ts"],
        expires_at=COMMAND["expiresAt"],
        issued_by="hes:operator-7",
        reason="credit_exhausted",
    )
    assert built == _strip(COMMAND, "sipCallId")
    result = env.command_result(
        feeder_id=COMMAND_RESULT["feederId"],
        gateway_id=COMMAND_RESULT["gatewayId"],
        meter_serial=COMMAND_RESULT["meterSerial"],
        command_id=COMMAND_RESULT["commandId"],
        status=env.CommandStatus.SUCCEEDED,
        ts=COMMAND_RESULT["ts"],
        msg_id=COMMAND_RESULT["msgId"],
        seq=COMMAND_RESULT["seq"],
        registers=[env.register_entry("0.0.96.3.10.255", env.DisconnectState.DISCONNECTED, "enum")],
    )
    assert result == COMMAND_RESULT
    gateway_result = env.command_result(
        feeder_id="f1",
        gateway_id="g1",
        meter_serial=None,
        command_id=env.new_msg_id(),
        status="failed",
        ts=TS,
        msg_id=env.new_msg_id(),
        seq=5,
        detail={"message": "bus timeout"},
    )
    assert validate_message(gateway_result, "auto", "openami/v1/f1/g1/gateway/command/result") == []


def test_status_last_will_and_inventory() -> None:
    status = env.gateway_status(
        feeder_id=STATUS["feederId"],
        gateway_id=STATUS["gatewayId"],
        state=env.GatewayState.ONLINE,
        ts=STATUS["ts"],
        fw="villageami-0.1.0",
        boot_ts=STATUS["bootTs"],
        clock_source=env.ClockSource.NTP,
        buffer_depth=0,
    )
    assert status == STATUS
    assert env.last_will(LAST_WILL["feederId"], LAST_WILL["gatewayId"]) == LAST_WILL
    meters = [
        env.inventory_meter(
            m["meterSerial"],
            read_path=m["readPath"],
            registers=m["registers"],
            role=m["role"],
            vendor=m.get("vendor"),
            model=m.get("model"),
            channel=m.get("channel"),
            phases=m.get("phases"),
            prepaid=m.get("prepaid"),
        )
        for m in INVENTORY["meters"]
    ]
    built = env.gateway_inventory(
        feeder_id=INVENTORY["feederId"],
        gateway_id=INVENTORY["gatewayId"],
        ts=INVENTORY["ts"],
        meters=meters,
        msg_id=INVENTORY["msgId"],
        seq=INVENTORY["seq"],
    )
    assert built == INVENTORY


def test_enums_mirror_the_schemas() -> None:
    assert [q.value for q in env.Quality] == schemas_source.QUALITIES
    assert [t.value for t in env.EventType] == schemas_source.EVENT_TYPES
    assert [s.value for s in env.Severity] == schemas_source.SEVERITIES
    assert [s.value for s in env.EventState] == schemas_source.EVENT_STATES
    assert [
        c.value for c in env.CommandType
    ] == schemas_source.METER_COMMANDS + schemas_source.GATEWAY_COMMANDS
    assert [s.value for s in env.CommandStatus] == schemas_source.COMMAND_STATUSES
    assert [s.value for s in env.GatewayState] == schemas_source.GATEWAY_STATES
    assert [s.value for s in env.ClockSource] == schemas_source.CLOCK_SOURCES
    assert [r.value for r in env.MeterRole] == schemas_source.METER_ROLES
    assert "data_gap" in env.EventType.__members__.values()


def test_builders_reject_bad_timestamps() -> None:
    with pytest.raises(EnvelopeError, match="'yesterday'"):
        env.command(command_id="c", command_type="ping", ts="yesterday", expires_at=TS, issued_by="x")


def test_enum_members_validate_before_serialisation() -> None:
    # Builders may be handed StrEnum members; the in-process dict must validate like its JSON form.
    message = env.command_result(
        feeder_id="f1",
        gateway_id="g1",
        meter_serial="m1",
        command_id=env.new_msg_id(),
        status=env.CommandStatus.SUCCEEDED,
        ts=TS,
        msg_id=env.new_msg_id(),
        seq=1,
        registers=[
            env.register_entry(
                "0.0.96.3.10.255", env.DisconnectState.READY_FOR_RECONNECTION, "enum", env.Quality.GOOD
            )
        ],
    )
    assert type(message["registers"][0]["value"]) is str
    assert validate_message(message) == []
    raw = {
        "obis": "0.0.96.3.10.255",
        "value": env.DisconnectState.CONNECTED,
        "unit": "enum",
        "quality": "good",
    }
    assert validate_message({**message, "registers": [raw]}) == []
