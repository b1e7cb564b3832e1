"""MQTT uplink against real Mosquitto: seq order, PUBACK-gated delete, birth/will, broker outage."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from gw_mqtt import Collector, PrivateBroker, first_arrivals, wait_until

from villageami.gateway.outbox import EnvelopeBuilder, Outbox
from villageami.gateway.uplink import BrokerSettings, RetainedMessage, Uplink

pytestmark = pytest.mark.integration


def reading(prefix: str, n: int) -> tuple[str, str, EnvelopeBuilder]:
    def build(msg_id: str, seq: int) -> dict[str, Any]:
        return {"msgId": msg_id, "seq": seq, "n": n, "meterSerial": "M1"}

    return f"{prefix}/meter/M1/telemetry", "telemetry", build


def status(prefix: str, state: str) -> RetainedMessage:
    return RetainedMessage(f"{prefix}/gateway/status", orjson.dumps({"state": state}))


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(predicate: Any, timeout: float = 10.0) -> bool:
    return await asyncio.to_thread(wait_until, predicate, timeout)


def make_uplink(prefix: str, host: str, port: int, box: Outbox, **kw: Any) -> Uplink:
    settings = BrokerSettings(host=host, port=port, client_id=f"gw-{uuid.uuid4().hex[:12]}", keepalive=5)
    return Uplink(
        settings,
        box,
        last_will=status(prefix, "offline"),
        birth=lambda: [status(prefix, "online")],
        goodbye=lambda: status(prefix, "offline"),
        backoff_initial=0.05,
        backoff_max=0.3,
        **kw,
    )


def test_outbox_drains_in_seq_order_and_is_deleted_after_puback(
    mosquitto: tuple[str, int], tmp_path: Path
) -> None:
    async def scenario() -> None:
        prefix = f"test/{uuid.uuid4().hex}"
        collector = Collector(*mosquitto, f"{prefix}/#")
        box = Outbox(tmp_path / "o.db")
        for n in range(30):
            box.enqueue(*reading(prefix, n))
        uplink = make_uplink(prefix, *mosquitto, box, inflight_window=4)
        try:
            async with running(uplink):
                assert await eventually(lambda: len(collector.payloads("/telemetry")) >= 30)
                assert await eventually(lambda: box.depth() == 0), "acked messages must leave the outbox"
                box.enqueue(*reading(prefix, 30))
                uplink.notify()
                assert await eventually(lambda: len(collector.payloads("/telemetry")) >= 31)
            got = first_arrivals(collector.payloads("/telemetry"))
            assert [p["n"] for p in got] == list(range(31))
            assert [p["seq"] for p in got] == sorted(p["seq"] for p in got)
            # Stored before the session started -> replayed; enqueued while connected -> live.
            assert got[0]["replayed"] is True and "publishedAt" in got[0]
            assert "replayed" not in got[-1]
            assert await eventually(lambda: collector.payloads("/gateway/status")[-1]["state"] == "offline")
            assert collector.payloads("/gateway/status")[0]["state"] == "online"
        finally:
            collector.close()

    asyncio.run(scenario())


def test_last_will_is_published_when_connection_dies(mosquitto: tuple[str, int], tmp_path: Path) -> None:
    async def scenario() -> None:
        prefix = f"test/{uuid.uuid4().hex}"
        collector = Collector(*mosquitto, f"{prefix}/gateway/status")
        uplink = make_uplink(prefix, *mosquitto, Outbox(tmp_path / "o.db"))
        try:
            async with running(uplink):
                assert await eventually(lambda: len(collector.payloads()) >= 1)
                client = uplink._client
                assert client is not None
                sock = client.socket()
                assert sock is not None
                sock.close()  # abrupt: no DISCONNECT packet, so the broker publishes the will
                assert await eventually(lambda: any(p["state"] == "offline" for p in collector.payloads()))
                # ...and the uplink reconnects and says online again.
                assert await eventually(lambda: collector.payloads()[-1]["state"] == "online")
        finally:
            collector.close()

    asyncio.run(scenario())


def test_broker_outage_every_reading_arrives_once_per_msg_id_in_seq_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = PrivateBroker()
        broker.start()
        prefix = f"test/{uuid.uuid4().hex}"
        collector = Collector("127.0.0.1", broker.port, f"{prefix}/meter/#")
        box = Outbox(tmp_path / "o.db")
        uplink = make_uplink(prefix, "127.0.0.1", broker.port, box)
        try:
            async with running(uplink):
                for n in range(10):
                    box.enqueue(*reading(prefix, n))
                    uplink.notify()
                assert await eventually(lambda: len(collector.payloads()) >= 10)
                broker.stop()
                assert await eventually(lambda: not uplink.connected.is_set())
                for n in range(10, 40):
                    box.enqueue(*reading(prefix, n))
                    uplink.notify()
                await asyncio.sleep(0.3)  # the uplink keeps retrying against a dead port
                assert box.depth() >= 30
                broker.start()
                assert await eventually(lambda: len(first_arrivals(collector.payloads())) >= 40, 15.0)
                assert await eventually(lambda: box.depth() == 0)
            got = first_arrivals(collector.payloads())
            assert [p["n"] for p in got] == list(range(40))
            assert [p["seq"] for p in got] == sorted(p["seq"] for p in got)
            assert all(p.get("replayed") is True for p in got[10:]), (
                "messages held over the outage are replays"
            )
            assert uplink.stats.connects >= 2
        finally:
            collector.close()
            broker.cleanup()

    asyncio.run(scenario())
