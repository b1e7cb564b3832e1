"""Normalisation: meter units and codes -> VMRS entries that validate under the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from villageami.contract.envelope import new_msg_id, telemetry
from villageami.contract.validation import validate_message
from villageami.meters.driver import KeyRead
from villageami.meters.normalise import comms_lost, convert_unit, normalise, normalise_all
from villageami.meters.profile import Profile, load_profile, parse_profile

PROFILES = Path(__file__).resolve().parents[2] / "src" / "villageami" / "meters" / "profiles"
AT = datetime(2026, 6, 22, 14, 30, tzinfo=UTC)
GENERIC = load_profile("dlms-generic-prepaid-1ph")


def read(key: str, value: object, unit: str | None = None, **kw: object) -> KeyRead:
    return KeyRead(key, value, unit, AT, **kw)  # type: ignore[arg-type]


def with_tables(bits: dict[int, str] | None = None, credit_unit: str | None = "KES") -> Profile:
    doc = yaml.safe_load((PROFILES / "dlms-generic-prepaid-1ph.yaml").read_text(encoding="utf-8"))
    prov = {"source": "test fixture", "evidence": "doc", "confidence": "T1", "status": "expected"}
    if bits is not None:
        doc["tamper"] = {"bits": bits, "provenance": prov}
    doc["credit_unit"] = credit_unit
    return parse_profile(doc, "test")


@pytest.mark.parametrize(
    ("key", "value", "unit", "expected", "vmrs_unit"),
    [
        ("1.8.0", 1842512, "Wh", 1842.512, "kWh"),
        ("1.8.0", 1842.51249, "kWh", 1842.512, "kWh"),  # at most 3 decimals
        ("1.8.0", 1.8425, "MWh", 1842.5, "kWh"),
        ("2.8.0", 0, "Wh", 0.0, "kWh"),
        ("1.7.0", 1.25, "kW", 1250.0, "W"),
        ("1.7.0", 230, "W", 230, "W"),
        ("1.7.0", -0.0001, "W", 0.0, "W"),  # no "-0.0" on the wire
        ("32.7.0", 230.10000610351562, "V", 230.1, "V"),  # float32 noise trimmed
        ("14.7.0", 50.0, "Hz", 50.0, "Hz"),
        ("1.8.0", 5, "wh", 0.005, "kWh"),  # lower-case spelling from a readout
    ],
)
def test_numbers_convert_to_the_vmrs_unit(
    key: str, value: float, unit: str, expected: float, vmrs_unit: str
) -> None:
    entry = normalise(read(key, value, unit))
    assert entry.value == expected and entry.unit == vmrs_unit and entry.quality == "good"
    assert str(entry.value) == str(expected)


def test_wrong_unit_is_omitted_and_missing_unit_is_suspect() -> None:
    with pytest.raises(ValueError, match=r"1\.8\.0: cannot convert V to kWh"):
        normalise(read("1.8.0", 230.0, "V"))
    entry = normalise(read("1.8.0", 12.5, None))
    assert entry.quality == "suspect" and entry.reason == "meter gave no unit; assumed kWh"
    assert convert_unit(2, "kV", "V") == 2000


def test_disconnect_codes_map_through_the_profile() -> None:
    assert normalise(read("0.0.96.3.10.255", 0), GENERIC).value == "disconnected"
    assert normalise(read("0.0.96.3.10.255", 1), GENERIC).value == "connected"
    assert normalise(read("0.0.96.3.10.255", 2), GENERIC).value == "ready_for_reconnection"
    assert normalise(read("0.0.96.3.10.255", True), GENERIC).value == "connected"  # output_state
    assert normalise(read("0.0.96.3.10.255", 2), GENERIC).unit == "enum"
    with pytest.raises(ValueError, match=r"code 9 is not in the profile's table \(0=disconnected"):
        normalise(read("0.0.96.3.10.255", 9), GENERIC)
    with pytest.raises(ValueError, match="no disconnect table"):
        normalise(read("0.0.96.3.10.255", 1), None)


def test_tamper_with_a_bit_table() -> None:
    profile = with_tables({0: "cover_open", 2: "magnetic", 5: "reverse_energy"})
    entry = normalise(read("96.5.0", 0b100101), profile)
    assert entry.value == 37 and entry.raw == "0x0025"
    assert entry.flags == ("cover_open", "magnetic", "reverse_energy")
    assert entry.unmapped_bits == 0 and entry.quality == "good"
    odd = normalise(read("96.5.0", 0b1000_0000_0001), profile)
    assert odd.flags == ("cover_open",) and odd.unmapped_bits == 0x800 and odd.quality == "suspect"
    clear = normalise(read("96.5.0", 0), profile)
    assert clear.flags == () and clear.unmapped_bits == 0 and clear.quality == "good"


def test_tamper_without_a_bit_table_is_suspect_with_no_flags() -> None:
    entry = normalise(read("96.5.0", 4), GENERIC)
    assert entry.flags is None and entry.unmapped_bits is None
    assert entry.quality == "suspect" and entry.raw == "0x0004"
    assert "flags" not in entry.to_entry()
    with pytest.raises(ValueError, match="non-negative integer bitfield"):
        normalise(read("96.5.0", -1), GENERIC)


def test_clock_keeps_the_meter_offset() -> None:
    east = timezone(timedelta(hours=1))
    aware = normalise(read("0.0.0", datetime(2026, 6, 22, 15, 30, 0, tzinfo=east).isoformat()))
    assert aware.value == "2026-06-22T15:30:00+01:00" and aware.quality == "good" and aware.unit == "datetime"
    naive = normalise(read("0.0.0", "2026-06-22T15:30:00"))
    assert naive.value == "2026-06-22T15:30:00Z" and naive.quality == "suspect"
    with pytest.raises(ValueError, match="not ISO 8601"):
        normalise(read("0.0.0", "yesterday"))


def test_credit_in_currency_or_energy() -> None:
    money = normalise(read("96.8.0", 1250.456789, "KES"), with_tables())
    assert (money.value, money.unit) == (1250.457, "KES")
    energy = normalise(read("96.8.0", 12400, "Wh"), with_tables(credit_unit="kWh"))
    assert (energy.value, energy.unit) == (12.4, "kWh")
    by_profile = normalise(read("96.8.0", 300, None), with_tables(credit_unit="XAF"))
    assert (by_profile.value, by_profile.unit) == (300.0, "XAF")


def test_text_registers() -> None:
    assert normalise(read("0.0.96.1.1.255", "  DS1000-88421 ")).value == "DS1000-88421"
    assert normalise(read("0.0.96.1.1.255", 88421.0)).value == "88421"
    assert normalise(read("96.1.0", 12.0)).value == 12


def test_errors_are_omitted_and_unreachable_is_comms_lost() -> None:
    result = normalise_all(
        [read("1.8.0", 10, "kWh"), read("1.7.0", None, error="meter refused: read-write-denied")], GENERIC
    )
    assert [r.key for r in result.readings] == ["1.8.0"]
    assert result.omitted == {"1.7.0": "meter refused: read-write-denied"}
    lost = comms_lost(result.readings[0])
    assert lost.quality == "comms_lost" and lost.value == 10.0 and lost.read_at == AT
    assert lost.to_entry()["readAt"] == "2026-06-22T14:30:00.000Z"


def test_logical_name_is_kept_from_a_dlms_source() -> None:
    entry = normalise(read("1.8.0", 5.0, "kWh", source="1-0:1.8.0.255/3/2"))
    assert entry.to_entry()["logicalName"] == "1-0:1.8.0.255"
    assert "logicalName" not in normalise(read("1.8.0", 5.0, "kWh", source="modbus:1:4:0x0048")).to_entry()


def test_a_full_envelope_validates() -> None:
    profile = with_tables({0: "cover_open"})
    reads = [
        read("1.8.0", 1842512, "Wh", source="1-0:1.8.0.255/3/2"),
        read("1.7.0", 0.43, "kW"),
        read("32.7.0", 229.9, "V"),
        read("14.7.0", 49.98, "Hz"),
        read("0.0.0", "2026-06-22T15:30:00+01:00"),
        read("0.0.96.1.1.255", "DS1000-88421"),
        read("96.5.0", 3),
        read("96.8.0", 1250.5, "KES"),
        read("0.0.96.3.10.255", 1),
    ]
    result = normalise_all(reads, profile)
    assert result.omitted == {}
    message = telemetry(
        feeder_id="feeder-1",
        gateway_id="gw-1",
        meter_serial="DS1000-88421",
        registers=result.entries(),
        ts=AT,
        msg_id=new_msg_id(),
        seq=0,
    )
    problems = validate_message(message, "telemetry")
    assert [str(p) for p in problems if p.severity == "error"] == []
