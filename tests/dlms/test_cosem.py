"""COSEM class helpers: scaler_unit, units, object_list decoding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from villageami.dlms.axdr import Data, DataType, decode_data
from villageami.dlms.cosem import (
    ScalerUnit,
    decode_object_list,
    register_value,
    scaler_unit_attribute,
    unit_text,
)
from villageami.dlms.errors import DecodeError


@pytest.mark.parametrize(
    ("unit", "text"),
    [
        (27, "W"),
        (29, "var"),
        (30, "Wh"),
        (32, "varh"),
        (33, "A"),
        (35, "V"),
        (44, "Hz"),
        (255, ""),
        (200, "unit-200"),
    ],
)
def test_unit_text(unit: int, text: str) -> None:
    assert unit_text(unit) == text


def test_scaler_unit_applied_exactly() -> None:
    # Aidon push (corpus vector 100): 2272138 x 10^1 Wh = 22721380 Wh; 2276 x 10^-1 V = 227.6 V.
    energy = register_value(
        Data(DataType.DOUBLE_LONG_UNSIGNED, 2272138), decode_data(bytes.fromhex("02020f01161e"))
    )
    assert energy.decimal == Decimal(22721380) and energy.unit_text == "Wh" and energy.value == 22721380.0
    voltage = register_value(Data(DataType.LONG_UNSIGNED, 2276), ScalerUnit(-1, 35))
    assert voltage.decimal == Decimal("227.6") and str(voltage) == "227.6 V"
    count = register_value(Data(DataType.LONG, -5), None)
    assert count.decimal == Decimal(-5) and count.unit_text == ""


def test_scaler_unit_rejects_wrong_shapes() -> None:
    with pytest.raises(DecodeError, match="structure of 2"):
        ScalerUnit.from_data(Data(DataType.UNSIGNED, 1))
    with pytest.raises(DecodeError, match="non-integer"):
        ScalerUnit.from_data(Data.structure([Data(DataType.OCTET_STRING, b""), Data(DataType.ENUM, 30)]))
    with pytest.raises(DecodeError, match="not a number"):
        register_value(Data(DataType.OCTET_STRING, b"12"), None)
    assert ScalerUnit.from_data(ScalerUnit(-2, 33).to_data()) == ScalerUnit(-2, 33)


def test_object_list_decoding() -> None:
    # Register 1-0:1.8.0.255 v0: attributes 1 and 2 readable (no selectors), method 1 not accessible.
    raw = bytes.fromhex(
        "0101"
        "0204"
        "120003" "1100" "0906" "0100010800ff"
        "0202"
        "0102" "02030f011601" "00" "02030f021601" "00"
        "0101" "02020f01" "1600"
    )  # fmt: skip
    (entry,) = decode_object_list(decode_data(raw))
    assert (entry.class_id, entry.version, entry.obis) == (3, 0, "1-0:1.8.0.255")
    assert [(a.attribute_id, a.access_mode) for a in entry.attribute_access] == [(1, 1), (2, 1)]
    assert [(m.method_id, m.access_mode) for m in entry.method_access] == [(1, 0)]


def test_object_list_rejects_non_arrays() -> None:
    with pytest.raises(DecodeError, match="must be an array"):
        decode_object_list(Data(DataType.UNSIGNED, 1))
    with pytest.raises(DecodeError, match="not 6 octets"):
        decode_object_list(
            Data.array(
                [
                    Data.structure(
                        [Data(DataType.LONG_UNSIGNED, 1), Data(DataType.UNSIGNED, 0), Data.octet_string(b"x")]
                    )
                ]
            )
        )


@pytest.mark.parametrize(
    ("class_id", "attribute"),
    [(3, 3), (4, 3), (5, 4), (1, None), (8, None), (70, None)],
)
def test_scaler_unit_attribute_per_class(class_id: int, attribute: int | None) -> None:
    # IEC 62056-6-2: the demand register (class 5) keeps scaler_unit in attribute 4, not 3.
    assert scaler_unit_attribute(class_id) == attribute
