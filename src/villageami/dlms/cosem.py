"""COSEM interface classes used by the Village Minimum Register Set: ids, attributes, value helpers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum

from villageami.dlms.axdr import CosemDateTime, Data, DataType, ln_to_str
from villageami.dlms.errors import DecodeError


class ClassId(IntEnum):
    DATA = 1
    REGISTER = 3
    EXTENDED_REGISTER = 4
    DEMAND_REGISTER = 5
    PROFILE_GENERIC = 7
    CLOCK = 8
    ASSOCIATION_LN = 15
    DISCONNECT_CONTROL = 70
    ACCOUNT = 111
    CREDIT = 112


class DataAttribute(IntEnum):
    LOGICAL_NAME = 1
    VALUE = 2


class RegisterAttribute(IntEnum):
    LOGICAL_NAME = 1
    VALUE = 2
    SCALER_UNIT = 3


class ExtendedRegisterAttribute(IntEnum):
    LOGICAL_NAME = 1
    VALUE = 2
    SCALER_UNIT = 3
    STATUS = 4
    CAPTURE_TIME = 5


class DemandRegisterAttribute(IntEnum):
    LOGICAL_NAME = 1
    CURRENT_AVERAGE_VALUE = 2
    LAST_AVERAGE_VALUE = 3
    SCALER_UNIT = 4
    STATUS = 5
    CAPTURE_TIME = 6
    START_TIME_CURRENT = 7
    PERIOD = 8
    NUMBER_OF_PERIODS = 9


def scaler_unit_attribute(class_id: int) -> int | None:
    """The attribute holding scaler_unit for a class, or None when the class has no scaler_unit.

    Register and extended register keep it in attribute 3; the demand register in attribute 4 (its
    attribute 3 is the last average value, so asking for 3 would misread a value as a scaler).
    """
    if class_id in (ClassId.REGISTER, ClassId.EXTENDED_REGISTER):
        return int(RegisterAttribute.SCALER_UNIT)
    if class_id == ClassId.DEMAND_REGISTER:
        return int(DemandRegisterAttribute.SCALER_UNIT)
    return None


class ClockAttribute(IntEnum):
    LOGICAL_NAME = 1
    TIME = 2
    TIME_ZONE = 3
    STATUS = 4
    DAYLIGHT_SAVINGS_BEGIN = 5
    DAYLIGHT_SAVINGS_END = 6
    DAYLIGHT_SAVINGS_DEVIATION = 7
    DAYLIGHT_SAVINGS_ENABLED = 8
    CLOCK_BASE = 9


class AssociationLnAttribute(IntEnum):
    LOGICAL_NAME = 1
    OBJECT_LIST = 2
    ASSOCIATED_PARTNERS_ID = 3
    APPLICATION_CONTEXT_NAME = 4
    XDLMS_CONTEXT_INFO = 5
    AUTHENTICATION_MECHANISM_NAME = 6
    SECRET = 7
    ASSOCIATION_STATUS = 8
    SECURITY_SETUP_REFERENCE = 9


class AssociationLnMethod(IntEnum):
    REPLY_TO_HLS_AUTHENTICATION = 1
    CHANGE_HLS_SECRET = 2
    ADD_OBJECT = 3
    REMOVE_OBJECT = 4


class DisconnectControlAttribute(IntEnum):
    LOGICAL_NAME = 1
    OUTPUT_STATE = 2
    CONTROL_STATE = 3
    CONTROL_MODE = 4


class DisconnectControlMethod(IntEnum):
    REMOTE_DISCONNECT = 1
    REMOTE_RECONNECT = 2


class ControlState(IntEnum):
    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2


class AccountAttribute(IntEnum):
    LOGICAL_NAME = 1
    ACCOUNT_MODE_AND_STATUS = 2
    CURRENT_CREDIT_IN_USE = 3
    CURRENT_CREDIT_STATUS = 4
    AVAILABLE_CREDIT = 5
    AMOUNT_TO_CLEAR = 6
    CLEARANCE_THRESHOLD = 7
    AGGREGATED_DEBT = 8
    CREDIT_REFERENCE_LIST = 9
    CHARGE_REFERENCE_LIST = 10
    CREDIT_CHARGE_CONFIGURATION = 11
    TOKEN_GATEWAY_CONFIGURATION = 12
    ACCOUNT_ACTIVATION_TIME = 13
    ACCOUNT_CLOSURE_TIME = 14
    CURRENCY = 15
    LOW_CREDIT_THRESHOLD = 16
    NEXT_CREDIT_AVAILABLE_THRESHOLD = 17
    MAX_PROVISION = 18
    MAX_PROVISION_PERIOD = 19


class CreditAttribute(IntEnum):
    LOGICAL_NAME = 1
    CURRENT_CREDIT_AMOUNT = 2
    CREDIT_TYPE = 3
    PRIORITY = 4
    WARNING_THRESHOLD = 5
    LIMIT = 6
    CREDIT_CONFIGURATION = 7
    CREDIT_STATUS = 8
    PRESET_CREDIT_AMOUNT = 9
    CREDIT_AVAILABLE_THRESHOLD = 10
    PERIOD = 11


class CreditMethod(IntEnum):
    UPDATE_AMOUNT = 1
    SET_AMOUNT_TO_VALUE = 2
    INVOKE_CREDIT = 3


# Well-known logical names.
CLOCK_LN = "0-0:1.0.0.255"
CURRENT_ASSOCIATION_LN = "0-0:40.0.0.255"
DISCONNECT_CONTROL_LN = "0-0:96.3.10.255"

#: Unit enumeration (IEC 62056-6-2) -> text.
UNITS: dict[int, str] = {
    1: "a",
    2: "mo",
    3: "wk",
    4: "d",
    5: "h",
    6: "min",
    7: "s",
    8: "°",
    9: "°C",
    10: "currency",
    11: "m",
    12: "m/s",
    13: "m³",
    14: "m³",
    15: "m³/h",
    16: "m³/h",
    17: "m³/d",
    18: "m³/d",
    19: "l",
    20: "kg",
    21: "N",
    22: "Nm",
    23: "Pa",
    24: "bar",
    25: "J",
    26: "J/h",
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    34: "C",
    35: "V",
    36: "V/m",
    37: "F",
    38: "Ω",
    39: "Ωm²/m",
    40: "Wb",
    41: "T",
    42: "A/m",
    43: "H",
    44: "Hz",
    45: "1/(Wh)",
    46: "1/(varh)",
    47: "1/(VAh)",
    48: "V²h",
    49: "A²h",
    50: "kg/s",
    51: "S",
    52: "K",
    53: "1/(V²h)",
    54: "1/(A²h)",
    55: "1/m³",
    56: "%",
    57: "Ah",
    60: "Wh/m³",
    61: "J/m³",
    62: "Mol %",
    63: "g/m³",
    64: "Pa s",
    65: "J/kg",
    66: "g/cm²",
    67: "atm",
    70: "dBm",
    71: "dBμV",
    72: "dB",
    254: "other",
    255: "",  # count / no unit
}


def unit_text(unit: int) -> str:
    return UNITS.get(unit, f"unit-{unit}")


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    scaler: int
    unit: int

    @property
    def unit_text(self) -> str:
        return unit_text(self.unit)

    @classmethod
    def from_data(cls, data: Data) -> ScalerUnit:
        """From the scaler_unit attribute: structure {integer scaler, enum unit}."""
        if data.type is not DataType.STRUCTURE or len(data) != 2:
            raise DecodeError(
                f"scaler_unit must be a structure of 2, got {data.type.label} {data.to_python()!r}"
            )
        scaler, unit = data[0].value, data[1].value
        if not isinstance(scaler, int) or isinstance(scaler, bool) or not isinstance(unit, int):
            raise DecodeError(f"scaler_unit has non-integer members: {data.to_python()!r}")
        return cls(scaler, unit)

    def to_data(self) -> Data:
        return Data.structure([Data(DataType.INTEGER, self.scaler), Data(DataType.ENUM, self.unit)])


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """A register reading with its scaler_unit applied: value = raw x 10^scaler."""

    raw: int | float
    scaler: int
    unit: int

    @property
    def unit_text(self) -> str:
        return unit_text(self.unit)

    @property
    def decimal(self) -> Decimal:
        """Exact scaled value (no binary floating-point rounding)."""
        return Decimal(str(self.raw)).scaleb(self.scaler)

    @property
    def value(self) -> float:
        return float(self.decimal)

    def __str__(self) -> str:
        return f"{self.decimal} {self.unit_text}".rstrip()


def register_value(value: Data, scaler_unit: Data | ScalerUnit | None) -> RegisterValue:
    """Combine a register's value attribute with its scaler_unit (None = scaler 0, no unit)."""
    raw = value.value
    if value.type not in _NUMERIC or isinstance(raw, bool):
        raise DecodeError(f"register value is {value.type.label}, not a number")
    if scaler_unit is None:
        su = ScalerUnit(0, 255)
    elif isinstance(scaler_unit, ScalerUnit):
        su = scaler_unit
    else:
        su = ScalerUnit.from_data(scaler_unit)
    return RegisterValue(raw, su.scaler, su.unit)


