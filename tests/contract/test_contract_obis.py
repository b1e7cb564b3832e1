"""OBIS codes: every spelling parses to one value and formats back; invalid codes fail clearly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from villageami.contract.obis import Obis, ObisError, ObisSpelling, parse_obis, vmrs_key_for
from villageami.errors import VillageAmiError

ENERGY = Obis(1, 0, 1, 8, 0, 255)


@pytest.mark.parametrize(
    "text",
    [
        "1.8.0",
        "1-0:1.8.0*255",
        "1-0:1.8.0.255",
        "1.0.1.8.0.255",
        "0100010800FF",
        "0100010800ff",
        " 1.8.0 ",
        "1-0:1.8.0",
    ],
)
def test_every_spelling_of_active_import(text: str) -> None:
    assert parse_obis(text) == ENERGY
    assert vmrs_key_for(text) == "1.8.0"


def test_formats() -> None:
    assert ENERGY.to_short() == "1.8.0"
    assert ENERGY.to_iec() == "1-0:1.8.0*255"
    assert ENERGY.to_logical_name() == "1-0:1.8.0.255"
    assert ENERGY.to_dotted() == "1.0.1.8.0.255"
    assert ENERGY.to_hex() == "0100010800FF"
    assert ENERGY.to_bytes() == b"\x01\x00\x01\x08\x00\xff"
    assert str(ENERGY) == "1-0:1.8.0.255"
    assert {ENERGY: 1}[parse_obis("1.8.0")] == 1  # hashable, equal values hash equal


def test_short_form_implies_abstract_medium_for_service_codes() -> None:
    assert parse_obis("96.5.0") == Obis(0, 0, 96, 5, 0, 255)
    assert parse_obis("0.0.96.3.10.255") == Obis(0, 0, 96, 3, 10, 255)
    assert parse_obis("32.7.0") == Obis(1, 0, 32, 7, 0, 255)
    assert parse_obis("1-0:1.8.0*101").f == 101


def test_bytes_round_trip_and_length_error() -> None:
    assert Obis.from_bytes(bytes.fromhex("0000600A03FF")) == Obis(0, 0, 96, 10, 3, 255)
    with pytest.raises(ObisError, match="6 bytes"):
        Obis.from_bytes(b"\x01\x02")


obis_values = st.builds(Obis, *(st.integers(0, 255) for _ in range(6)))


@given(obis_values, st.sampled_from([s for s in ObisSpelling if s is not ObisSpelling.SHORT]))
def test_full_spellings_round_trip(obis: Obis, spelling: ObisSpelling) -> None:
    assert parse_obis(obis.format(spelling)) == obis


@given(obis_values)
def test_bytes_round_trip(obis: Obis) -> None:
    assert Obis.from_bytes(obis.to_bytes()) == obis
    assert len(obis.to_bytes()) == 6


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_short_spelling_round_trip(c: int, d: int, e: int) -> None:
    obis = parse_obis(f"{c}.{d}.{e}")
    assert obis.to_short() == f"{c}.{d}.{e}"
    assert obis.is_short_form
    assert parse_obis(obis.to_short()) == obis


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.8",
        "1.8.0.0",
        "1.8.0.255.1.2.3",
        "256.8.0",
        "1-0:1.8.0*256",
        "1-0:1.8",
        "01000108FF",
        "0100010800FG",
        "a.b.c",
        "1,8,0",
        "1-0-1.8.0.255",
        "1.8.-0",
        "1.8.0\n1.8.0",
    ],
)
def test_invalid_codes_raise_naming_the_input(text: str) -> None:
    with pytest.raises(ObisError) as info:
        parse_obis(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, VillageAmiError)


def test_non_text_input() -> None:
    with pytest.raises(ObisError, match="text"):
        parse_obis(180)  # type: ignore[arg-type]


def test_group_out_of_range_in_constructor() -> None:
    with pytest.raises(ObisError, match=r"0\.\.255"):
        Obis(1, 0, 1, 8, 0, 256)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("96.11.1", "0.0.96.3.10.255"),  # deprecated alias
        ("0-0:96.3.10.255", "0.0.96.3.10.255"),
        ("000060030AFF", "0.0.96.3.10.255"),
        ("0-0:1.0.0.255", "0.0.0"),  # the COSEM clock object
        ("0.0.0", "0.0.0"),
        ("0-0:96.1.1.255", "0.0.96.1.1.255"),
        ("1-0:52.7.0.255", "52.7.0"),
        ("96.8.0", "96.8.0"),
        ("1-0:31.7.0.255", None),  # current: not a VMRS register
        ("0-0:96.1.0.255", None),  # often the serial, never mapped to the billing counter
        ("1-0:1.8.0.101", None),  # a billing-period value, not the current one
    ],
)
def test_vmrs_key_for(text: str, key: str | None) -> None:
    assert vmrs_key_for(text) == key


def test_vmrs_key_for_obis_value() -> None:
    assert vmrs_key_for(Obis(0, 0, 1, 0, 0, 255)) == "0.0.0"
    assert vmrs_key_for(ENERGY) == "1.8.0"
    assert vmrs_key_for(Obis(1, 0, 99, 1, 0, 255)) is None


def test_vmrs_key_for_invalid_text_raises() -> None:
    with pytest.raises(ObisError, match="'nope'"):
        vmrs_key_for("nope")
