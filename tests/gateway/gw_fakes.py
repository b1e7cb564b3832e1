"""Test doubles: an in-memory meter behind the MeterDriver interface, and config helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from villageami.gateway.config import GatewayConfig, MeterConfig, parse_config
from villageami.meters.driver import (
    ActionResult,
    KeyRead,
    MeterAction,
    MeterDriver,
    MeterError,
    MeterUnreachable,
)
from villageami.meters.profile import Profile


class FakeMeter(MeterDriver):
    """A meter whose registers are attributes. ``dead`` raises MeterUnreachable; ``hang`` never answers."""

    def __init__(self, serial: str, *, energy: float = 100.0, credit: float | None = 50.0) -> None:
        self.serial = serial
        self.energy_kwh = energy
        self.power_w = 250.0
        self.voltage_v = 230.0
        self.frequency_hz = 50.0
        self.clock_offset_s = 0.0
        self.tamper_bits = 0
        self.credit_kwh = credit
        self.relay = "connected"
        self.power_event: str | None = None
        self.dead = False
        self.hang = False
        self.relay_stuck = False  # act() answers ok but the relay does not move
        self.reads: list[list[str]] = []
        self.actions: list[MeterAction] = []
        self.connects = 0
        self.closes = 0

    def _check(self) -> None:
        if self.dead:
            raise MeterUnreachable(f"meter {self.serial} did not answer")

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.sleep(3600)

    async def connect(self) -> None:
        await self._maybe_hang()
        self._check()
        self.connects += 1

    def _value(self, key: str) -> tuple[Any, str | None] | None:
        now = datetime.now(UTC)
        values: dict[str, tuple[Any, str | None]] = {
            "1.8.0": (self.energy_kwh, "kWh"),
            "1.7.0": (self.power_w, "W"),
            "32.7.0": (self.voltage_v, "V"),
            "14.7.0": (self.frequency_hz, "Hz"),
            "0.0.0": ((now + timedelta(seconds=self.clock_offset_s)).isoformat(), None),
            "0.0.96.1.1.255": (self.serial, None),
            "96.5.0": (self.tamper_bits, None),
            "0.0.96.3.10.255": (self.relay, None),
            "96.1.0": (3, None),
        }
        if self.credit_kwh is not None:
            values["96.8.0"] = (self.credit_kwh, "kWh")
        if self.power_event is not None:
            values["96.11.5"] = (self.power_event, None)
        return values.get(key)

    async def read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        await self._maybe_hang()
        self._check()
        self.reads.append(list(keys))
        now = datetime.now(UTC)
        out: dict[str, KeyRead] = {}
        for key in keys:
            found = self._value(key)
            if found is None:
                out[key] = KeyRead(key, None, None, now, error="not supported")
            else:
                out[key] = KeyRead(key, found[0], found[1], now, raw=found[0])
        return out

    async def act(self, action: MeterAction, params: Mapping[str, Any] | None = None) -> ActionResult:
        await self._maybe_hang()
        self._check()
        self.actions.append(action)
        if action is MeterAction.SYNC_CLOCK:
            self.clock_offset_s = 0.0
        elif action is MeterAction.DISCONNECT and not self.relay_stuck:
            self.relay = "disconnected"
        elif action is MeterAction.RECONNECT and not self.relay_stuck:
            self.relay = "connected"
        elif action not in (MeterAction.DISCONNECT, MeterAction.RECONNECT):
            raise MeterError(f"unsupported action {action}")
        return ActionResult(action, ok=True)

    async def close(self) -> None:
        self.closes += 1


def config_data(tmp_path: Path, meters: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "feederId": "feeder-t",
        # Unique per test: the MQTT client id derives from it, and the broker is shared.
        "gatewayId": f"gw-{uuid.uuid4().hex[:12]}",
        "broker": {"url": "mqtt://127.0.0.1:1883", "backoffInitialS": 0.05, "backoffMaxS": 0.3},
        "buses": [{"name": "bus-a", "port": "/dev/null"}, {"name": "bus-b", "port": "/dev/null"}],
        "meters": meters,
        "schedules": {"instantaneousS": 0.2, "statusS": 0.2, "clockS": 0.2, "readTimeoutS": 0.3},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "commands": {"path": str(tmp_path / "commands.db")},
        "metrics": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = data[key] | value
        else:
            data[key] = value
    return data


def meter_entry(serial: str, bus: str | None = "bus-a", **extra: Any) -> dict[str, Any]:
    url = f"fake://{serial}"
    entry: dict[str, Any] = {"serial": serial, "url": url, "profile": "fake"}
    if bus is not None:
        entry["bus"] = bus
    return entry | extra


def make_config(tmp_path: Path, meters: list[dict[str, Any]], **overrides: Any) -> GatewayConfig:
    return parse_config(config_data(tmp_path, meters, **overrides), "test", tmp_path, check_urls=False)


class FakeFleet:
    """Driver factory for Gateway: one FakeMeter per configured serial."""

    def __init__(self) -> None:
        self.meters: dict[str, FakeMeter] = {}

    def __call__(self, meter: MeterConfig, profile: Profile | None) -> MeterDriver:
        return self.meters.setdefault(meter.serial, FakeMeter(meter.serial))


def no_profile(name: str) -> Profile | None:
    return None
