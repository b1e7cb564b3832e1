"""End to end on real Mosquitto: fake meters -> gateway -> broker -> subscriber; commands; SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from gw_fakes import FakeFleet, config_data, make_config, meter_entry, no_profile
from gw_mqtt import Collector, first_arrivals, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from villageami.contract import envelope
from villageami.contract.validation import validate_message
from villageami.gateway.app import Gateway
from villageami.gateway.outbox import Outbox

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def broker_section(host: str, port: int, root: str) -> dict[str, Any]:
    return {"url": f"mqtt://{host}:{port}", "topicRoot": root, "backoffInitialS": 0.05, "backoffMaxS": 0.3}


def publish(host: str, port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect(host, port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    return await asyncio.to_thread(wait_until, predicate, timeout)


def test_meters_to_subscriber_and_commands_back(mosquitto: tuple[str, int], tmp_path: Path) -> None:
    host, port = mosquitto
    root = f"test/{uuid.uuid4().hex}"
    meters = [meter_entry("M1", bus="bus-a"), meter_entry("M2", bus="bus-a"), meter_entry("T1", bus=None)]
    config = make_config(tmp_path, meters, broker=broker_section(host, port, root))
    fleet = FakeFleet()
    gateway = Gateway(config, base_dir=tmp_path, driver_factory=fleet, profile_loader=no_profile)
    collector = Collector(host, port, f"{root}/#")

    def results(command_id: str) -> list[str]:
        return [p["status"] for p in collector.payloads("/command/result") if p["commandId"] == command_id]

    async def scenario() -> None:
        task = asyncio.create_task(gateway.run())
        try:
            assert await eventually(
                lambda: {p["meterSerial"] for p in collector.payloads("/telemetry")} >= {"M1", "M2", "T1"}
            )
            now = datetime.now(UTC)
            off_id, expired_id = str(uuid.uuid4()), str(uuid.uuid4())
            off = envelope.command(
                command_id=off_id, command_type="disconnect", ts=now,
                expires_at=now + timedelta(minutes=1), issued_by="hes:test",
            )  # fmt: skip
            stale = envelope.command(
                command_id=expired_id, command_type="reconnect", ts=now - timedelta(minutes=30),
                expires_at=now - timedelta(minutes=15), issued_by="hes:test",
            )  # fmt: skip
            topic = gateway.northbound.topic(envelope.MessageKind.COMMAND, "M1")
            await asyncio.to_thread(publish, host, port, topic, orjson.dumps(off))
            await asyncio.to_thread(publish, host, port, topic, orjson.dumps(stale))
            assert await eventually(lambda: results(off_id)[-1:] == ["succeeded"])
            assert await eventually(lambda: results(expired_id) == ["expired"])
            assert results(off_id) == ["accepted", "executing", "succeeded"]
            assert fleet.meters["M1"].relay == "disconnected"
            on_id = str(uuid.uuid4())
            on = envelope.command(
                command_id=on_id, command_type="reconnect", ts=datetime.now(UTC),
                expires_at=datetime.now(UTC) + timedelta(minutes=1), issued_by="hes:test",
            )  # fmt: skip
            await asyncio.to_thread(publish, host, port, topic, orjson.dumps(on))
            assert await eventually(lambda: results(on_id)[-1:] == ["succeeded"])
            assert fleet.meters["M1"].relay == "connected"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(scenario())
        received = collector.snapshot()
        for topic, payload, _ in received:
            problems = [
                p for p in validate_message(payload, "auto", topic, root=root) if p.severity == "error"
            ]
            assert not problems, (topic, payload, problems)
        done = [p for p in collector.payloads("/command/result") if p["status"] == "succeeded"]
        assert [(r["registers"][0]["obis"], r["registers"][0]["value"]) for r in done] == [
            ("0.0.96.3.10.255", "disconnected"),
            ("0.0.96.3.10.255", "connected"),
        ]
        statuses = collector.payloads("/gateway/status")
        assert statuses[0]["state"] == "online" and statuses[-1]["state"] == "offline"
        inventory = collector.payloads("/gateway/inventory")[0]
        assert {m["meterSerial"] for m in inventory["meters"]} == {"M1", "M2", "T1"}
        telemetry = first_arrivals(collector.payloads("/telemetry"))
        assert [p["seq"] for p in telemetry] == sorted(p["seq"] for p in telemetry)
    finally:
        collector.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from gw_fakes import FakeFleet, no_profile
    from villageami.gateway.app import Gateway
    from villageami.gateway.config import load_config
    path = Path(sys.argv[1])
    config = load_config(path, check_urls=False)
    gateway = Gateway(config, base_dir=path.parent, driver_factory=FakeFleet(), profile_loader=no_profile)
    asyncio.run(gateway.run())
    """
)


