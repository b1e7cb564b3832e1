"""The simulated meter behind the DLMS simulator: object set (from a YAML/JSON file), live state, load model.

Pure and synchronous: time comes from injected clocks, so tests advance it by hand. The COSEM view
(``get`` / ``set`` / ``action`` returning A-XDR ``Data`` and DLMS result codes) is what the server's
application layer calls; ``disconnect`` / ``set_tamper`` / ``set_load`` are the control API tests use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from villageami.dlms.apdu import ActionResult, DataAccessResult
from villageami.dlms.axdr import CosemDateTime, Data, DataType, ln_from_str, ln_to_str
from villageami.dlms.errors import DecodeError, EncodeError
from villageami.errors import VillageAmiError

DEFAULT_OBJECT_SET = "dlms-prepaid-1p"

CLASS_IDS = {"data": 1, "register": 3, "clock": 8, "association_ln": 15, "disconnect_control": 70}
CLASS_VERSIONS = {1: 0, 3: 0, 8: 0, 15: 1, 70: 0}
ATTRIBUTE_COUNTS = {1: 2, 3: 3, 8: 9, 15: 9, 70: 4}
METHOD_COUNTS = {1: 0, 3: 1, 8: 6, 15: 4, 70: 2}
# Attributes a client may write: (class id, attribute id).
WRITABLE = {(8, 2), (8, 3), (70, 4)}

LIVE_SOURCES = (
    "logical_device_name",
    "serial",
    "energy_import_wh",
    "energy_export_wh",
    "active_power_w",
    "voltage_v",
    "frequency_hz",
    "status_word",
    "credit_wh",
)

# Disconnect control (class 70) control_state values.
DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION = 0, 1, 2


class ObjectSetError(VillageAmiError):
    """An object-set file that cannot be loaded; the message names the file and the problem."""


ClassName = Literal["data", "register", "clock", "association_ln", "disconnect_control"]


class ObjectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ln: str
    class_: Literal["data", "register", "clock", "association_ln", "disconnect_control"] = Field(
        alias="class"
    )
    type: str | None = None
    source: str | None = None
    value: Any = None
    scaler: int = 0
    unit: int = 255


class LoadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_w: float = 150.0
    evening_peak_w: float = 500.0
    noise: float = 0.05
    voltage_v: float = 230.0
    frequency_hz: float = 50.0


class CreditSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    initial_kwh: float = 20.0
    low_kwh: float = 2.0
    disconnect_when_exhausted: bool = True


class MeterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    manufacturer: str = "villageami"
    serial: str = "SIM00000001"
    status_bits: dict[str, int] = Field(default_factory=dict)
    load: LoadSpec = Field(default_factory=LoadSpec)
    credit: CreditSpec | None = None
    objects: list[ObjectSpec]


def load_object_set(name_or_path: str | Path = DEFAULT_OBJECT_SET) -> MeterSpec:
    """Load a bundled object set by name (``dlms-prepaid-1p``) or a YAML/JSON file by path."""
    path = Path(name_or_path)
    try:
        if path.suffix in (".yaml", ".yml", ".json") and path.exists():
            text = path.read_text(encoding="utf-8")
        else:
            bundled = resources.files("villageami.sim") / "data" / f"{name_or_path}.yaml"
            if not bundled.is_file():
                raise ObjectSetError(f"object set {str(name_or_path)!r} is neither a file nor a bundled set")
            text = bundled.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        spec = MeterSpec.model_validate(raw)
    except (OSError, yaml.YAMLError, json.JSONDecodeError, ValidationError) as exc:
        raise ObjectSetError(f"cannot load object set {str(name_or_path)!r}: {exc}") from exc
    for obj in spec.objects:
        try:
            ln_from_str(obj.ln)
        except EncodeError as exc:
            raise ObjectSetError(f"object set {spec.model!r}: {exc}") from exc
        if obj.source is not None and obj.source not in LIVE_SOURCES:
            raise ObjectSetError(f"object {obj.ln}: unknown source {obj.source!r} (known: {LIVE_SOURCES})")
        if obj.class_ in ("data", "register") and obj.type is not None:
            try:
                DataType[obj.type.upper()]
            except KeyError:
                raise ObjectSetError(f"object {obj.ln}: unknown data type {obj.type!r}") from None
    return spec


@dataclass(slots=True)
class MeterState:
    energy_import_wh: float = 0.0
    energy_export_wh: float = 0.0
    credit_wh: float | None = None
    control_state: int = CONNECTED
    control_mode: int = 1
    tamper: set[str] = field(default_factory=set)
    clock_offset: dt.timedelta = dt.timedelta(0)
    fixed_load_w: float | None = None
    time_zone_minutes: int = 0


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
}


def typed(type_name: str, value: Any) -> Data:
    """Build a Data of the named type from a plain value (integers are rounded and clamped)."""
    data_type = DataType[type_name.upper()]
    if data_type in _INT_RANGES:
        low, high = _INT_RANGES[data_type]
        return Data(data_type, max(low, min(high, round(float(value)))))
    if data_type is DataType.OCTET_STRING:
        return Data(data_type, value.encode("latin-1") if isinstance(value, str) else bytes(value))
    if data_type is DataType.VISIBLE_STRING:
        return Data(data_type, str(value))
    if data_type is DataType.BOOLEAN:
        return Data(data_type, bool(value))
    if data_type in (DataType.FLOAT32, DataType.FLOAT64):
        return Data(data_type, float(value))
    raise EncodeError(f"simulator cannot build a {data_type.label} value from {value!r}")


@dataclass(frozen=True, slots=True)
class SimObject:
    spec: ObjectSpec
    class_id: int
    ln: bytes


class SimMeter:
    """One simulated logical device. ``monotonic`` drives energy accumulation, ``wallclock`` the clock
    object; ``time_scale`` makes simulated time run faster than ``monotonic`` (demos)."""

    def __init__(
        self,
        spec: MeterSpec,
        *,
        serial: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        time_scale: float = 1.0,
    ) -> None:
        self.spec = spec
        self.serial = serial or spec.serial
        self.logical_device_name = f"{spec.manufacturer[:3].upper()}{self.serial}"[:16]
        self._monotonic = monotonic
        self._wallclock = wallclock
        self.time_scale = time_scale
        self.state = MeterState(credit_wh=spec.credit.initial_kwh * 1000 if spec.credit else None)
        self._last_tick = monotonic()
        self._sim_elapsed = 0.0
        self.objects: dict[tuple[int, bytes], SimObject] = {}
        for obj in spec.objects:
            class_id = CLASS_IDS[obj.class_]
            ln = ln_from_str(obj.ln)
            self.objects[(class_id, ln)] = SimObject(obj, class_id, ln)
        # Which client SAP / server SAP an association is for (association LN attribute 3).
        self.partners = (16, 1)

    # ----------------------------------------------------------------------------- time and load

    def now(self) -> dt.datetime:
        return self._wallclock() + self.state.clock_offset

    def power_w(self) -> float:
        """Instantaneous import power: 0 while disconnected, else the fixed load or the daily profile."""
        if self.state.control_state != CONNECTED:
            return 0.0
        if self.state.fixed_load_w is not None:
            return self.state.fixed_load_w
        load = self.spec.load
        local = self.now()
        hour = local.hour + local.minute / 60 + local.second / 3600
        evening = load.evening_peak_w * math.exp(-(((hour - 19.0) / 1.5) ** 2))
        # Deterministic noise: a hash of serial and simulated second, so two runs agree.
        digest = hashlib.blake2b(f"{self.serial}:{int(local.timestamp())}".encode(), digest_size=2).digest()
        wobble = (int.from_bytes(digest, "big") / 0xFFFF - 0.5) * 2 * load.noise
        return max(0.0, (load.base_w + evening) * (1 + wobble))

    def tick(self) -> None:
        """Accumulate energy (and spend credit) for the time since the last tick."""
        now = self._monotonic()
        elapsed = max(0.0, now - self._last_tick) * self.time_scale
        self._last_tick = now
        self._sim_elapsed += elapsed
        if elapsed <= 0:
            return
        energy = self.power_w() * elapsed / 3600.0
        state = self.state
        state.energy_import_wh += energy
        credit = self.spec.credit
        if state.credit_wh is not None and credit is not None:
            state.credit_wh -= energy
            if state.credit_wh <= 0 and credit.disconnect_when_exhausted and state.control_state == CONNECTED:
                state.control_state = DISCONNECTED

    # --------------------------------------------------------------------------- control API

    def disconnect(self) -> None:
        self.tick()
        self.state.control_state = DISCONNECTED

    def reconnect(self) -> None:
        self.tick()
        if self.state.credit_wh is not None and self.state.credit_wh <= 0:
            return  # no credit: the relay stays open
        self.state.control_state = CONNECTED

    def set_tamper(self, name: str, active: bool = True) -> None:
        if name not in self.spec.status_bits:
            raise VillageAmiError(f"unknown tamper flag {name!r}; known: {sorted(self.spec.status_bits)}")
        (self.state.tamper.add if active else self.state.tamper.discard)(name)

    def set_load(self, watts: float | None) -> None:
        """Fix the load (None returns to the daily profile)."""
        self.tick()
        self.state.fixed_load_w = watts

    def add_credit(self, kwh: float) -> None:
        self.tick()
        if self.state.credit_wh is None:
            raise VillageAmiError(f"meter {self.serial} has no credit register")
        self.state.credit_wh += kwh * 1000

    @property
    def output_state(self) -> bool:
        return self.state.control_state == CONNECTED

    def status_word(self) -> int:
        bits = self.spec.status_bits
        word = 0
        for name in self.state.tamper:
            word |= 1 << bits[name]
        flags = {"relay_disconnected": not self.output_state}
        credit = self.spec.credit
        if self.state.credit_wh is not None and credit is not None:
            flags["credit_low"] = self.state.credit_wh < credit.low_kwh * 1000
            flags["credit_exhausted"] = self.state.credit_wh <= 0
        for name, active in flags.items():
            if active and name in bits:
                word |= 1 << bits[name]
        return word

    def live(self, source: str) -> Any:
        state = self.state
        values: dict[str, Callable[[], Any]] = {
            "logical_device_name": lambda: self.logical_device_name,
            "serial": lambda: self.serial,
            "energy_import_wh": lambda: state.energy_import_wh,
            "energy_export_wh": lambda: state.energy_export_wh,
            "active_power_w": self.power_w,
            "voltage_v": lambda: self.spec.load.voltage_v,
            "frequency_hz": lambda: self.spec.load.frequency_hz,
            "status_word": self.status_word,
            "credit_wh": lambda: state.credit_wh or 0.0,
        }
        return values[source]()

    # ------------------------------------------------------------------------------ COSEM view

    def find(self, class_id: int, ln: bytes) -> SimObject | DataAccessResult:
        obj = self.objects.get((class_id, ln))
        if obj is not None:
            return obj
        if any(key_ln == ln for _, key_ln in self.objects):
            return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        return DataAccessResult.OBJECT_UNDEFINED

    def get(self, class_id: int, ln: bytes, attribute: int) -> Data | DataAccessResult:
        self.tick()
        obj = self.find(class_id, ln)
        if isinstance(obj, DataAccessResult):
            return obj
        if attribute == 1:
            return Data.octet_string(ln)
        if not 1 <= attribute <= ATTRIBUTE_COUNTS[class_id]:
            return DataAccessResult.OBJECT_UNDEFINED
        try:
            return self._get(obj, attribute)
        except (EncodeError, DecodeError):
            return DataAccessResult.OTHER_REASON

    def _value(self, spec: ObjectSpec) -> Data:
        if spec.type is None:
            raise EncodeError(f"object {spec.ln} has no type")
        raw = self.live(spec.source) if spec.source else spec.value
        if isinstance(raw, float | int) and not isinstance(raw, bool) and spec.scaler:
            raw = raw / 10**spec.scaler
        return typed(spec.type, raw)

    def _get(self, obj: SimObject, attribute: int) -> Data | DataAccessResult:
        spec, class_id = obj.spec, obj.class_id
        if class_id in (1, 3):
            if attribute == 2:
                return self._value(spec)
            return Data.structure([Data(DataType.INTEGER, spec.scaler), Data(DataType.ENUM, spec.unit)])
        if class_id == 8:
            return self._clock_attribute(attribute)
        if class_id == 70:
            if attribute == 2:
                return Data(DataType.BOOLEAN, self.output_state)
            if attribute == 3:
                return Data(DataType.ENUM, self.state.control_state)
            return Data(DataType.ENUM, self.state.control_mode)
        return self._association_attribute(attribute)

    def _clock_attribute(self, attribute: int) -> Data | DataAccessResult:
        now = self.now()
        if attribute == 2:
            return Data.date_time(CosemDateTime.from_datetime(now))
        if attribute == 3:
            return Data(DataType.LONG, self.state.time_zone_minutes)
        if attribute == 4:
            return Data(DataType.UNSIGNED, 0)
        if attribute in (5, 6):
            unspecified = CosemDateTime(None, None, None, None, None, None, None, None, None, None)
            return Data.date_time(unspecified)
        if attribute == 7:
            return Data(DataType.INTEGER, 0)
        if attribute == 8:
            return Data(DataType.BOOLEAN, False)
        return Data(DataType.ENUM, 1)  # clock_base: internal crystal

    def _association_attribute(self, attribute: int) -> Data | DataAccessResult:
        if attribute == 2:
            return self.object_list()
        if attribute == 3:
            client, server = self.partners
            return Data.structure([Data(DataType.INTEGER, client), Data(DataType.LONG_UNSIGNED, server)])
        if attribute == 4:
            return Data.octet_string(bytes.fromhex("60857405080101"))
        if attribute == 6:
            return Data.octet_string(bytes.fromhex("60857405080200"))
        if attribute == 8:
            return Data(DataType.ENUM, 2)  # associated
        return DataAccessResult.READ_WRITE_DENIED

    def object_list(self) -> Data:
        entries = []
        for obj in self.objects.values():
            class_id = obj.class_id
            attributes = [
                Data.structure(
                    [
                        Data(DataType.INTEGER, attr),
                        Data(DataType.ENUM, 3 if (class_id, attr) in WRITABLE else 1),
                        Data.null(),
                    ]
                )
                for attr in range(1, ATTRIBUTE_COUNTS[class_id] + 1)
            ]
            methods = [
                Data.structure([Data(DataType.INTEGER, method), Data(DataType.ENUM, 1)])
                for method in range(1, METHOD_COUNTS[class_id] + 1)
            ]
            entries.append(
                Data.structure(
                    [
                        Data(DataType.LONG_UNSIGNED, class_id),
                        Data(DataType.UNSIGNED, CLASS_VERSIONS[class_id]),
                        Data.octet_string(obj.ln),
                        Data.structure([Data.array(attributes), Data.array(methods)]),
                    ]
                )
            )
        return Data.array(entries)

    def set(self, class_id: int, ln: bytes, attribute: int, value: Data) -> DataAccessResult:
        self.tick()
        obj = self.find(class_id, ln)
        if isinstance(obj, DataAccessResult):
            return obj
        if (class_id, attribute) not in WRITABLE:
            return DataAccessResult.READ_WRITE_DENIED
        try:
            if class_id == 8 and attribute == 2:
                wanted = value.as_date_time().to_datetime()
                if wanted.tzinfo is None:
                    wanted = wanted.replace(tzinfo=dt.UTC)
                self.state.clock_offset = wanted - self._wallclock()
            elif class_id == 8 and attribute == 3:
                if value.type is not DataType.LONG:
                    return DataAccessResult.TYPE_UNMATCHED
                self.state.time_zone_minutes = int(value.value)
            elif class_id == 70 and attribute == 4:
                if value.type is not DataType.ENUM or not 0 <= value.value <= 6:
                    return DataAccessResult.TYPE_UNMATCHED
                self.state.control_mode = int(value.value)
        except DecodeError:
            return DataAccessResult.TYPE_UNMATCHED
        return DataAccessResult.SUCCESS

    def action(self, class_id: int, ln: bytes, method: int, parameters: Data | None) -> ActionResult:
        self.tick()
        obj = self.find(class_id, ln)
        if isinstance(obj, DataAccessResult):
            return (
                ActionResult(obj.value) if obj.value in ActionResult._value2member_map_ else ActionResult(4)
            )
        if class_id == 70 and method == 1:
            self.disconnect()
            return ActionResult.SUCCESS
        if class_id == 70 and method == 2:
            if self.state.credit_wh is not None and self.state.credit_wh <= 0:
                return ActionResult.TEMPORARY_FAILURE
            self.reconnect()
            return ActionResult.SUCCESS
        if class_id == 3 and method == 1:
            source = obj.spec.source
            if source == "energy_import_wh":
                self.state.energy_import_wh = 0.0
            elif source == "energy_export_wh":
                self.state.energy_export_wh = 0.0
            else:
                return ActionResult.READ_WRITE_DENIED
            return ActionResult.SUCCESS
        if class_id == 8 and method == 6 and parameters is not None:  # shift_time(seconds)
            if parameters.type is not DataType.LONG:
                return ActionResult.TYPE_UNMATCHED
            self.state.clock_offset += dt.timedelta(seconds=int(parameters.value))
            return ActionResult.SUCCESS
        return ActionResult.OBJECT_UNAVAILABLE if method <= METHOD_COUNTS[class_id] else ActionResult(4)

    def describe(self) -> str:
        return f"{self.spec.model} serial {self.serial}: " + ", ".join(
            ln_to_str(obj.ln) for obj in self.objects.values()
        )
