"""A-XDR: every COSEM data type, byte-exact round trips (hypothesis), date-time and logical names."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from villageami.dlms.axdr import (
    CompactArray,
    CosemDate,
    CosemDateTime,
    CosemTime,
    Data,
    DataType,
    TypeDescription,
    decode_data,
    decode_length,
    encode_data,
    encode_length,
    ln_from_str,
    ln_to_str,
)
from villageami.dlms.errors import DecodeError, EncodeError

# --------------------------------------------------------------------------- strategies


def _opt(strategy: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), strategy)


date_times = st.builds(
    CosemDateTime,
    _opt(st.integers(0, 0xFFFE)),
    _opt(st.integers(1, 0xFE)),
    _opt(st.integers(1, 0xFE)),
    _opt(st.integers(1, 7)),
    _opt(st.integers(0, 23)),
    _opt(st.integers(0, 59)),
    _opt(st.integers(0, 59)),
    _opt(st.integers(0, 99)),
    _opt(st.integers(-720, 720)),
    _opt(st.integers(0, 0xFE)),
)
dates = st.builds(
    CosemDate,
    _opt(st.integers(0, 0xFFFE)),
    _opt(st.integers(1, 12)),
    _opt(st.integers(1, 31)),
    _opt(st.integers(1, 7)),
)
times = st.builds(
    CosemTime,
    _opt(st.integers(0, 23)),
    _opt(st.integers(0, 59)),
    _opt(st.integers(0, 59)),
    _opt(st.integers(0, 99)),
)

_INT_RANGES = {
    DataType.INTEGER: (-(2**7), 2**7 - 1),
    DataType.LONG: (-(2**15), 2**15 - 1),
    DataType.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    DataType.LONG64: (-(2**63), 2**63 - 1),
    DataType.UNSIGNED: (0, 2**8 - 1),
    DataType.LONG_UNSIGNED: (0, 2**16 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    DataType.LONG64_UNSIGNED: (0, 2**64 - 1),
    DataType.ENUM: (0, 255),
    DataType.BCD: (0, 255),
}

simple_data = st.one_of(
    st.just(Data(DataType.NULL_DATA)),
    st.just(Data(DataType.DONT_CARE)),
    st.builds(lambda b: Data(DataType.BOOLEAN, b), st.booleans()),
    st.builds(lambda s: Data(DataType.BIT_STRING, s), st.text("01", max_size=40)),
    *[st.builds(lambda v, t=t: Data(t, v), st.integers(low, high)) for t, (low, high) in _INT_RANGES.items()],
    st.builds(lambda f: Data(DataType.FLOAT32, f), st.floats(width=32, allow_nan=False)),
    st.builds(lambda f: Data(DataType.FLOAT64, f), st.floats(allow_nan=False)),
    st.builds(lambda b: Data(DataType.OCTET_STRING, b), st.binary(max_size=300)),
    st.builds(
        lambda s: Data(DataType.VISIBLE_STRING, s), st.text(st.characters(max_codepoint=255), max_size=40)
    ),
    st.builds(
        lambda s: Data(DataType.UTF8_STRING, s),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    ),
    st.builds(lambda v: Data(DataType.DATE_TIME, v), date_times),
    st.builds(lambda v: Data(DataType.DATE, v), dates),
    st.builds(lambda v: Data(DataType.TIME, v), times),
)

data_values = st.recursive(
    simple_data,
    lambda children: st.one_of(
        st.builds(Data.array, st.lists(children, max_size=5)),
        st.builds(Data.structure, st.lists(children, max_size=5)),
    ),
    max_leaves=25,
)


# --------------------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None)
@given(data_values)
def test_round_trip_value(value: Data) -> None:
    encoded = encode_data(value)
    assert decode_data(encoded) == value
    assert encode_data(decode_data(encoded)) == encoded


@given(st.integers(0, 2**32 - 1))
def test_length_round_trip(length: int) -> None:
    encoded = encode_length(length)
    assert decode_length(encoded, 0) == (length, len(encoded))
    assert (len(encoded) == 1) == (length < 0x80)


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [dt.UTC, dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))]
        ),
    )
)
def test_aware_datetime_round_trip(value: dt.datetime) -> None:
    value = value.replace(microsecond=value.microsecond // 10_000 * 10_000)
    cosem = CosemDateTime.from_datetime(value)
    back = CosemDateTime.decode_raw(cosem.encode_raw()).to_datetime()
    assert back == value and back.utcoffset() == value.utcoffset()


# --------------------------------------------------------------------------- known encodings


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (Data(DataType.NULL_DATA), "00"),
        (Data(DataType.BOOLEAN, True), "03ff"),
        (Data(DataType.BOOLEAN, False), "0300"),
        (Data(DataType.BIT_STRING, "1010000011"), "040aa0c0"),
        (Data(DataType.DOUBLE_LONG, -2), "05fffffffe"),
        (Data(DataType.DOUBLE_LONG_UNSIGNED, 5009), "0600001391"),
        (Data(DataType.OCTET_STRING, b"\x01\x02"), "09020102"),
        (Data(DataType.VISIBLE_STRING, "AB"), "0a024142"),
        (Data(DataType.UTF8_STRING, "é"), "0c02c3a9"),
        (Data(DataType.BCD, 0x12), "0d12"),
        (Data(DataType.INTEGER, -64), "0fc0"),
        (Data(DataType.LONG, 60), "10003c"),
        (Data(DataType.UNSIGNED, 17), "1111"),
        (Data(DataType.LONG_UNSIGNED, 2276), "1208e4"),
        (Data(DataType.LONG64, -1), "14ffffffffffffffff"),
        (Data(DataType.LONG64_UNSIGNED, 2**64 - 1), "15ffffffffffffffff"),
        (Data(DataType.ENUM, 30), "161e"),
        (Data(DataType.FLOAT32, 1.5), "173fc00000"),
        (Data(DataType.FLOAT64, -2.0), "18c000000000000000"),
        (Data(DataType.DATE, CosemDate(2021, 6, 3, None)), "1a07e50603ff"),
        (Data(DataType.TIME, CosemTime(14, 9, 23, None)), "1b0e0917ff"),
        (Data(DataType.DONT_CARE), "ff"),
        (Data.structure([Data(DataType.INTEGER, -1), Data(DataType.ENUM, 30)]), "02020fff161e"),
        (Data.array([]), "0100"),
        (Data(DataType.OCTET_STRING, bytes(200)), "0981c8" + "00" * 200),
    ],
)
def test_known_encodings(value: Data, hex_: str) -> None:
    assert encode_data(value).hex() == hex_
    assert decode_data(bytes.fromhex(hex_)) == value


def test_date_time_tag_25() -> None:
    raw = bytes.fromhex("1907e50603040e091700ffc400")
    value = decode_data(raw)
    assert value.type is DataType.DATE_TIME
    assert value.value.to_datetime() == dt.datetime(
        2021, 6, 3, 14, 9, 23, tzinfo=dt.timezone(dt.timedelta(hours=1))
    )
    assert encode_data(value) == raw


def test_deviation_sign_and_unspecified() -> None:
    # 0xFFC4 = -60 minutes (UTC minus local) -> UTC+01:00; 0x8000 -> naive.
    plus_one = CosemDateTime.decode_raw(bytes.fromhex("07e40106ff00030000ffc400"))
    assert plus_one.deviation == -60
    assert plus_one.to_datetime().utcoffset() == dt.timedelta(hours=1)
    unspecified = CosemDateTime.decode_raw(bytes.fromhex("07e2020cff00000000800000"))
    assert unspecified.deviation is None and unspecified.to_datetime().tzinfo is None
    assert unspecified.day_of_week is None
    naive = CosemDateTime.from_datetime(dt.datetime(2020, 1, 1, 10, 0))
    assert naive.encode_raw().hex() == "07e40101030a000000800000"


def test_unspecified_date_time_cannot_become_datetime() -> None:
    value = CosemDateTime(None, 1, 1, None, 0, 0, 0, 0, 0, 0)
    with pytest.raises(DecodeError, match="unspecified"):
        value.to_datetime()
    with pytest.raises(DecodeError, match="not valid"):
        CosemDateTime(2021, 2, 30, None, 0, 0, 0, 0, 0, 0).to_datetime()


def test_compact_array_round_trip() -> None:
    description = TypeDescription(
        DataType.STRUCTURE, (TypeDescription(DataType.LONG_UNSIGNED), TypeDescription(DataType.INTEGER))
    )
    raw = bytes.fromhex("13" + "0202120f" + "06" + "0001ff" + "0002fe")
    value = decode_data(raw)
    assert value.type is DataType.COMPACT_ARRAY
    assert isinstance(value.value, CompactArray) and value.value.description == description
    assert value.to_python() == [[1, -1], [2, -2]]
    assert encode_data(value) == raw


def test_compact_array_of_array_description() -> None:
    raw = bytes.fromhex("13" + "01000211" + "04" + "01020304")
    value = decode_data(raw)
    assert value.to_python() == [[1, 2], [3, 4]]
    assert encode_data(value) == raw


def test_plain_python_conversion() -> None:
    value = decode_data(bytes.fromhex("0203" + "0600000005" + "0a024142" + "0100"))
    assert value.to_python() == [5, "AB", []]
    assert value[0].value == 5 and len(value) == 3


@pytest.mark.parametrize(
    "value",
    [
        Data(DataType.UNSIGNED, 256),
        Data(DataType.INTEGER, -129),
        Data(DataType.LONG_UNSIGNED, -1),
        Data(DataType.BOOLEAN, 1),
        Data(DataType.OCTET_STRING, "text"),
        Data(DataType.VISIBLE_STRING, "€"),
        Data(DataType.BIT_STRING, "012"),
        Data(DataType.DATE_TIME, b"\x00" * 12),
        Data(DataType.ARRAY, [1, 2]),
        Data(DataType.NULL_DATA, 0),
        Data(DataType.DOUBLE_LONG, True),
    ],
)
def test_encode_rejects_wrong_values(value: Data) -> None:
    with pytest.raises(EncodeError):
        encode_data(value)


@pytest.mark.parametrize(
    ("hex_", "message"),
    [
        ("", "missing"),
        ("07", "unknown A-XDR data type tag 0x07"),
        ("0600", "needs 4 octets"),
        ("0905aabb", "octet-string needs 5 octets"),
        ("0103", "cannot fit"),
        ("0c02ff00", "not valid UTF-8"),
        ("0985", "length octets"),
        ("1100ff", "trailing"),
    ],
)
def test_decode_errors_name_the_problem(hex_: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_data(bytes.fromhex(hex_))


def test_deep_nesting_is_rejected() -> None:
    with pytest.raises(DecodeError, match="nesting"):
        decode_data(b"\x01\x01" * 100 + b"\x00")


def test_logical_names() -> None:
    assert ln_to_str(bytes([1, 0, 1, 8, 0, 255])) == "1-0:1.8.0.255"
    assert ln_from_str("1-0:1.8.0.255") == bytes([1, 0, 1, 8, 0, 255])
    assert ln_from_str("1.0.1.8.0.255") == bytes([1, 0, 1, 8, 0, 255])
    assert ln_from_str("1-0:1.8.0") == bytes([1, 0, 1, 8, 0, 255])
    assert ln_from_str(bytes(6)) == bytes(6)
    for bad in ("1-0:1.8", "1-0:1.8.0.256", "a-b:c.d.e.f"):
        with pytest.raises(EncodeError, match=r"A-B:C\.D\.E\.F"):
            ln_from_str(bad)
    with pytest.raises(DecodeError, match="6 octets"):
        ln_to_str(b"\x01\x02")


@given(st.binary(min_size=6, max_size=6))
def test_logical_name_round_trip(raw: bytes) -> None:
    assert ln_from_str(ln_to_str(raw)) == raw


@pytest.mark.parametrize("hex_", ["1301ffff01ffff0000", "13020000", "1301ffff1101aa"])
def test_hostile_compact_array_descriptions_fail_fast(hex_: str) -> None:
    # Elements of zero octets (or more than the contents can hold) would expand without bound.
    with pytest.raises(DecodeError, match="compact-array"):
        decode_data(bytes.fromhex(hex_))
