"""Meter profiles: shipped profiles load and match their sources; broken ones fail with the right path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.meters.profile import (
    Confidence,
    Evidence,
    ProfileError,
    Protocol,
    Status,
    check_profile_file,
    load_profile,
    profile_json_schema_text,
    shipped_profile_names,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
PROFILES = Path(__file__).resolve().parents[2] / "src" / "villageami" / "meters" / "profiles"
SHIPPED = shipped_profile_names()
TIER_B = {"0.0.96.1.1.255", "96.5.0", "0.0.96.3.10.255", "96.8.0", "96.11.5"}
TIER_A = {"1.8.0", "2.8.0", "1.7.0", "32.7.0", "14.7.0", "0.0.0"}


def test_the_expected_profiles_ship() -> None:
    assert set(SHIPPED) >= {
        "eastron-sdm120",
        "eastron-sdm630",
        "dlms-generic-prepaid-1ph",
        "donsun-ds1000",
        "inhemeter-i310",
        "calin-cam168-g",
        "iec21-generic-mode-c",
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_by_name_and_by_path(name: str) -> None:
    by_name = load_profile(name)
    by_path = load_profile(str(PROFILES / f"{name}.yaml"))
    assert by_name == by_path
    assert by_name.name == name
    assert check_profile_file(PROFILES / f"{name}.yaml") == []


def test_schema_file_is_the_generated_schema() -> None:
    assert (PROFILES / "profile.schema.json").read_text(encoding="utf-8") == profile_json_schema_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_passes_the_json_schema(name: str) -> None:
    schema = json.loads((PROFILES / "profile.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    document = yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(document))
    assert errors == []


@pytest.mark.parametrize("model", ["sdm120", "sdm630"])
def test_eastron_profiles_match_the_corpus(model: str) -> None:
    corpus = json.loads((CORPUS / "modbus" / f"eastron-{model}.json").read_text(encoding="utf-8"))
    by_obis = {r["obis_equivalent"]: r for r in corpus["registers"] if r["obis_equivalent"]}
    by_address = {r["address"]: r for r in corpus["registers"]}
    profile = load_profile(f"eastron-{model}")
    assert profile.protocols == [Protocol.MODBUS]
    for key, entry in profile.registers.items():
        point = entry.modbus
        assert point is not None
        source = by_address[point.address]
        assert point.function == source["function"] == 4
        assert point.type.value == source["type"] == "float32"
        assert point.word_order == "big" and point.byte_order == "big"
        assert source["cross_checked"] is True
        assert entry.provenance.confidence <= Confidence.T2
        assert "mbmd" in entry.provenance.source
        if key in ("32.7.0", "52.7.0", "72.7.0", "14.7.0", "1.8.0", "2.8.0"):
            # the corpus builder's OBIS equivalents agree with the VMRS keys chosen here
            assert by_obis[f"1.0.{key}.255"]["address"] == point.address


@pytest.mark.parametrize("name", ["donsun-ds1000", "inhemeter-i310", "calin-cam168-g"])
def test_vendor_dlms_profiles_claim_no_more_than_the_datasheets(name: str) -> None:
    profile = load_profile(name)
    for key, entry in profile.registers.items():
        prov = entry.provenance
        if key in TIER_A:
            assert (prov.evidence, prov.confidence, prov.status) == (
                Evidence.CLAIM,
                Confidence.T1,
                Status.EXPECTED,
            )
        else:
            assert key in TIER_B
            assert (prov.evidence, prov.confidence, prov.status) == (
                Evidence.ASSUMPTION,
                Confidence.T0,
                Status.UNVERIFIED,
            )
            assert "ASSUMPTION" in (prov.note or "")
    # nothing is invented: no credit or token object without a vendor ICD, no tamper bit table
    assert "96.8.0" not in profile.registers and "96.11.5" not in profile.registers
    assert profile.tamper is None
    assert profile.disconnect is not None and profile.disconnect.provenance.evidence is Evidence.ASSUMPTION


def _base() -> dict[str, Any]:
    return yaml.safe_load((PROFILES / "dlms-generic-prepaid-1ph.yaml").read_text(encoding="utf-8"))


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split("/")
    for part in parts[:-1]:
        doc = doc[part]
    if value is _DELETE:
        del doc[parts[-1]]
    else:
        doc[parts[-1]] = value


_DELETE = object()

BROKEN = [
    ("registers/1.8.0/dlms/class_id", "three", "registers.1.8.0.dlms.class_id"),
    ("registers/1.8.0/dlms/logical_name", "1-0:1.8", "registers.1.8.0.dlms.logical_name"),
    ("registers/1.8.0/provenance/confidence", "T3", "registers.1.8.0.provenance"),
    ("registers/1.8.0/provenance/evidence", "rumour", "registers.1.8.0.provenance.evidence"),
    ("registers/96.5.0/provenance/status", "expected", "registers.96.5.0.provenance"),
    ("registers/1.8.0/provenance/source", "", "registers.1.8.0.provenance"),
    ("registers/1.8.0/dlms/colour", "red", "registers.1.8.0.dlms.colour"),
    ("registers/1.8.0/dlms", _DELETE, "registers.1.8.0"),
    ("disconnect/values/7", "off", "disconnect.values.7"),
    ("disconnect", _DELETE, "disconnect"),
    ("credit_unit", "shillings", "credit_unit"),
    ("format", "villageami-profile/9", "format"),
    ("name", "Has Spaces", "name"),
    ("protocols", ["modbus"], "registers.1.8.0.dlms"),
    ("defaults/dlms/auth", "hls-sha256", "defaults.dlms.auth"),
    ("identity/vendor", _DELETE, "identity.vendor"),
]


@pytest.mark.parametrize(("path", "value", "where"), BROKEN, ids=[b[0] + "=" + str(b[1]) for b in BROKEN])
def test_broken_profile_names_the_path(tmp_path: Path, path: str, value: Any, where: str) -> None:
    doc = _base()
    _set(doc, path, value)
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    issues = check_profile_file(file)
    assert issues, "a broken profile must not pass"
    assert any(issue.path == where for issue in issues), [str(i) for i in issues]


def test_key_that_is_not_canonical_is_refused_with_a_hint(tmp_path: Path) -> None:
    doc = _base()
    doc["registers"]["96.11.1"] = doc["registers"].pop("0.0.96.3.10.255")
    file = tmp_path / "alias.yaml"
    file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    issues = check_profile_file(file)
    assert any(i.path == "registers" and "0.0.96.3.10.255" in i.message for i in issues)


def test_modbus_count_must_match_type(tmp_path: Path) -> None:
    doc = yaml.safe_load((PROFILES / "eastron-sdm120.yaml").read_text(encoding="utf-8"))
    doc["registers"]["1.8.0"]["modbus"]["count"] = 4
    file = tmp_path / "count.yaml"
    file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    issues = check_profile_file(file)
    assert [i.path for i in issues] == ["registers.1.8.0.modbus"]
    assert "count 4" in issues[0].message


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: [unclosed\n", encoding="utf-8")
    assert "not valid YAML at line" in str(check_profile_file(bad)[0])
    assert "cannot read" in str(check_profile_file(tmp_path / "missing.yaml")[0])


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match=r"no such profile; shipped: .*eastron-sdm630"):
        load_profile("no-such-meter")


def test_profile_check_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    app = build_app()
    ok = runner.invoke(app, ["profile", "check", *(str(PROFILES / f"{n}.yaml") for n in SHIPPED)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count(": ok (") == len(SHIPPED)
    doc = _base()
    doc["registers"]["1.8.0"]["provenance"]["confidence"] = "T3"
    file = tmp_path / "overclaimed.yaml"
    file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    bad = runner.invoke(app, ["profile", "check", str(file)])
    assert bad.exit_code == 1
    assert "registers.1.8.0.provenance: confidence T3 is more than evidence 'doc' supports" in bad.output
    assert "Traceback" not in bad.output


def test_profile_list_and_schema_cli() -> None:
    runner = CliRunner()
    listed = runner.invoke(build_app(), ["profile", "list"])
    assert listed.exit_code == 0
    assert "eastron-sdm630\tEastron SDM630\tmodbus" in listed.output
    schema = runner.invoke(build_app(), ["profile", "schema"])
    assert json.loads(schema.output)["title"].startswith("villageami meter profile")
