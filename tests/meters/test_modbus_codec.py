"""Modbus register decoding (types, word order, byte order, signedness, scale) and request planning."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from villageami.meters.modbus_driver import decode_registers, encode_value, plan_requests
from villageami.meters.profile import ModbusAddress, ModbusType, load_profile


def point(
    type_: str, *, word: str = "big", byte: str = "big", scale: float = 1, address: int = 0, function: int = 4
) -> ModbusAddress:
    return ModbusAddress.model_validate(
        {
            "function": function,
            "address": address,
            "type": type_,
            "word_order": word,
            "byte_order": byte,
            "scale": scale,
        }
    )


# Vectors written out by hand (IEEE-754 / two's complement), not computed by the code under test.
VECTORS: list[tuple[str, str, str, list[int], Any]] = [
    ("float32", "big", "big", [0x4366, 0x0000], 230.0),  # 230.0 = 0x43660000 (ABCD)
    ("float32", "little", "big", [0x0000, 0x4366], 230.0),  # CDAB: low word first
    ("float32", "big", "little", [0x6643, 0x0000], 230.0),  # BADC: bytes swapped in each word
    ("float32", "little", "little", [0x0000, 0x6643], 230.0),  # DCBA
    ("float32", "big", "big", [0xC0A0, 0x0000], -5.0),
    ("float64", "big", "big", [0x4093, 0x4A00, 0x0000, 0x0000], 1234.5),
    ("float64", "little", "big", [0x0000, 0x0000, 0x4A00, 0x4093], 1234.5),
    ("int16", "big", "big", [0xFFFF], -1),
    ("uint16", "big", "big", [0xFFFF], 65535),
    ("int16", "big", "big", [0x8000], -32768),
    ("int16", "big", "little", [0xFEFF], -2),  # 0xFFFE with bytes swapped
    ("int32", "big", "big", [0xFFFF, 0xFFFE], -2),
    ("int32", "little", "big", [0xFFFE, 0xFFFF], -2),
    ("uint32", "big", "big", [0xFFFF, 0xFFFE], 4294967294),
    # The known bug class: a word-swapped uint32 whose low word has the top bit set must not wrap negative.
    ("uint32", "little", "big", [0x8000, 0x0000], 32768),
    ("uint32", "little", "big", [0xFFFF, 0x0001], 131071),
    ("uint32", "little", "big", [0x0001, 0xFFFF], 4294901761),
    ("int32", "little", "big", [0x0000, 0x8000], -2147483648),
    ("int32", "little", "big", [0xFFFF, 0x7FFF], 2147483647),
    ("int64", "big", "big", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], -1),
    ("uint64", "big", "big", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**64 - 1),
    ("int64", "little", "big", [0x0001, 0x0000, 0x0000, 0x8000], -(2**63) + 1),
    ("uint64", "little", "big", [0x0002, 0x0000, 0x0000, 0x0001], 2**48 + 2),
]


@pytest.mark.parametrize(("type_", "word", "byte", "registers", "expected"), VECTORS)
def test_decode_vectors(type_: str, word: str, byte: str, registers: list[int], expected: Any) -> None:
    value = decode_registers(registers, point(type_, word=word, byte=byte))
    assert value == expected
    assert isinstance(value, float) == type_.startswith("float")


@pytest.mark.parametrize(("type_", "word", "byte", "registers", "expected"), VECTORS)
def test_encode_is_the_inverse_on_the_vectors(
    type_: str, word: str, byte: str, registers: list[int], expected: Any
) -> None:
    assert encode_value(expected, point(type_, word=word, byte=byte)) == registers


def test_scale_applies_after_decoding() -> None:
    assert decode_registers([2345], point("uint16", scale=0.1)) == pytest.approx(234.5)
    assert decode_registers([0xFFFF], point("int16", scale=0.01)) == pytest.approx(-0.01)
    tenfold = decode_registers([123], point("uint16", scale=10))
    assert tenfold == 1230 and isinstance(tenfold, int)
    wh = decode_registers([0x0001, 0x0000], point("uint32", scale=0.001))  # 65536 Wh counted in kWh
    assert wh == pytest.approx(65.536)


def test_wrong_register_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_registers([1], point("float32"))
    with pytest.raises(ValueError, match="not 16-bit"):
        decode_registers([0x10000], point("uint16"))


ORDERS = st.sampled_from(["big", "little"])


@given(
    type_=st.sampled_from(list(ModbusType)),
    word=ORDERS,
    byte=ORDERS,
    data=st.data(),
)
def test_round_trip_every_type_and_order(
    type_: ModbusType, word: str, byte: str, data: st.DataObject
) -> None:
    p = point(type_.value, word=word, byte=byte)
    bits = 16 * type_.registers
    if type_.is_float:
        value: float = data.draw(st.floats(allow_nan=False, allow_infinity=False, width=bits))
    elif type_.value.startswith("u"):
        value = data.draw(st.integers(0, 2**bits - 1))
    else:
        value = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    registers = encode_value(value, p)
    assert len(registers) == type_.registers and all(0 <= r <= 0xFFFF for r in registers)
    decoded = decode_registers(registers, p)
    assert decoded == value or (math.isnan(value) and math.isnan(decoded))


def _points(spec: dict[str, tuple[int, int, str]]) -> dict[str, ModbusAddress]:
    return {k: point(t, address=a, function=f) for k, (f, a, t) in spec.items()}


def test_plan_contiguous_only_by_default() -> None:
    profile = load_profile("eastron-sdm630")
    points = {k: e.modbus for k, e in profile.registers.items() if e.modbus is not None}
    plan = plan_requests(points)
    assert [(r.function, r.address, r.count) for r in plan] == [(4, 0, 6), (4, 52, 2), (4, 70, 6)]
    assert plan[0].keys == ("32.7.0", "52.7.0", "72.7.0")
    assert plan[2].keys == ("14.7.0", "1.8.0", "2.8.0")


def test_plan_spans_gaps_when_allowed() -> None:
    profile = load_profile("eastron-sdm630")
    points = {k: e.modbus for k, e in profile.registers.items() if e.modbus is not None}
    assert [(r.address, r.count) for r in plan_requests(points, max_gap=16)] == [(0, 6), (52, 24)]
    one = plan_requests(points, max_gap=64)
    assert [(r.address, r.count) for r in one] == [(0, 76)] and len(one[0].keys) == 7


def test_plan_respects_the_125_register_bound_and_function_codes() -> None:
    points = _points({"a": (4, 0, "float32"), "b": (4, 124, "float32"), "c": (4, 125, "uint16")})
    plan = plan_requests(points, max_gap=200)
    assert [(r.address, r.count, r.keys) for r in plan] == [(0, 2, ("a",)), (124, 2, ("b", "c"))]
    exactly = _points({"a": (4, 0, "uint16"), "b": (4, 124, "uint16")})
    assert [(r.address, r.count) for r in plan_requests(exactly, max_gap=200)] == [(0, 125)]
    mixed = _points({"h": (3, 0, "uint16"), "i": (4, 1, "uint16")})
    assert [(r.function, r.keys) for r in plan_requests(mixed, max_gap=10)] == [(3, ("h",)), (4, ("i",))]
    with pytest.raises(ValueError):
        plan_requests(points, max_registers=126)


def test_plan_handles_overlapping_points() -> None:
    # a uint32 and its own low word mapped separately
    points = _points({"whole": (3, 10, "uint32"), "low": (3, 11, "uint16")})
    plan = plan_requests(points)
    assert [(r.address, r.count) for r in plan] == [(10, 2)]
    assert set(plan[0].keys) == {"whole", "low"}
