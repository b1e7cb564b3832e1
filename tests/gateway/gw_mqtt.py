"""Test helpers: a collecting MQTT subscriber and a private, restartable Mosquitto."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class PrivateBroker:
    """A Mosquitto on an ephemeral port, with persistence so sessions survive a stop/start."""

    def __init__(self) -> None:
        self.port = free_port()
        # Mosquitto started as root drops to its own user, which must reach and write the persistence
        # directory; pytest's tmp_path lives under a 0700 directory, so use a world-writable one in /tmp.
        workdir = Path(tempfile.mkdtemp(prefix="villageami-mosquitto-"))
        workdir.chmod(0o777)
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        assert wait_until(listening, 5.0), "private mosquitto did not start"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(5)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Collector:
    """Subscribes (QoS 1, persistent session) and records (topic, payload dict, retain) in arrival order.

    ``setup`` configures the paho client before it connects (TLS, credentials).
    """

    def __init__(
        self, host: str, port: int, topic: str, *, setup: Callable[[mqtt.Client], None] | None = None
    ) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:12]}",
            clean_session=False,
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        if setup is not None:
            setup(self.client)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(5), "collector could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, orjson.loads(message.payload), bool(message.retain)))

    def snapshot(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return list(self.messages)

    def payloads(self, suffix: str = "") -> list[dict[str, Any]]:
        return [p for t, p, _ in self.snapshot() if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def first_arrivals(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Payloads with a msgId, deduplicated on msgId (QoS 1 is at-least-once), in first-arrival order."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for p in payloads:
        msg_id = p.get("msgId")
        if isinstance(msg_id, str) and msg_id not in seen:
            seen.add(msg_id)
            out.append(p)
    return out
