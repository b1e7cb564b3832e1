"""`villageami read` against a simulator for every shipped profile: each envelope validates with no error."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.contract.validation import validate_message
from villageami.meters.profile import Protocol, load_profile, shipped_profile_names


@contextmanager
def running(sim: Any) -> Iterator[Any]:
    """Run a simulator on its own loop in a thread: the CLI runs its own asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(10)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def simulator_for(name: str) -> Iterator[str]:
    profile = load_profile(name)
    protocol = profile.protocols[0]
    if protocol is Protocol.MODBUS:
        from villageami.sim.modbus_server import ModbusSimulator

        with running(ModbusSimulator(profile, units=[1])) as sim:
            yield f"modbus+tcp://127.0.0.1:{sim.port}?unit={profile.defaults.modbus.unit}"
    elif protocol is Protocol.DLMS:
        from villageami.sim.dlms_server import DlmsSimulator

        with running(DlmsSimulator()) as sim:
            yield sim.url
    else:
        from villageami.sim.iec21_server import Iec21Simulator

        with running(Iec21Simulator()) as sim:
            yield f"iec21+tcp://127.0.0.1:{sim.port}"


@pytest.mark.parametrize("name", shipped_profile_names())
def test_every_shipped_profile_reads_to_a_valid_envelope(name: str) -> None:
    with simulator_for(name) as url:
        result = CliRunner().invoke(build_app(), ["read", url, "--profile", name, "--serial", "REVIEW-1"])
    assert result.exit_code == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["registers"], "no register was published"
    errors = [str(p) for p in validate_message(envelope, "telemetry") if p.severity == "error"]
    assert errors == []
    for entry in envelope["registers"]:
        if entry["obis"] in ("1.8.0", "2.8.0"):
            assert entry["unit"] == "kWh" and entry["value"] >= 0
