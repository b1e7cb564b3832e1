"""`villageami read`: one meter -> one telemetry envelope, valid under `villageami validate`."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.contract.validation import validate_message
from villageami.meters.profile import load_profile
from villageami.sim.modbus_server import ModbusSimulator


@pytest.fixture
def simulator() -> Iterator[ModbusSimulator]:
    """A Modbus simulator on its own event loop in a thread (the CLI runs its own asyncio.run)."""
    loop = asyncio.new_event_loop()
    sim = ModbusSimulator(load_profile("eastron-sdm630"), units=[1, 5])
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


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_read_prints_a_valid_telemetry_envelope(simulator: ModbusSimulator, tmp_path: Path) -> None:
    code, out, err = invoke(
        "read",
        f"modbus+tcp://127.0.0.1:{simulator.port}?unit=5",
        "--profile",
        "eastron-sdm630",
        "--feeder",
        "feeder-north-01",
        "--gateway",
        "pole-ems-0042",
        "--serial",
        "SDM630-0005",
    )
    assert code == 0, err
    envelope = json.loads(out)
    assert envelope["seq"] == 0 and envelope["meterSerial"] == "SDM630-0005"
    assert (envelope["feederId"], envelope["gatewayId"]) == ("feeder-north-01", "pole-ems-0042")
    by_key = {r["obis"]: r for r in envelope["registers"]}
    assert set(by_key) == {"32.7.0", "52.7.0", "72.7.0", "1.7.0", "14.7.0", "1.8.0", "2.8.0"}
    assert by_key["1.7.0"] == by_key["1.7.0"] | {
        "value": 850.0,
        "unit": "W",
        "quality": "good",
    }  # unit 5 load
    assert by_key["1.8.0"]["unit"] == "kWh" and by_key["1.8.0"]["value"] >= 1234.5
    assert [str(p) for p in validate_message(envelope, "telemetry") if p.severity == "error"] == []
    file = tmp_path / "envelope.json"
    file.write_text(out, encoding="utf-8")
    code, out, err = invoke("validate", str(file))
    assert code == 0, out + err


def test_read_selected_keys_compact(simulator: ModbusSimulator) -> None:
    code, out, _ = invoke(
        "read",
        f"modbus+tcp://127.0.0.1:{simulator.port}",
        "--profile",
        "eastron-sdm630",
        "--keys",
        "1.8.0,32.7.0",
        "--keys",
        "1-0:14.7.0.255",
        "--serial",
        "m1",
        "--compact",
    )
    assert code == 0
    assert out.count("\n") == 1
    assert [r["obis"] for r in json.loads(out)["registers"]] == ["1.8.0", "32.7.0", "14.7.0"]  # as asked
    assert (
        json.loads(out)["msgId"]
        != json.loads(
            invoke(
                "read",
                f"modbus+tcp://127.0.0.1:{simulator.port}",
                "--profile",
                "eastron-sdm630",
                "--keys",
                "1.8.0",
                "--serial",
                "m1",
            )[1]
        )["msgId"]
    )


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["modbus+tcp://127.0.0.1?unit=1", "--profile", "eastron-sdm630"], 2, "needs a port"),
        (["modbus+tcp://127.0.0.1:1", "--profile", "no-such"], 2, "no such profile"),
        (["dlms+tcp://127.0.0.1:1", "--profile", "eastron-sdm630"], 2, "no dlms registers"),
        (["modbus+tcp://127.0.0.1:1", "--profile", "eastron-sdm630", "--keys", "96.5.0"], 2, "not mapped"),
        (["modbus+tcp://127.0.0.1:1", "--profile", "eastron-sdm630", "--keys", "9.9.9"], 2, "does not map"),
        (["modbus+tcp://127.0.0.1:1", "--profile", "eastron-sdm630", "--serial", "a b"], 2, "--serial"),
        (
            ["modbus+tcp://127.0.0.1:1?timeout=0.5", "--profile", "eastron-sdm630", "--serial", "x"],
            1,
            "meter unreachable: modbus tcp 127.0.0.1:1: cannot connect",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(args: list[str], exit_code: int, message: str) -> None:
    code, out, err = invoke("read", *args)
    assert code == exit_code
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_dead_unit_on_a_live_server(simulator: ModbusSimulator) -> None:
    code, _, err = invoke(
        "read",
        f"modbus+tcp://127.0.0.1:{simulator.port}?unit=9&timeout=0.3",
        "--profile",
        "eastron-sdm630",
        "--serial",
        "x",
    )
    assert code == 1 and "no answer within 0.3 s" in err


def test_serial_is_required_when_the_profile_reads_none(simulator: ModbusSimulator) -> None:
    code, _, err = invoke("read", f"modbus+tcp://127.0.0.1:{simulator.port}", "--profile", "eastron-sdm630")
    assert code == 2 and "no usable meter serial (the profile reads no serial); pass --serial" in err


def test_read_against_the_dlms_simulator_takes_the_serial_from_the_meter() -> None:
    from villageami.sim.dlms_server import DlmsSimulator

    loop = asyncio.new_event_loop()
    sim = DlmsSimulator()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(10)
    try:
        code, out, err = invoke("read", sim.url, "--profile", "dlms-generic-prepaid-1ph")
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert code == 0, err
    envelope = json.loads(out)
    assert envelope["meterSerial"] == "SIM00000001"
    by_key = {r["obis"]: r for r in envelope["registers"]}
    assert by_key["0.0.96.3.10.255"]["value"] == "connected"
    assert by_key["96.5.0"]["quality"] == "suspect" and "flags" not in by_key["96.5.0"]
    assert by_key["1.8.0"]["logicalName"] == "1-0:1.8.0.255"
    assert [str(p) for p in validate_message(envelope, "telemetry") if p.severity == "error"] == []
