"""Acceptance: DLMS, Modbus and IEC 62056-21 simulators -> the real gateway -> real Mosquitto -> paho.

Everything runs in-process: the three simulators on ephemeral ports, the gateway built from a config file
exactly as ``villageami gateway run`` builds it (``load_config`` with URL/profile checks, real drivers from
``meters.factory``), and a paho subscriber. Topics use the default root with unique feeder/gateway ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from gw_mqtt import Collector, first_arrivals, wait_until
from test_gw_e2e import publish

from villageami.contract import envelope
from villageami.contract.validation import validate_message
from villageami.contract.vmrs import VMRS, lookup_key
from villageami.gateway.app import Gateway
from villageami.gateway.config import load_config
from villageami.meters.profile import load_profile
from villageami.sim.dlms_model import CONNECTED, DISCONNECTED
from villageami.sim.dlms_server import DlmsSimulator
from villageami.sim.iec21_server import Iec21Simulator
from villageami.sim.modbus_server import ModbusSimulator

pytestmark = pytest.mark.integration

DISCONNECT_OBIS = "0.0.96.3.10.255"
SERIALS = ("DLMS-1", "SDM630-1", "IEC21-1")


async def eventually(predicate: Callable[[], bool], timeout: float = 8.0) -> bool:
    return await asyncio.to_thread(wait_until, predicate, timeout)


def write_config(tmp_path: Path, host: str, port: int, urls: dict[str, str]) -> tuple[Path, str, str]:
    feeder, gateway = f"feeder-{uuid.uuid4().hex[:10]}", f"gw-{uuid.uuid4().hex[:10]}"
    profiles = {
        "DLMS-1": "villageami-sim-dlms-1p",
        "SDM630-1": "eastron-sdm630",
        "IEC21-1": "iec21-generic-mode-c",
    }
    data: dict[str, Any] = {
        "feederId": feeder,
        "gatewayId": gateway,
        "broker": {"url": f"mqtt://{host}:{port}", "backoffInitialS": 0.05, "backoffMaxS": 0.3},
        "meters": [{"serial": s, "url": urls[s], "profile": profiles[s]} for s in SERIALS],
        "schedules": {"instantaneousS": 0.5, "statusS": 0.5, "clockS": 0.5, "readTimeoutS": 3},
        "outbox": {"path": "outbox.db"},
        "commands": {"path": "commands.db"},
        "metrics": {"enabled": False},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, feeder, gateway


def test_three_protocols_over_mosquitto_with_disconnect_and_reconnect(
    mosquitto: tuple[str, int], tmp_path: Path
) -> None:
    host, port = mosquitto
    holder: dict[str, Any] = {}

    async def scenario() -> None:
        dlms = DlmsSimulator(transport="wrapper")
        await dlms.start()
        modbus = ModbusSimulator(load_profile("eastron-sdm630"), units=(1,))
        iec21 = Iec21Simulator()
        async with modbus, iec21:
            try:
                urls = {
                    "DLMS-1": dlms.url,
                    "SDM630-1": f"modbus+tcp://127.0.0.1:{modbus.port}?unit=1&timeout=1",
                    "IEC21-1": f"iec21+tcp://127.0.0.1:{iec21.port}?timeout=2",
                }
                config_file, feeder, gateway_id = write_config(tmp_path, host, port, urls)
                prefix = f"openami/v1/{feeder}/{gateway_id}"
                collector = Collector(host, port, f"{prefix}/#")
                holder.update(collector=collector, prefix=prefix)
                gateway = Gateway(load_config(config_file), base_dir=config_file.parent)
                task = asyncio.create_task(gateway.run())
                try:
                    await drive(gateway, dlms, collector, host, port)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            finally:
                await dlms.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
        check_everything_received(holder["collector"])
    finally:
        if "collector" in holder:
            holder["collector"].close()


def telemetry_of(collector: Collector, serial: str) -> list[dict[str, Any]]:
    return [p for p in collector.payloads("/telemetry") if p["meterSerial"] == serial]


def results_of(collector: Collector, command_id: str) -> list[dict[str, Any]]:
    return [p for p in collector.payloads("/command/result") if p["commandId"] == command_id]


def relay_in(message: dict[str, Any]) -> str | None:
    return next((r["value"] for r in message["registers"] if r["obis"] == DISCONNECT_OBIS), None)


async def drive(gateway: Gateway, dlms: DlmsSimulator, collector: Collector, host: str, port: int) -> None:
    assert await eventually(lambda: all(telemetry_of(collector, s) for s in SERIALS)), (
        "telemetry from all three meters",
        {s: len(telemetry_of(collector, s)) for s in SERIALS},
    )
    assert await eventually(lambda: any(relay_in(t) for t in telemetry_of(collector, "DLMS-1")))
    assert dlms.meter().state.control_state == CONNECTED
    topic = gateway.northbound.topic(envelope.MessageKind.COMMAND, "DLMS-1")
    await command_round(collector, dlms, host, port, topic, "disconnect", "disconnected", DISCONNECTED)
    await command_round(collector, dlms, host, port, topic, "reconnect", "connected", CONNECTED)


async def command_round(
    collector: Collector, dlms: DlmsSimulator, host: str, port: int, topic: str,
    ctype: str, target: str, relay: int,
) -> None:  # fmt: skip
    """Send one relay command over MQTT; check its results, the simulated relay and a later read."""
    command_id, now = str(uuid.uuid4()), datetime.now(UTC)
    body = envelope.command(
        command_id=command_id, command_type=ctype, ts=now,
        expires_at=now + timedelta(minutes=1), issued_by="hes:acceptance",
    )  # fmt: skip
    await asyncio.to_thread(publish, host, port, topic, orjson.dumps(body))

    def statuses() -> list[str]:
        return [r["status"] for r in results_of(collector, command_id)]

    assert await eventually(lambda: statuses()[-1:] == ["succeeded"]), statuses()
    results = results_of(collector, command_id)
    assert statuses() == ["accepted", "executing", "succeeded"]
    assert [(r["obis"], r["value"]) for r in results[-1]["registers"]] == [(DISCONNECT_OBIS, target)]
    assert dlms.meter().state.control_state == relay, f"the simulated relay after {ctype}"
    # A scheduled read published after the result shows the new state too.
    done_seq = results[-1]["seq"]
    assert await eventually(
        lambda: any(t["seq"] > done_seq and relay_in(t) == target for t in telemetry_of(collector, "DLMS-1"))
    ), f"a read after {ctype} shows {target}"


def check_everything_received(collector: Collector) -> None:
    received = collector.snapshot()
    assert received
    for topic, payload, _ in received:
        errors = [p for p in validate_message(payload, topic=topic) if p.severity == "error"]
        assert not errors, (topic, payload, errors)
    sequenced = first_arrivals([p for _, p, _ in received if "seq" in p])
    seqs = [p["seq"] for p in sequenced]
    assert all(a < b for a, b in itertools.pairwise(seqs)), f"seq not strictly increasing: {seqs}"
    for serial in SERIALS:
        keys_seen: set[str] = set()
        for message in telemetry_of(collector, serial):
            for register in message["registers"]:
                key = lookup_key(register["obis"])
                assert key is not None, register
                vmrs = VMRS[key]
                unit = register.get("unit")
                allowed = set(vmrs.units) | ({vmrs.unit} if vmrs.unit else set())
                if allowed:
                    assert unit in allowed, (serial, register, allowed)
                keys_seen.add(key)
        assert {"1.8.0", "32.7.0"} <= keys_seen, (serial, keys_seen)
