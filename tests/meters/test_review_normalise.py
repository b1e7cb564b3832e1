"""Adversarial review of meter read -> VMRS normalisation: numbers a head-end would bill on.

Each test names the defect it pins; a wrong number must be omitted (or flagged), never published as good.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from villageami.contract.envelope import Quality, telemetry
from villageami.contract.validation import validate_message
from villageami.meters.driver import KeyRead
from villageami.meters.normalise import convert_unit, normalise, normalise_all
from villageami.meters.profile import Profile, load_profile, parse_profile

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PROV = {"source": "review test", "evidence": "doc", "confidence": "T1", "status": "expected"}


def read(key: str, value: Any, unit: str | None, source: str | None = None) -> KeyRead:
    return KeyRead(key, value, unit, AT, source=source)


def profile(registers: dict[str, Any], **extra: Any) -> Profile:
    protocols = sorted({proto for entry in registers.values() for proto in entry if proto != "provenance"})
    document = {
        "format": "villageami-profile/1",
        "name": "review",
        "identity": {"vendor": "v", "model": "m", "provenance": PROV},
        "protocols": protocols,
        "registers": {k: {**v, "provenance": PROV} for k, v in registers.items()},
        **extra,
    }
    return parse_profile(document, "review")


# --- unit spellings ---


def test_milliwatt_hours_are_never_read_as_megawatt_hours() -> None:
    # Defect: "mWh".lower() == "mwh" was looked up as MWh, a factor of 10**9 too large.
    try:
        converted = convert_unit(1000.0, "mWh", "kWh")
    except ValueError:
        return  # omitting the key is acceptable
    assert converted == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("unit", "value", "kwh"), [("MWh", 1.5, 1500.0), ("kwh", 2.0, 2.0), ("WH", 1500, 1.5)]
)
def test_unambiguous_spellings_still_convert(unit: str, value: float, kwh: float) -> None:
    assert convert_unit(value, unit, "kWh") == pytest.approx(kwh)


def test_milliwatts_and_megawatts_stay_apart() -> None:
    assert convert_unit(2000.0, "mW", "W") == pytest.approx(2.0)
    assert convert_unit(2.0, "MW", "W") == pytest.approx(2e6)


# --- non-finite and impossible numbers ---


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_credit_in_a_currency_is_omitted(bad: float) -> None:
    # Defect: the currency branch of 96.8.0 skipped the finite check; orjson writes NaN as null.
    with pytest.raises(ValueError, match="finite"):
        normalise(read("96.8.0", bad, "KES"))


@pytest.mark.parametrize("key", ["1.8.0", "2.8.0"])
def test_negative_cumulative_energy_is_omitted(key: str) -> None:
    # An energy register cannot be negative: it is a sign or word-order decoding fault, not a reading.
    with pytest.raises(ValueError, match="negative"):
        normalise(read(key, -1.5, "kWh"))


def test_negative_power_is_published() -> None:
    # 1.7.0 on SDM meters is net power: negative while exporting is a real reading (profile note).
    assert normalise(read("1.7.0", -0.25, "kW")).value == -250.0


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**6))
def test_rounding_never_makes_energy_go_down(wh: int, more: int) -> None:
    first = normalise(read("1.8.0", wh, "Wh")).value
    second = normalise(read("1.8.0", wh + more, "Wh")).value
    assert second >= first
    assert round(first, 3) == first  # at most 3 decimals


@given(
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.sampled_from(["Wh", "kWh", "MWh"]),
)
def test_rounding_is_monotonic_for_float_energy(value: float, more: float, unit: str) -> None:
    first = normalise(read("1.8.0", value, unit)).value
    second = normalise(read("1.8.0", value + more, unit)).value
    assert second >= first


def test_integer_watt_hours_convert_exactly() -> None:
    # 1 234 567 891 Wh is exactly 1 234 567.891 kWh: no binary rounding may show up in the JSON number.
    assert normalise(read("1.8.0", 1_234_567_891, "Wh")).value == 1234567.891


# --- IEC 62056-21 values without a unit ---


def test_iec21_profile_unit_is_used_when_the_readout_has_none() -> None:
    # Defect: Iec21Address.unit was accepted but ignored, so a Wh register without "*Wh" was published
    # as "assumed kWh", 1000 times too large.
    prof = profile({"1.8.0": {"iec21": {"data_set": "1.8.0", "unit": "Wh"}}})
    entry = normalise(read("1.8.0", 1234567.0, None, source="iec21:1.8.0"), prof)
    assert (entry.value, entry.unit, entry.quality) == (1234.567, "kWh", Quality.GOOD)


def test_iec21_readout_unit_wins_over_the_profile() -> None:
    prof = profile({"1.7.0": {"iec21": {"data_set": "1.7.0", "unit": "W"}}})
    entry = normalise(read("1.7.0", 0.45, "kW", source="iec21:1.7.0"), prof)
    assert entry.value == 450.0


def test_iec21_without_any_unit_is_still_suspect() -> None:
    prof = load_profile("iec21-generic-mode-c")
    entry = normalise(read("1.8.0", 12.5, None, source="iec21:1.8.0"), prof)
    assert entry.quality == Quality.SUSPECT


def test_iec21_plain_digits_are_a_number_for_numeric_keys() -> None:
    # A readout "1.8.0(001234)" has neither unit nor decimal point; the driver keeps it as text (so serials
    # keep their leading zeros), and normalisation must still publish 1.8.0 rather than drop it.
    prof = profile({"1.8.0": {"iec21": {"data_set": "1.8.0", "unit": "Wh"}}})
    entry = normalise(read("1.8.0", "001234", None, source="iec21:1.8.0"), prof)
    assert (entry.value, entry.unit, entry.quality) == (1.234, "kWh", Quality.GOOD)
    serial = normalise(read("0.0.96.1.1.255", "001234", None, source="iec21:C.1.0"), prof)
    assert serial.value == "001234"
    with pytest.raises(ValueError, match="expected a number"):
        normalise(read("1.8.0", "12-34", None, source="iec21:1.8.0"), prof)


# --- tamper and disconnect edge cases ---


def test_tamper_bits_beyond_the_table_are_unmapped_and_suspect() -> None:
    prof = load_profile("villageami-sim-dlms-1p")
    value = (1 << 1) | (1 << 40)
    entry = normalise(read("96.5.0", value, None), prof)
    assert entry.flags == ("magnetic",)
    assert entry.unmapped_bits == 1 << 40 and entry.quality == Quality.SUSPECT
    assert int(entry.raw or "", 16) == value


def test_unknown_disconnect_code_is_omitted() -> None:
    result = normalise_all([read("0.0.96.3.10.255", 7, None)], load_profile("villageami-sim-dlms-1p"))
    assert "0.0.96.3.10.255" in result.omitted and not result.readings


def test_every_normalised_entry_validates() -> None:
    prof = load_profile("villageami-sim-dlms-1p")
    reads = [
        read("1.8.0", 1_234_567, "Wh"),
        read("2.8.0", 0.0004, "MWh"),
        read("1.7.0", -0.0, "kW"),
        read("96.8.0", math.nan, "KES"),
        read("96.8.0", 12.3456, None),
        read("96.5.0", 0xFFFF, None),
        read("0.0.0", "2026-03-29T02:30:00", None),
    ]
    result = normalise_all(reads, prof)
    message = telemetry(
        feeder_id="f1",
        gateway_id="g1",
        meter_serial="m1",
        registers=result.entries(),
        ts=AT,
        msg_id="01890000-0000-7000-8000-000000000000",
        seq=0,
    )
    assert [str(p) for p in validate_message(message, "telemetry") if p.severity == "error"] == []
