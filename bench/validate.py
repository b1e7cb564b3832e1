"""Envelopes per second for a 10-register telemetry envelope: villageami's validator vs jsonschema.

Prints three figures from the same run and their ratios to plain ``jsonschema.Draft202012Validator``:
the compiled schema alone, and the full ``validate_message`` (schema + semantic checks).
Run: ``python bench/validate.py``.
"""

from __future__ import annotations

import os
import platform

import jsonschema

from _common import rate
from villageami.contract import envelope as env
from villageami.contract.validation import load_schema, schema_validator, validate_message


def ten_register_telemetry() -> dict[str, object]:
    ts = "2026-06-22T14:30:00.000Z"
    registers = [
        env.register_entry("1.8.0", 1842.512, "kWh", read_at=ts),
        env.register_entry("2.8.0", 3.25, "kWh"),
        env.register_entry("1.7.0", 412.0, "W"),
        env.register_entry("32.7.0", 229.8, "V"),
        env.register_entry("52.7.0", 231.1, "V"),
        env.register_entry("72.7.0", 228.4, "V"),
        env.register_entry("14.7.0", 50.01, "Hz"),
        env.register_entry("0.0.0", "2026-06-22T15:30:02+01:00", "datetime"),
        env.register_entry("96.5.0", 5, "bitfield", flags=["cover_open"], unmapped_bits=1),
        env.register_entry("0.0.96.3.10.255", "connected", "enum"),
    ]
    return env.telemetry(
        feeder_id="feeder-north-paravur-01",
        gateway_id="pole-ems-0042",
        meter_serial="DS1000-88421",
        registers=registers,
        ts=ts,
        msg_id="6f1d8a2c-3b4e-4c5d-9e8f-0a1b2c3d4e5f",
        seq=1042,
    )


def main() -> None:
    message = ten_register_telemetry()
    reference = jsonschema.Draft202012Validator(load_schema("telemetry"))
    compiled = schema_validator("telemetry")
    assert reference.is_valid(message) and compiled.is_valid(message)
    assert not [p for p in validate_message(message) if p.severity == "error"]

    ref_rate = rate(lambda: reference.is_valid(message))
    fast_rate = rate(lambda: compiled.is_valid(message))
    full_rate = rate(lambda: validate_message(message, "telemetry"))
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print("10-register telemetry envelope, envelopes per second:")
    print(f"  jsonschema Draft202012Validator.is_valid : {ref_rate:10,.0f}")
    print(f"  villageami compiled schema               : {fast_rate:10,.0f}  ({fast_rate / ref_rate:5.1f}x)")
    print(f"  villageami validate_message (+semantic)  : {full_rate:10,.0f}  ({full_rate / ref_rate:5.1f}x)")


if __name__ == "__main__":
    main()