def test_sigkill_mid_cycle_then_restart_loses_nothing_and_seq_continues(
    mosquitto: tuple[str, int], tmp_path: Path
) -> None:
    host, port = mosquitto
    root = f"test/{uuid.uuid4().hex}"
    meters = [meter_entry(f"A{i}", bus="bus-a") for i in range(3)] + [
        meter_entry(f"B{i}", bus="bus-b") for i in range(3)
    ]
    data = config_data(
        tmp_path, meters, broker=broker_section(host, port, root),
        schedules={"instantaneousS": 0.05, "statusS": 0.05, "clockS": 0.05},
    )  # fmt: skip
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(data))
    collector = Collector(host, port, f"{root}/+/+/meter/#")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", CHILD, str(config_file), str(HERE)])

    def kill(proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    try:
        first = start()
        try:
            assert wait_until(lambda: len(collector.payloads()) >= 30, 15)
        finally:
            kill(first)  # mid-cycle: reads, enqueues and publishes are all in flight
        seen_before_restart = {p["seq"] for p in collector.payloads()}
        second = start()
        try:
            assert wait_until(
                lambda: len({p["seq"] for p in collector.payloads()}) >= len(seen_before_restart) + 30, 15
            )
        finally:
            kill(second)
        outbox = Outbox(tmp_path / "outbox.db")
        left = {m.seq: m.msg_id for m in outbox.pending(limit=100_000)}
        last_seq = outbox.last_seq()
        outbox.close()
        by_seq: dict[int, set[str]] = {}
        for p in collector.payloads():
            by_seq.setdefault(p["seq"], set()).add(p["msgId"])
        for seq, msg_id in left.items():
            by_seq.setdefault(seq, set()).add(msg_id)
        assert all(len(ids) == 1 for ids in by_seq.values()), "a seq was given to two messages"
        assert sorted(by_seq) == list(range(1, last_seq + 1)), (
            "every seq ever allocated was delivered or is stored"
        )
        assert max(by_seq) > max(seen_before_restart), "seq continues after the restart"
    finally:
        collector.close()


def test_cli_run_goes_online_and_says_offline_on_sigterm(mosquitto: tuple[str, int], tmp_path: Path) -> None:
    host, port = mosquitto
    root = f"test/{uuid.uuid4().hex}"
    data = config_data(tmp_path, [], broker=broker_section(host, port, root), log={"format": "json"})
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(data))
    collector = Collector(host, port, f"{root}/+/+/gateway/status")
    proc = subprocess.Popen(
        [sys.executable, "-m", "villageami.cli", "gateway", "run", str(config_file)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: any(p["state"] == "online" for p in collector.payloads()), 15)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert wait_until(lambda: collector.payloads()[-1]["state"] == "offline", 5)
        assert collector.payloads()[-1]["reason"] == "gateway stopped"
        assert proc.stderr is not None
        first_log = orjson.loads(proc.stderr.readline())
        assert first_log["logger"].startswith("villageami.gateway") and "level" in first_log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        collector.close()
