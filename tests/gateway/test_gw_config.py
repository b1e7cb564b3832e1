"""Gateway config: defaults, every error with its path, the CLI check, the JSON Schema kept in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from gw_fakes import config_data, meter_entry
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.gateway.config import SCHEMA_PATH, ConfigError, ReadClass, json_schema, keys_for, parse_config


def issues_of(data: dict[str, object], tmp_path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "test", tmp_path)
    return {i.path: i.message for i in caught.value.issues}


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    cfg = parse_config(
        {"feederId": "f1", "gatewayId": "g1", "broker": {"url": "mqtts://broker.example:8883"}}, "t", tmp_path
    )
    assert cfg.schedules.instantaneous_s == 900 and cfg.schedules.status_s == 900
    assert cfg.schedules.clock_s == 86400
    assert cfg.plausibility.clock_drift_s == 120
    assert cfg.broker.port == 8883 and cfg.broker.uses_tls
    assert cfg.client_id == "villageami-g1"
    assert cfg.rules.auto_disconnect_on_credit_exhausted is False


def test_instantaneous_schedule_carries_energy_register() -> None:
    keys = keys_for(ReadClass.INSTANTANEOUS)
    assert "1.8.0" in keys and "1.7.0" in keys and "32.7.0" in keys
    assert "0.0.96.3.10.255" in keys_for(ReadClass.STATUS) and "96.8.0" in keys_for(ReadClass.STATUS)
    assert keys_for(ReadClass.CLOCK) == ("0.0.0",)


def test_every_error_is_reported_with_its_path(tmp_path: Path) -> None:
    meters = [
        meter_entry("M1", role="feeder"),
        meter_entry("M2", bus="bus-z", parent="NOPE"),
        meter_entry("M1"),
        meter_entry("M4", parent="M2"),
    ]
    data = config_data(tmp_path, meters)
    issues = issues_of(data, tmp_path)
    assert "unknown bus 'bus-z'" in issues["meters[1].bus"]
    assert "'NOPE' is not a configured meter" in issues["meters[1].parent"]
    assert "already used by meters[0]" in issues["meters[2].serial"]
    assert "customer meter" in issues["meters[3].parent"]


def test_schema_errors_carry_paths(tmp_path: Path) -> None:
    data = config_data(tmp_path, [meter_entry("bad serial!")])
    data["broker"] = {"url": "http://x"}
    data["plausibility"] = {"voltageMinV": 300, "voltageMaxV": 200}
    data["surprise"] = 1
    issues = issues_of(data, tmp_path)
    assert "meters[0].serial" in issues
    assert "mqtt://" in issues["broker.url"]
    assert "voltageMinV" in issues["plausibility"]
    assert "surprise" in issues


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    data = config_data(tmp_path, [])
    data["broker"] = {"url": "mqtts://h:8883", "tls": {"caFile": "ca.pem"}}
    issues = issues_of(data, tmp_path)
    assert "ca.pem" in issues["broker.tls.caFile"]


def test_cli_check_explains_errors_and_accepts_good_files(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good.yaml"
    real = {"url": "modbus+rtu:///dev/ttyUSB0?unit=3", "profile": "eastron-sdm630"}
    data = config_data(tmp_path, [meter_entry("M1", **real)])
    data["buses"] = [{"name": "bus-a", "port": "/dev/ttyUSB0"}]
    good.write_text(yaml.safe_dump(data))
    result = runner.invoke(build_app(), ["gateway", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 meter(s)" in result.output
    bad = tmp_path / "bad.yaml"
    wrong_port = {"url": "modbus+rtu:///dev/ttyUSB1?unit=3", "profile": "eastron-sdm630"}
    meters = [
        meter_entry("M1", bus="nope"),
        meter_entry("M2", **wrong_port),
        meter_entry("M3", url="modbus+tcp://h:502", profile="no-such-model"),
        meter_entry("M4", url="zigbee://x", profile="eastron-sdm630"),
    ]
    data = config_data(tmp_path, meters)
    data["buses"] = [{"name": "bus-a", "port": "/dev/ttyUSB0"}]
    bad.write_text(yaml.safe_dump(data))
    result = runner.invoke(build_app(), ["gateway", "check", str(bad)])
    assert result.exit_code == 1
    assert "meters[0].bus: unknown bus 'nope'" in result.output
    assert "meters[1].url: URL uses /dev/ttyUSB1 but bus 'bus-a' is on /dev/ttyUSB0" in result.output
    assert "meters[2].profile:" in result.output and "no-such-model" in result.output
    assert "meters[3].url:" in result.output


def test_checked_in_json_schema_matches_the_model() -> None:
    on_disk = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(json_schema())), "run: python -m villageami.gateway.config"


def test_check_reports_schema_and_cross_reference_errors_in_one_run(tmp_path: Path) -> None:
    sdm = {"profile": "eastron-sdm630"}
    meters = [
        meter_entry("M1", bus="nope", url="modbus+rtu:///dev/ttyUSB0?unit=1", **sdm),
        meter_entry("M2", bus=None, url="modbus+tcp://h:502?unit=1", parent="GHOST", role="feeder", **sdm),
        meter_entry("M3", bus=None, url="modbus+tcp://h:502?unit=999", **sdm),
        meter_entry("M4", bus=None, url="modbus+tcp://h:502?unit=4", profile="no-such-model"),
        meter_entry("bad serial!", bus=None, url="modbus+tcp://h:502?unit=5", **sdm),
        meter_entry("M6", bus=None, url="modbus+tcp://h:502?unit=6", parent="bad serial!", **sdm),
    ]
    data = config_data(tmp_path, meters)
    data["buses"] = [{"name": "bus-a", "port": "/dev/ttyUSB0"}]
    data["schedules"] = {"instantaneousS": -1}
    data["broker"] = {"url": "mqtts://h:8883", "tls": {"caFile": "missing-ca.pem"}}
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(build_app(), ["gateway", "check", str(config_file)])
    assert result.exit_code == 1
    lines = {line.strip().split(": ", 1)[0]: line.strip() for line in result.output.splitlines()[1:]}
    assert set(lines) == {
        "schedules.instantaneousS",  # schema
        "meters[4].serial",  # schema
        "meters[0].bus",  # unknown bus
        "meters[1].parent",  # dangling parent
        "meters[2].url",  # URL out of range
        "meters[3].profile",  # unknown profile
        "broker.tls.caFile",  # missing TLS file
    }, result.output
    assert "unknown bus 'nope'" in lines["meters[0].bus"]
    assert "'GHOST' is not a configured meter" in lines["meters[1].parent"]
    assert "no-such-model" in lines["meters[3].profile"]
    assert "missing-ca.pem" in lines["broker.tls.caFile"]
    assert "has 7 problem(s)" in result.output
