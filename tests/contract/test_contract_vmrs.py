"""The VMRS catalogue against the upstream register list, and its lookups."""

from __future__ import annotations

import json

import pytest
from contract_cases import UPSTREAM

from villageami.contract import vmrs
from villageami.contract.errors import UnknownRegisterError
from villageami.contract.vmrs import (
    CLOCK_KEY,
    CREDIT_KEY,
    DISCONNECT_KEY,
    SERIAL_KEY,
    TAMPER_KEY,
    VMRS,
    Requirement,
    ValueType,
    canonical_key,
    unit_fits,
    value_fits,
)
from villageami.errors import VillageAmiError

UPSTREAM_REGISTERS = json.loads((UPSTREAM / "vmrs-registers.json").read_text(encoding="utf-8"))["registers"]


def test_catalogue_holds_upstream_twelve_plus_l2_l3() -> None:
    upstream_keys = [r["obis"] for r in UPSTREAM_REGISTERS]
    assert len(upstream_keys) == 12
    assert set(VMRS) == {*upstream_keys, "52.7.0", "72.7.0"}


@pytest.mark.parametrize("entry", UPSTREAM_REGISTERS, ids=lambda e: e["obis"])
def test_entry_matches_upstream(entry: dict[str, object]) -> None:
    register = VMRS[str(entry["obis"])]
    assert register.name == entry["name"]
    assert register.tier.value == entry["certainty"]
    assert register.provenance["sources"] == entry["sources"]
    assert register.provenance["upstreamUnit"] == entry["unit"]
    assert list(register.alternatives) == entry.get("alternatives", [])
    if entry["obis"] != "2.8.0":
        expected = (
            str(entry["required"]).lower() if isinstance(entry["required"], bool) else entry["required"]
        )
        assert register.required.value == expected


def test_required_enum_and_g26() -> None:
    assert VMRS["2.8.0"].required is Requirement.IF_NET_METERED
    assert VMRS[CREDIT_KEY].required is Requirement.IF_PREPAID
    assert VMRS["1.8.0"].required is Requirement.TRUE
    assert VMRS["14.7.0"].required is Requirement.FALSE
    assert VMRS["52.7.0"].required is Requirement.FALSE and VMRS["72.7.0"].unit == "V"


def test_well_known_keys() -> None:
    assert VMRS[DISCONNECT_KEY].value_type is ValueType.ENUM
    assert VMRS[DISCONNECT_KEY].enum == ("connected", "disconnected", "ready_for_reconnection")
    assert VMRS[TAMPER_KEY].value_type is ValueType.BITFIELD
    assert VMRS[CLOCK_KEY].value_type is ValueType.DATETIME
    assert VMRS[SERIAL_KEY].value_type is ValueType.TEXT
    assert [a.key for a in VMRS[DISCONNECT_KEY].aliases] == ["96.11.1"]
    assert VMRS[DISCONNECT_KEY].aliases[0].deprecated


def test_every_entry_has_provenance_and_value_type() -> None:
    for register in VMRS.values():
        assert register.provenance["source"]
        assert register.provenance["sources"]
        assert register.unit in register.units
        assert register.interval.value in {"billing", "instantaneous", "event", "sync", "static"}


@pytest.mark.parametrize(
    ("text", "key"),
    [("1.8.0", "1.8.0"), ("1-0:1.8.0.255", "1.8.0"), ("1-0:1.8.0*255", "1.8.0"), ("96.11.1", DISCONNECT_KEY)],
)
def test_canonical_key(text: str, key: str) -> None:
    assert canonical_key(text) == key


@pytest.mark.parametrize("text", ["1-0:31.7.0.255", "nope", ""])
def test_canonical_key_unknown(text: str) -> None:
    with pytest.raises(UnknownRegisterError) as info:
        canonical_key(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, VillageAmiError)


def test_units() -> None:
    assert unit_fits(VMRS[CREDIT_KEY], "kWh")
    assert unit_fits(VMRS[CREDIT_KEY], "XAF")
    assert not unit_fits(VMRS[CREDIT_KEY], "xaf")
    assert not unit_fits(VMRS["1.8.0"], "KES")
    assert not unit_fits(VMRS["1.7.0"], "kW")


@pytest.mark.parametrize(
    ("key", "value", "fits"),
    [
        ("1.8.0", 1.5, True),
        ("1.8.0", True, False),
        ("1.8.0", float("inf"), False),
        ("1.8.0", float("nan"), False),
        ("96.1.0", 3, True),
        ("96.1.0", 3.5, False),
        (TAMPER_KEY, 0, True),
        (TAMPER_KEY, -1, False),
        (CLOCK_KEY, "2026-06-22T15:30:00+01:00", True),
        (CLOCK_KEY, "2026-06-22T15:30:00", False),
        (DISCONNECT_KEY, "ready_for_reconnection", True),
        (DISCONNECT_KEY, "on", False),
        (SERIAL_KEY, "DS1000-88421", True),
        (SERIAL_KEY, 88421, False),
    ],
)
def test_value_fits(key: str, value: object, fits: bool) -> None:
    assert (value_fits(VMRS[key], value) is None) is fits


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        vmrs.VMRS["x"] = VMRS["1.8.0"]  # type: ignore[index]
