"""`villageami read` against a DLMS meter served by another implementation (gurux-dlms, test-only, GPL-2.0).

Issue 4 asks that the read command works against a meter that villageami did not write. The gurux meter
(gurux_server.py) serves 1-0:1.8.0.255 = 1234567 Wh (scaler 0, unit Wh), serial "GX0001", a live clock and
a connected disconnect control.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from gurux_dlms.enums import InterfaceType
from gurux_server import ENERGY_WH, gurux_meter_server
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.contract.validation import is_valid, validate_message

KEYS = "1.8.0,0.0.0,0.0.96.1.1.255,0.0.96.3.10.255"
SCHEMES = {InterfaceType.WRAPPER: "dlms+tcp", InterfaceType.HDLC: "dlms+hdlc+tcp"}


@pytest.mark.parametrize("interface", list(SCHEMES), ids=["wrapper", "hdlc"])
def test_read_command_reads_a_gurux_meter(interface: InterfaceType) -> None:
    with gurux_meter_server(interface) as (port, _meters):
        url = f"{SCHEMES[interface]}://127.0.0.1:{port}?client=16&server=1"
        result = CliRunner().invoke(
            build_app(),
            ["read", url, "--profile", "dlms-generic-prepaid-1ph", "--keys", KEYS, "--timeout", "3"],
        )
    assert result.exit_code == 0, result.output
    envelope = orjson.loads(result.stdout)
    problems = validate_message(envelope, kind="telemetry")
    assert is_valid(problems), problems
    assert envelope["meterSerial"] == "GX0001"  # taken from the meter, not from --serial
    registers = {r["obis"]: r for r in envelope["registers"]}
    assert set(registers) == set(KEYS.split(","))
    assert registers["1.8.0"]["unit"] == "kWh"
    assert registers["1.8.0"]["value"] == pytest.approx(ENERGY_WH / 1000)
    assert registers["0.0.96.3.10.255"]["value"] == "connected"
    meter_clock = datetime.fromisoformat(registers["0.0.0"]["value"])
    assert abs((meter_clock - datetime.now(UTC)).total_seconds()) < 120
    assert all(r["quality"] == "good" for r in envelope["registers"])
