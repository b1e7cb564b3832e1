"""Meter profiles: what villageami knows about one meter model, as data (one YAML file per model).

A profile names the model (vendor, model, firmware range), gives protocol defaults (serial line settings,
Modbus unit id, DLMS addresses and authentication), and maps each VMRS key it supports to where the meter
keeps it: a Modbus register (function code, address, type, word/byte order, scale, unit), a COSEM attribute
(class id, logical name, attribute, optional scaler override) or an IEC 62056-21 data-set id (for the
clock: the time and date data sets plus an optional UTC offset). It also carries the 96.5.0 tamper-bit
table, the disconnect value mapping and the credit unit.

Every entry states where the fact comes from (``provenance``): the source document, the evidence grade
(doc / claim / interop / tested, or assumption) and a confidence T0..T3. The validators refuse an entry that
claims more than its evidence allows (for example T3 without a field test, or any grade above assumption
without a source), so confidence can only be raised together with a citation.

Profiles shipped with villageami live in ``villageami/meters/profiles/*.yaml`` and are loaded by name
(``eastron-sdm630``); any other file is loaded by path. ``profile.schema.json`` beside them is generated from
the pydantic model below (``villageami profile schema``) and a test keeps the two in step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from villageami.contract.errors import ContractError
from villageami.contract.obis import parse_obis
from villageami.contract.vmrs import (
    CREDIT_KEY,
    DISCONNECT_KEY,
    TAMPER_KEY,
    VMRS,
    ValueType,
    canonical_key,
    is_currency_code,
)
from villageami.errors import VillageAmiError
from villageami.meters.units import convertible

__all__ = [
    "Confidence",
    "DisconnectMap",
    "DlmsAddress",
    "Evidence",
    "Iec21Address",
    "ModbusAddress",
    "ModbusType",
    "Profile",
    "ProfileError",
    "ProfileIssue",
    "Protocol",
    "Provenance",
    "RegisterMap",
    "Status",
    "TamperTable",
    "check_profile_file",
    "load_profile",
    "profile_json_schema",
    "shipped_profile_names",
]

PROFILE_FORMAT = "villageami-profile/1"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class ProfileIssue(BaseModel):
    """One problem in a profile: where (dotted path inside the file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ProfileError(VillageAmiError):
    """A profile that cannot be found, parsed or validated. ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[ProfileIssue]) -> None:
        self.source = source
        self.issues = issues
        first = str(issues[0]) if issues else "invalid profile"
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"profile {source}: {first}{more}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Evidence(StrEnum):
    """How a fact is known (vocabulary of the ISV vendor study, plus 'assumption')."""

    ASSUMPTION = "assumption"  # nobody documented it; a standard default or a guess, to be checked
    CLAIM = "claim"  # marketing/brochure claim without an ICD
    DOC = "doc"  # a datasheet, manual or protocol document says so
    INTEROP = "interop"  # a third-party implementation reads it this way
    TESTED = "tested"  # read from a real meter by villageami


class Confidence(StrEnum):
    """T0 nothing / T1 datasheet / T2 independent implementation or bench / T3 field-tested."""

    T0 = "T0"
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"


class Status(StrEnum):
    VERIFIED = "verified"  # read on a real meter (T3, tested)
    EXPECTED = "expected"  # standard or documented; read path not confirmed on this model
    UNVERIFIED = "unverified"  # an assumption until a vendor ICD or a field read confirms it


_MAX_CONFIDENCE: dict[Evidence, Confidence] = {
    Evidence.ASSUMPTION: Confidence.T0,
    Evidence.CLAIM: Confidence.T1,
    Evidence.DOC: Confidence.T2,
    Evidence.INTEROP: Confidence.T2,
    Evidence.TESTED: Confidence.T3,
}


class Provenance(_Strict):
    """Where one mapping comes from. Confidence may never exceed what the evidence grade supports."""

    source: str = Field(description="The document, repository or test the fact comes from.")
    evidence: Evidence
    confidence: Confidence
    status: Status
    note: str | None = None

    @model_validator(mode="after")
    def _claims_match_evidence(self) -> Self:
        ceiling = _MAX_CONFIDENCE[self.evidence]
        if self.confidence > ceiling:
            raise ValueError(
                f"confidence {self.confidence} is more than evidence '{self.evidence}' supports "
                f"(at most {ceiling}); raise the evidence together with a citation"
            )
        if self.evidence is not Evidence.ASSUMPTION and not self.source.strip():
            raise ValueError(f"evidence '{self.evidence}' needs a source document")
        if self.status is Status.VERIFIED and self.evidence is not Evidence.TESTED:
            raise ValueError("status 'verified' needs evidence 'tested' (a read on a real meter)")
        if self.evidence is Evidence.ASSUMPTION and self.status is not Status.UNVERIFIED:
            raise ValueError("an assumption must have status 'unverified'")
        return self


class ModbusType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        return {"16": 1, "32": 2, "64": 4}[self.value[-2:]]

    @property
    def struct_code(self) -> str:
        return {
            "int16": "h",
            "uint16": "H",
            "int32": "i",
            "uint32": "I",
            "int64": "q",
            "uint64": "Q",
            "float32": "f",
            "float64": "d",
        }[self.value]

    @property
    def is_float(self) -> bool:
        return self.value.startswith("float")


Order = Literal["big", "little"]


class ModbusAddress(_Strict):
    """One value in Modbus registers. ``address`` is the 0-based PDU address sent on the wire."""

    function: Literal[3, 4] = Field(description="3 = holding registers, 4 = input registers")
    address: int = Field(ge=0, le=65535)
    type: ModbusType
    count: int | None = Field(default=None, description="Registers; implied by type, checked when given")
    word_order: Order = Field(default="big", description="big = high word first")
    byte_order: Order = Field(default="big", description="big = high byte first within each register")
    scale: float = Field(default=1, description="value = decoded number x scale")
    unit: str | None = Field(default=None, description="Unit of the value after scale, e.g. kWh, Wh, W, V")

    @model_validator(mode="after")
    def _fits(self) -> Self:
        need = self.type.registers
        if self.count is not None and self.count != need:
            raise ValueError(f"count {self.count} does not match type {self.type} ({need} registers)")
        if self.address + need - 1 > 65535:
            raise ValueError(f"address {self.address} + {need} registers runs past 65535")
        if self.scale == 0:
            raise ValueError("scale 0 would make every reading 0")
        if not math.isfinite(self.scale):
            raise ValueError(f"scale {self.scale} is not a finite number")
        return self

    @property
    def registers(self) -> int:
        return self.type.registers


class DlmsAddress(_Strict):
    """One COSEM attribute. ``scaler`` overrides the meter's scaler_unit (10**scaler); ``unit`` names the
    unit when the object has no scaler_unit (class 1 Data) or the profile overrides it."""

    class_id: int = Field(ge=1, le=65535)
    logical_name: str = Field(description="A-B:C.D.E.F, e.g. 1-0:1.8.0.255")
    attribute: int = Field(default=2, ge=1, le=127)
    scaler: int | None = Field(default=None, ge=-128, le=127)
    unit: str | None = None

    @field_validator("logical_name")
    @classmethod
    def _obis(cls, value: str) -> str:
        try:
            return parse_obis(value).to_logical_name()
        except ContractError as err:
            raise ValueError(str(err)) from None


class Iec21Address(_Strict):
    """Where a key is in the IEC 62056-21 readout: one data set by its id (``data_set: 1.8.0``), or, for the
    meter clock, the two data sets mode C meters print it as (``time: 0.9.1``, ``date: 0.9.2``) with the
    optional ``utc_offset`` of the local time they show."""

    data_set: str | None = Field(default=None, min_length=1, max_length=32, description="Data set id")
    unit: str | None = Field(default=None, description="Unit when the data set carries none")
    time: str | None = Field(
        default=None, min_length=1, max_length=32, description="Clock only: the time data set, e.g. 0.9.1"
    )
    date: str | None = Field(
        default=None, min_length=1, max_length=32, description="Clock only: the date data set, e.g. 0.9.2"
    )
    utc_offset: str | None = Field(
        default=None,
        pattern=r"^[+-][0-9]{2}:[0-5][0-9]$",
        description="Clock only: UTC offset of the local time the meter prints, e.g. +03:00. Without it the "
        "clock is published as suspect (no offset known).",
    )

    @field_validator("utc_offset")
    @classmethod
    def _offset_range(cls, value: str | None) -> str | None:
        if value is not None and abs(_offset(value)) > timedelta(hours=14):
            raise ValueError(f"utc_offset {value!r} is outside -14:00..+14:00")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        clock_fields = [n for n in ("time", "date", "utc_offset") if getattr(self, n) is not None]
        if self.data_set is not None:
            if clock_fields:
                raise ValueError(f"give data_set or time + date, not both (got {', '.join(clock_fields)})")
            return self
        if self.time is None or self.date is None:
            raise ValueError("give data_set, or time and date (a clock printed as two data sets)")
        if self.unit is not None:
            raise ValueError("unit does not apply to a clock given as time + date")
        return self

    @property
    def is_clock(self) -> bool:
        """True for the time + date form."""
        return self.data_set is None

    @property
    def utc_offset_delta(self) -> timedelta | None:
        """``utc_offset`` as a timedelta, None when not given."""
        return None if self.utc_offset is None else _offset(self.utc_offset)


def _offset(text: str) -> timedelta:
    """``+HH:MM`` / ``-HH:MM`` (format already checked by the field pattern) as a timedelta."""
    delta = timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
    return -delta if text.startswith("-") else delta


class RegisterMap(_Strict):
    """Where one VMRS key lives on the meter, per protocol, and how sure we are."""

    modbus: ModbusAddress | None = None
    dlms: DlmsAddress | None = None
    iec21: Iec21Address | None = None
    provenance: Provenance

    @model_validator(mode="after")
    def _has_address(self) -> Self:
        if self.modbus is None and self.dlms is None and self.iec21 is None:
            raise ValueError("give at least one of modbus, dlms, iec21")
        return self


class TamperTable(_Strict):
    """96.5.0 bit number (0 = least significant) -> normalised flag name."""

    bits: dict[int, str]
    provenance: Provenance

    @field_validator("bits")
    @classmethod
    def _bits(cls, value: dict[int, str]) -> dict[int, str]:
        for bit, name in value.items():
            if not 0 <= bit <= 63:
                raise ValueError(f"bit {bit} is outside 0..63")
            if re.fullmatch(r"[a-z][a-z0-9_]*", name) is None:
                raise ValueError(f"flag name {name!r} for bit {bit} must be snake_case")
        if len(set(value.values())) != len(value):
            raise ValueError("two bits map to the same flag name")
        return value


DisconnectState = Literal["connected", "disconnected", "ready_for_reconnection"]


class DisconnectMap(_Strict):
    """Meter value (integer code, or boolean for output_state) -> VMRS disconnect state."""

    values: dict[int, DisconnectState]
    provenance: Provenance


class SerialDefaults(_Strict):
    baud: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    data_bits: Literal[7, 8] = 8
    stop_bits: Literal[1, 2] = 1


class ModbusDefaults(_Strict):
    unit: int = Field(default=1, ge=0, le=247)
    max_registers: int = Field(default=125, ge=1, le=125, description="Most registers in one request")
    max_gap: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Unmapped registers a single request may span; 0 reads only contiguous runs together",
    )


class DlmsDefaults(_Strict):
    client: int = Field(default=16, ge=0, le=127, description="Client SAP (16 public, 17 LLS, 1 HLS)")
    server: int = Field(default=1, ge=0, le=16383, description="Server logical device address")
    physical: int | None = Field(default=None, ge=0, le=16383, description="HDLC lower (physical) address")
    auth: Literal["none", "low", "hls-gmac"] = "none"
    max_list: int = Field(default=10, ge=1, le=64, description="Most attributes in one GET-with-list")


class Iec21Defaults(_Strict):
    mode: Literal["C"] = "C"


class Defaults(_Strict):
    serial: SerialDefaults = SerialDefaults()
    modbus: ModbusDefaults = ModbusDefaults()
    dlms: DlmsDefaults = DlmsDefaults()
    iec21: Iec21Defaults = Iec21Defaults()


class FirmwareRange(_Strict):
    min: str | None = None
    max: str | None = None
    note: str | None = None


class Identity(_Strict):
    vendor: str = Field(min_length=1)
    model: str = Field(min_length=1)
    firmware: FirmwareRange = FirmwareRange()
    provenance: Provenance


class Protocol(StrEnum):
    MODBUS = "modbus"
    DLMS = "dlms"
    IEC21 = "iec21"


class Profile(_Strict):
    """One meter model."""

    format: Literal["villageami-profile/1"]
    name: str = Field(description="Profile name, equal to the file name without .yaml")
    description: str | None = None
    identity: Identity
    protocols: list[Protocol] = Field(min_length=1)
    defaults: Defaults = Defaults()
    registers: dict[str, RegisterMap] = Field(min_length=1)
    tamper: TamperTable | None = None
    disconnect: DisconnectMap | None = None
    credit_unit: str | None = Field(default=None, description="kWh or an ISO 4217 code; null if no credit")
    notes: list[str] = []

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if _NAME.fullmatch(value) is None:
            raise ValueError(f"name {value!r} must be lower-case letters, digits, '.', '_' or '-'")
        return value

    @field_validator("registers")
    @classmethod
    def _keys(cls, value: dict[str, RegisterMap]) -> dict[str, RegisterMap]:
        for key in value:
            if key not in VMRS:
                try:
                    hint = canonical_key(key)
                except ContractError:
                    raise ValueError(f"{key!r} is not a VMRS key") from None
                raise ValueError(f"{key!r} is not the canonical VMRS key; write {hint!r}")
        return value

    @field_validator("credit_unit")
    @classmethod
    def _credit(cls, value: str | None) -> str | None:
        if value is not None and value != "kWh" and not is_currency_code(value):
            raise ValueError(f"credit unit {value!r} must be kWh or an ISO 4217 code such as KES")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[str] = []
        for key, entry in self.registers.items():
            for proto in Protocol:
                if getattr(entry, proto.value) is not None and proto not in self.protocols:
                    problems.append(f"registers.{key}.{proto.value}: protocol {proto} is not in protocols")
            vt = VMRS[key].value_type
            textual = vt in (ValueType.DATETIME, ValueType.ENUM) and key != DISCONNECT_KEY
            if entry.modbus is not None and textual:
                problems.append(f"registers.{key}.modbus: a {vt} register cannot come from a Modbus number")
            if entry.iec21 is not None and entry.iec21.is_clock and vt is not ValueType.DATETIME:
                problems.append(f"registers.{key}.iec21: time + date make a clock; {key} is a {vt} register")
            if vt is ValueType.NUMBER:
                problems.extend(_unit_problems(key, entry))
            if entry.modbus is not None and entry.modbus.registers > self.defaults.modbus.max_registers:
                problems.append(
                    f"registers.{key}.modbus: {entry.modbus.type} needs {entry.modbus.registers} registers, "
                    f"more than defaults.modbus.max_registers {self.defaults.modbus.max_registers}"
                )
        if DISCONNECT_KEY in self.registers and self.disconnect is None:
            problems.append(f"disconnect: registers map {DISCONNECT_KEY} but no disconnect table is given")
        if CREDIT_KEY in self.registers and self.credit_unit is None:
            problems.append(f"credit_unit: registers map {CREDIT_KEY} but credit_unit is not given")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def entries_for(self, protocol: Protocol) -> dict[str, RegisterMap]:
        """The register entries that have an address for ``protocol``."""
        return {k: v for k, v in self.registers.items() if getattr(v, protocol.value) is not None}

    @property
    def has_tamper_table(self) -> bool:
        return self.tamper is not None and TAMPER_KEY in self.registers


def _unit_problems(key: str, entry: RegisterMap) -> list[str]:
    """A stated unit that cannot become the key's VMRS unit would omit every read of the key at run time."""
    target = VMRS[key].unit
    problems = []
    for proto in Protocol:
        address = getattr(entry, proto.value)
        unit = getattr(address, "unit", None)
        if unit is None or convertible(unit, target):
            continue
        if key == CREDIT_KEY and is_currency_code(unit):
            continue
        problems.append(f"registers.{key}.{proto.value}: unit {unit!r} cannot be converted to {target}")
    return problems


# --- loading ---


def _profiles_dir() -> Any:
    return resources.files("villageami.meters").joinpath("profiles")


def shipped_profile_names() -> list[str]:
    """Names of the profiles packaged with villageami."""
    return sorted(p.name.removesuffix(".yaml") for p in _profiles_dir().iterdir() if p.name.endswith(".yaml"))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _issues_from(err: ValidationError) -> list[ProfileIssue]:
    issues: list[ProfileIssue] = []
    for item in err.errors():
        # Drop pydantic's internal tags ("function-after[...]") so the path is the file's own path.
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
        message = item["msg"].removeprefix("Value error, ")
        if (
            message.startswith("registers.")
            or message.startswith("disconnect:")
            or message.startswith("credit_unit:")
        ):
            # model-level consistency errors carry their own paths, one per problem
            for part in message.split("; "):
                path, _, text = part.partition(": ")
                issues.append(ProfileIssue(path=path, message=text))
            continue
        issues.append(ProfileIssue(path=_format_loc(loc), message=message))
    return issues


def parse_profile(document: object, source: str) -> Profile:
    """Validate an already-parsed YAML/JSON document. Raises ProfileError listing every issue."""
    if not isinstance(document, Mapping):
        raise ProfileError(source, [ProfileIssue(path="", message="a profile must be a YAML mapping")])
    try:
        return Profile.model_validate(document)
    except ValidationError as err:
        raise ProfileError(source, _issues_from(err)) from None


def _read_yaml(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        raise ProfileError(source, [ProfileIssue(path="", message=f"not valid YAML at {where}")]) from None


def load_profile_file(path: str | Path) -> Profile:
    """Load a profile from a file path."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        issue = ProfileIssue(path="", message=f"cannot read: {err.strerror}")
        raise ProfileError(str(file), [issue]) from None
    profile = parse_profile(_read_yaml(text, str(file)), str(file))
    return profile


@cache
def _load_shipped(name: str) -> Profile:
    resource = _profiles_dir().joinpath(f"{name}.yaml")
    source = f"{name} (shipped)"
    profile = parse_profile(_read_yaml(resource.read_text(encoding="utf-8"), source), source)
    if profile.name != name:
        raise ProfileError(source, [ProfileIssue(path="name", message=f"{profile.name!r} != file name")])
    return profile


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``eastron-sdm630``), else a YAML file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, str) and _NAME.fullmatch(text) and not text.endswith((".yaml", ".yml")):
        if text in shipped_profile_names():
            return _load_shipped(text)
        if not Path(text).exists():
            known = ", ".join(shipped_profile_names())
            raise ProfileError(text, [ProfileIssue(path="", message=f"no such profile; shipped: {known}")])
    return load_profile_file(text)


def check_profile_file(path: str | Path) -> list[ProfileIssue]:
    """Every issue found in a profile file (empty when it is valid)."""
    try:
        load_profile_file(path)
    except ProfileError as err:
        return err.issues
    return []


def profile_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the profile format, as shipped in profiles/profile.schema.json."""
    schema = Profile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://villageami.invalid/schemas/profile-1.schema.json"
    schema["title"] = "villageami meter profile (villageami-profile/1)"
    return schema


def profile_json_schema_text() -> str:
    return json.dumps(profile_json_schema(), indent=2, sort_keys=True) + "\n"


def shipped_schema_text() -> str:
    return str(_profiles_dir().joinpath("profile.schema.json").read_text(encoding="utf-8"))