_NUMERIC = frozenset(
    {
        DataType.INTEGER,
        DataType.LONG,
        DataType.DOUBLE_LONG,
        DataType.LONG64,
        DataType.UNSIGNED,
        DataType.LONG_UNSIGNED,
        DataType.DOUBLE_LONG_UNSIGNED,
        DataType.LONG64_UNSIGNED,
        DataType.FLOAT32,
        DataType.FLOAT64,
        DataType.ENUM,
    }
)


def clock_time(data: Data) -> CosemDateTime:
    """Clock attribute 2 (octet-string of 12 octets) -> CosemDateTime."""
    return data.as_date_time()


# --------------------------------------------------------------------------- Association LN object list


@dataclass(frozen=True, slots=True)
class AttributeAccess:
    attribute_id: int
    access_mode: int
    access_selectors: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class MethodAccess:
    method_id: int
    access_mode: int


@dataclass(frozen=True, slots=True)
class ObjectListEntry:
    class_id: int
    version: int
    logical_name: bytes
    attribute_access: tuple[AttributeAccess, ...] = ()
    method_access: tuple[MethodAccess, ...] = ()

    @property
    def obis(self) -> str:
        return ln_to_str(self.logical_name)


def _int(data: Data, what: str) -> int:
    value = data.value
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int):
        raise DecodeError(f"object_list: {what} is {data.type.label}, expected an integer")
    return value


