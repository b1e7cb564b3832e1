"""Adversarial review of the drivers, profiles and URLs: decoding edge cases and bad input."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from villageami.dlms.axdr import Data, DataType
from villageami.dlms.cosem import ScalerUnit
from villageami.meters.dlms_driver import DlmsDriver
from villageami.meters.modbus_driver import decode_registers, plan_requests
from villageami.meters.normalise import normalise_all
from villageami.meters.profile import ModbusAddress, ProfileError, parse_profile
from villageami.meters.url import UrlError, parse_meter_url

AT = datetime(2026, 1, 2, tzinfo=UTC)
PROV = {"source": "review test", "evidence": "doc", "confidence": "T1", "status": "expected"}


def document(registers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    protocols = sorted({proto for entry in registers.values() for proto in entry})
    return {
        "format": "villageami-profile/1",
        "name": "review",
        "identity": {"vendor": "v", "model": "m", "provenance": PROV},
        "protocols": protocols,
        "registers": {k: {**v, "provenance": PROV} for k, v in registers.items()},
        **extra,
    }


# --- DLMS scaler_unit ---


def dlms_driver(**point: Any) -> DlmsDriver:
    address = {"class_id": 3, "logical_name": "1-0:1.8.0.255", "attribute": 2, **point}
    prof = parse_profile(document({"1.8.0": {"dlms": address}}), "review")
    return DlmsDriver(client=None, profile=prof)  # type: ignore[arg-type]  # _convert needs no client


def test_register_whose_scaler_unit_was_refused_is_not_published_unscaled() -> None:
    # Defect: with the scaler_unit read refused, the raw integer went out with no unit and was published
    # as "assumed kWh" (suspect): 1 234 567 Wh became 1 234 567 kWh.
    driver = dlms_driver()
    read = driver._convert("1.8.0", Data(DataType.DOUBLE_LONG_UNSIGNED, 1_234_567), AT)
    assert read.value is None and read.error is not None and "scaler_unit" in read.error
    assert "1.8.0" in normalise_all([read]).omitted


def test_profile_scaler_still_works_without_the_meters_scaler_unit() -> None:
    driver = dlms_driver(scaler=-1, unit="Wh")
    read = driver._convert("1.8.0", Data(DataType.DOUBLE_LONG_UNSIGNED, 12_345_675), AT)
    assert (read.value, read.unit) == (1_234_567.5, "Wh")


@pytest.mark.parametrize(
    ("raw", "scaler", "expected"),
    [(1_234_567, -3, 1234.567), (123_456_789_012_345, -4, 12_345_678_901.2345), (7, 2, 700)],
)
def test_negative_scalers_give_the_exact_decimal(raw: int, scaler: int, expected: float) -> None:
    driver = dlms_driver()
    driver.scaler_units["1-0:1.8.0.255"] = ScalerUnit(scaler, 30)
    read = driver._convert("1.8.0", Data(DataType.DOUBLE_LONG_UNSIGNED, raw), AT)
    assert read.value == expected and read.unit == "Wh"


def test_unknown_dlms_unit_enum_is_omitted_not_guessed() -> None:
    driver = dlms_driver()
    driver.scaler_units["1-0:1.8.0.255"] = ScalerUnit(0, 200)
    read = driver._convert("1.8.0", Data(DataType.DOUBLE_LONG_UNSIGNED, 5), AT)
    assert "1.8.0" in normalise_all([read]).omitted


# --- Modbus decoding and planning ---


def point(**fields: Any) -> ModbusAddress:
    return ModbusAddress.model_validate({"function": 4, "address": 0, **fields})


@pytest.mark.parametrize(
    ("fields", "registers", "expected"),
    [
        ({"type": "int32"}, [0xFFFF, 0xFFFE], -2),
        ({"type": "uint32", "word_order": "little"}, [0x5678, 0x1234], 0x12345678),
        ({"type": "uint16", "byte_order": "little"}, [0x3412], 0x1234),
        ({"type": "int16", "scale": 0.1}, [0xFFF6], -1.0),
        ({"type": "uint64"}, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**64 - 1),
    ],
)
def test_word_byte_order_and_sign(fields: dict[str, Any], registers: list[int], expected: float) -> None:
    assert decode_registers(registers, point(**fields)) == expected


def test_float32_nan_never_reaches_an_entry() -> None:
    words = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    value = decode_registers(words, point(type="float32", unit="kWh"))
    from villageami.meters.driver import KeyRead

    result = normalise_all([KeyRead("1.8.0", value, "kWh", AT)])
    assert "1.8.0" in result.omitted and not result.readings


def test_a_32_bit_value_is_never_split_across_requests() -> None:
    points = {
        "a": point(address=0, type="uint16"),
        "b": point(address=1, type="float32"),
        "c": point(address=3, type="float32"),
        "d": point(function=3, address=4, type="float32"),
    }
    for max_registers in (2, 3, 4, 125):
        for request in plan_requests(points, max_registers=max_registers):
            assert request.count <= max_registers
            for key in request.keys:
                p = points[key]
                assert p.function == request.function
                assert (
                    request.address <= p.address
                    and p.address + p.registers <= request.address + request.count
                )


def test_profile_rejects_max_registers_smaller_than_a_mapped_value() -> None:
    # Defect: max_registers 1 with a float32 produced 2-register requests, above the meter's own limit.
    doc = document(
        {"1.8.0": {"modbus": {"function": 4, "address": 0, "type": "float32", "unit": "kWh"}}},
        defaults={"modbus": {"max_registers": 1}},
    )
    with pytest.raises(ProfileError, match="max_registers"):
        parse_profile(doc, "review")


# --- malformed profile values ---


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_profile_rejects_a_non_finite_scale(scale: float) -> None:
    # Defect: scale .nan passed the "scale != 0" check and made every reading NaN.
    with pytest.raises(ValueError, match="scale"):
        point(type="uint32", scale=scale)


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("1.8.0", {"modbus": {"function": 4, "address": 0, "type": "float32", "unit": "kvarh"}}),
        ("32.7.0", {"modbus": {"function": 4, "address": 0, "type": "float32", "unit": "A"}}),
        ("1.8.0", {"dlms": {"class_id": 3, "logical_name": "1-0:1.8.0.255", "unit": "VAh"}}),
        ("1.7.0", {"iec21": {"data_set": "1.7.0", "unit": "kvar"}}),
    ],
)
def test_profile_rejects_a_unit_that_cannot_become_the_vmrs_unit(key: str, entry: dict[str, Any]) -> None:
    # Defect: the profile loaded, and every read of the key was then silently omitted at run time.
    with pytest.raises(ProfileError) as info:
        parse_profile(document({key: entry}), "review")
    assert key in str(info.value) and "unit" in str(info.value)


def test_profile_accepts_convertible_units() -> None:
    doc = document(
        {
            "1.8.0": {"modbus": {"function": 4, "address": 0, "type": "uint32", "unit": "Wh"}},
            "2.8.0": {"modbus": {"function": 4, "address": 2, "type": "float32", "unit": "MWh"}},
            "1.7.0": {"modbus": {"function": 4, "address": 4, "type": "float32", "unit": "kW"}},
        }
    )
    assert parse_profile(doc, "review").registers["2.8.0"].modbus is not None


# --- URL parameters out of range ---


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("modbus+rtu:///dev/ttyUSB0?unit=0", "unit"),
        ("modbus+rtu:///dev/ttyUSB0?unit=248", "unit"),
        ("modbus+tcp://h:502?unit=248", "unit"),
        ("modbus+rtu:///dev/ttyUSB0?baud=0", "baud"),
        ("modbus+tcp://h:502?timeout=-1", "timeout"),
        ("modbus+tcp://h:502?timeout=nan", "timeout"),
        ("dlms+tcp://h:4059?client=128", "client"),
    ],
)
def test_out_of_range_url_parameters_are_rejected_by_name(url: str, problem: str) -> None:
    with pytest.raises(UrlError, match=problem):
        parse_meter_url(url)