def decode_object_list(data: Data) -> list[ObjectListEntry]:
    """Association LN attribute 2: array of {class_id, version, logical_name, access_rights}."""
    if data.type is not DataType.ARRAY:
        raise DecodeError(f"object_list must be an array, got {data.type.label}")
    entries = []
    for item in data.value:
        if item.type is not DataType.STRUCTURE or len(item) < 3:
            raise DecodeError(f"object_list entry must be a structure of 4, got {item.type.label}")
        ln = item[2].value
        if not isinstance(ln, bytes) or len(ln) != 6:
            raise DecodeError(f"object_list entry logical name {ln!r} is not 6 octets")
        attributes: list[AttributeAccess] = []
        methods: list[MethodAccess] = []
        if len(item) >= 4 and item[3].type is DataType.STRUCTURE and len(item[3]) >= 1:
            rights = item[3]
            for attr in rights[0].value if rights[0].type is DataType.ARRAY else ():
                if attr.type is not DataType.STRUCTURE or len(attr) < 2:
                    raise DecodeError("object_list attribute access item is not a structure")
                selectors = None
                if len(attr) >= 3 and attr[2].type is DataType.ARRAY:
                    selectors = tuple(_int(s, "access selector") for s in attr[2].value)
                attributes.append(
                    AttributeAccess(_int(attr[0], "attribute id"), _int(attr[1], "access mode"), selectors)
                )
            if len(rights) >= 2 and rights[1].type is DataType.ARRAY:
                for method in rights[1].value:
                    if method.type is not DataType.STRUCTURE or len(method) < 2:
                        raise DecodeError("object_list method access item is not a structure")
                    methods.append(MethodAccess(_int(method[0], "method id"), _int(method[1], "access mode")))
        entries.append(
            ObjectListEntry(
                _int(item[0], "class id"),
                _int(item[1], "version"),
                ln,
                tuple(attributes),
                tuple(methods),
            )
        )
    return entries
