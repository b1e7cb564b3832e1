"""xDLMS / ACSE APDUs for logical-name referencing, sans-IO: dataclasses with ``encode()`` and one decoder.

API summary
-----------
- ``decode_apdu(data: bytes) -> Apdu``: any APDU below; raises only ``DecodeError``. ``strip_llc`` removes
  an IEC 8802-2 LLC header (E6 E6 00 / E6 E7 00) when present.
- Every APDU is a frozen dataclass with ``encode() -> bytes``; decode(encode(x)) == x.
- ACSE: ``Aarq``, ``Aare``, ``Rlrq``, ``Rlre``; ``user_information`` holds an ``InitiateRequest``,
  ``InitiateResponse``, ``ConfirmedServiceError`` or ``CipheredApdu`` (glo-initiate-*), or None.
- xDLMS: ``GetRequestNormal``, ``GetRequestNext``, ``GetRequestWithList``, ``GetResponseNormal``,
  ``GetResponseWithDataBlock``, ``GetResponseWithList``, ``SetRequestNormal``, ``SetResponseNormal``,
  ``ActionRequestNormal``, ``ActionResponseNormal``, ``ExceptionResponse``, ``ConfirmedServiceError``,
  ``DataNotification``, ``EventNotificationRequest``.
- Ciphered wrappers (not deciphered here, see ``villageami.dlms.security``): ``CipheredApdu``
  (glo-* / ded-* tags), ``GeneralGloCiphering``.
- Building blocks: ``InvokeIdAndPriority`` (byte 0xC1 = invoke id 1, confirmed, high priority),
  ``AttributeDescriptor(class_id, logical_name, attribute_id)`` (``logical_name`` as 6 bytes;
  ``AttributeDescriptor.of(3, "1-0:1.8.0.255", 2)``), ``MethodDescriptor``, ``AccessSelection(selector,
  parameters: Data)`` with ``RangeDescriptor`` / ``EntryDescriptor``, ``Conformance`` (IntFlag, 24 bits),
  ``DataAccessResult`` / ``ActionResult`` / ``AssociationResult`` / ``AcseServiceUser`` enums.
- GET results are ``Data`` or ``DataAccessResult``; ``BlockReassembler`` joins GET-with-datablock raw data.
- Data values come from ``villageami.dlms.axdr`` (``Data``, ``DataType``, ``CosemDateTime``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, TypeAlias, TypeVar, cast

from villageami.dlms.axdr import (
    CosemDateTime,
    Data,
    DataType,
    decode_data_at,
    decode_length,
    encode_data,
    encode_length,
    ln_from_str,
    ln_to_str,
)
from villageami.dlms.errors import DecodeError, EncodeError

# --------------------------------------------------------------------------- enums


class ApduTag(IntEnum):
    INITIATE_REQUEST = 0x01
    INITIATE_RESPONSE = 0x08
    CONFIRMED_SERVICE_ERROR = 0x0E
    DATA_NOTIFICATION = 0x0F
    GLO_INITIATE_REQUEST = 0x21
    GLO_INITIATE_RESPONSE = 0x28
    GLO_CONFIRMED_SERVICE_ERROR = 0x2E
    AARQ = 0x60
    AARE = 0x61
    RLRQ = 0x62
    RLRE = 0x63
    GET_REQUEST = 0xC0
    SET_REQUEST = 0xC1
    EVENT_NOTIFICATION_REQUEST = 0xC2
    ACTION_REQUEST = 0xC3
    GET_RESPONSE = 0xC4
    SET_RESPONSE = 0xC5
    ACTION_RESPONSE = 0xC7
    GLO_GET_REQUEST = 0xC8
    GLO_SET_REQUEST = 0xC9
    GLO_EVENT_NOTIFICATION_REQUEST = 0xCA
    GLO_ACTION_REQUEST = 0xCB
    GLO_GET_RESPONSE = 0xCC
    GLO_SET_RESPONSE = 0xCD
    GLO_ACTION_RESPONSE = 0xCF
    DED_GET_REQUEST = 0xD0
    DED_SET_REQUEST = 0xD1
    DED_EVENT_NOTIFICATION_REQUEST = 0xD2
    DED_ACTION_REQUEST = 0xD3
    DED_GET_RESPONSE = 0xD4
    DED_SET_RESPONSE = 0xD5
    DED_ACTION_RESPONSE = 0xD7
    EXCEPTION_RESPONSE = 0xD8
    GENERAL_GLO_CIPHERING = 0xDB
    GENERAL_DED_CIPHERING = 0xDC

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


#: Tags of service-specific ciphered APDUs (glo-* and ded-*), which share one layout.
CIPHERED_TAGS = frozenset(t for t in ApduTag if t.name.startswith(("GLO_", "DED_")))

#: Plain tag -> its glo-ciphered and ded-ciphered tags.
GLOBAL_CIPHERED_TAG = {
    ApduTag.INITIATE_REQUEST: ApduTag.GLO_INITIATE_REQUEST,
    ApduTag.INITIATE_RESPONSE: ApduTag.GLO_INITIATE_RESPONSE,
    ApduTag.CONFIRMED_SERVICE_ERROR: ApduTag.GLO_CONFIRMED_SERVICE_ERROR,
    ApduTag.GET_REQUEST: ApduTag.GLO_GET_REQUEST,
    ApduTag.SET_REQUEST: ApduTag.GLO_SET_REQUEST,
    ApduTag.EVENT_NOTIFICATION_REQUEST: ApduTag.GLO_EVENT_NOTIFICATION_REQUEST,
    ApduTag.ACTION_REQUEST: ApduTag.GLO_ACTION_REQUEST,
    ApduTag.GET_RESPONSE: ApduTag.GLO_GET_RESPONSE,
    ApduTag.SET_RESPONSE: ApduTag.GLO_SET_RESPONSE,
    ApduTag.ACTION_RESPONSE: ApduTag.GLO_ACTION_RESPONSE,
}
DEDICATED_CIPHERED_TAG = {
    ApduTag.GET_REQUEST: ApduTag.DED_GET_REQUEST,
    ApduTag.SET_REQUEST: ApduTag.DED_SET_REQUEST,
    ApduTag.EVENT_NOTIFICATION_REQUEST: ApduTag.DED_EVENT_NOTIFICATION_REQUEST,
    ApduTag.ACTION_REQUEST: ApduTag.DED_ACTION_REQUEST,
    ApduTag.GET_RESPONSE: ApduTag.DED_GET_RESPONSE,
    ApduTag.SET_RESPONSE: ApduTag.DED_SET_RESPONSE,
    ApduTag.ACTION_RESPONSE: ApduTag.DED_ACTION_RESPONSE,
}


class _Named(IntEnum):
    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class DataAccessResult(_Named):
    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


class ActionResult(_Named):
    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_ACTION_ABORTED = 15
    NO_LONG_ACTION_IN_PROGRESS = 16
    OTHER_REASON = 250


class AssociationResult(_Named):
    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class AcseServiceUser(_Named):
    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AP_TITLE_NOT_RECOGNIZED = 3
    CALLING_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 4
    CALLING_AE_QUALIFIER_NOT_RECOGNIZED = 5
    CALLING_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 6
    CALLED_AP_TITLE_NOT_RECOGNIZED = 7
    CALLED_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 8
    CALLED_AE_QUALIFIER_NOT_RECOGNIZED = 9
    CALLED_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 10
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class AcseServiceProvider(_Named):
    NULL = 0
    NO_REASON_GIVEN = 1
    NO_COMMON_ACSE_VERSION = 2


class AuthenticationMechanism(_Named):
    NONE = 0
    LOW = 1
    HIGH = 2
    HIGH_MD5 = 3
    HIGH_SHA1 = 4
    HIGH_GMAC = 5
    HIGH_SHA256 = 6
    HIGH_ECDSA = 7


class ApplicationContext(_Named):
    LOGICAL_NAME = 1
    SHORT_NAME = 2
    LOGICAL_NAME_WITH_CIPHERING = 3
    SHORT_NAME_WITH_CIPHERING = 4


class ReleaseRequestReason(_Named):
    NORMAL = 0
    URGENT = 1
    USER_DEFINED = 30


class ReleaseResponseReason(_Named):
    NORMAL = 0
    NOT_FINISHED = 1
    USER_DEFINED = 30


class StateError(_Named):
    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ExceptionServiceError(_Named):
    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6


class ConfirmedService(_Named):
    """Which request a ConfirmedServiceError answers."""

    INITIATE_ERROR = 1
    GET_STATUS = 2
    GET_NAME_LIST = 3
    GET_VARIABLE_ATTRIBUTE = 4
    READ = 5
    WRITE = 6
    GET_DATA_SET_ATTRIBUTE = 7
    GET_TI_ATTRIBUTE = 8
    CHANGE_SCOPE = 9
    START = 10
    STOP = 11
    RESUME = 12
    MAKE_USABLE = 13
    INITIATE_LOAD = 14
    LOAD_SEGMENT = 15
    TERMINATE_LOAD = 16
    INITIATE_UP_LOAD = 17
    UP_LOAD_SEGMENT = 18
    TERMINATE_UP_LOAD = 19


class ServiceErrorKind(_Named):
    APPLICATION_REFERENCE = 0
    HARDWARE_RESOURCE = 1
    VDE_STATE_ERROR = 2
    SERVICE = 3
    DEFINITION = 4
    ACCESS = 5
    INITIATE = 6
    LOAD_DATA_SET = 7
    CHANGE_SCOPE = 8
    TASK = 9
    OTHER = 10


#: Names of the enumerated value inside each ServiceError choice (Green Book).
SERVICE_ERROR_VALUES: dict[ServiceErrorKind, tuple[str, ...]] = {
    ServiceErrorKind.APPLICATION_REFERENCE: (
        "other",
        "time-elapsed",
        "application-unreachable",
        "application-reference-invalid",
        "application-context-unsupported",
        "provider-communication-error",
        "deciphering-error",
    ),
    ServiceErrorKind.HARDWARE_RESOURCE: (
        "other",
        "memory-unavailable",
        "processor-resource-unavailable",
        "mass-storage-unavailable",
        "other-resource-unavailable",
    ),
    ServiceErrorKind.VDE_STATE_ERROR: (
        "other",
        "no-dlms-context",
        "loading-data-set",
        "status-nochange",
        "status-inoperable",
    ),
    ServiceErrorKind.SERVICE: ("other", "pdu-size", "service-unsupported"),
    ServiceErrorKind.DEFINITION: (
        "other",
        "object-undefined",
        "object-class-inconsistent",
        "object-attribute-inconsistent",
    ),
    ServiceErrorKind.ACCESS: (
        "other",
        "scope-of-access-violated",
        "object-access-violated",
        "hardware-fault",
        "object-unavailable",
    ),
    ServiceErrorKind.INITIATE: (
        "other",
        "dlms-version-too-low",
        "incompatible-conformance",
        "pdu-size-too-short",
        "refused-by-the-vde-handler",
    ),
    ServiceErrorKind.LOAD_DATA_SET: (
        "other",
        "primitive-out-of-sequence",
        "not-loadable",
        "dataset-size-too-large",
        "not-awaited-segment",
        "interpretation-failure",
        "storage-failure",
        "data-set-not-ready",
    ),
    ServiceErrorKind.CHANGE_SCOPE: ("other",),
    ServiceErrorKind.TASK: ("other", "no-remote-control", "ti-stopped", "ti-running", "ti-unusable"),
    ServiceErrorKind.OTHER: ("other",),
}


class Conformance(IntFlag):
    """xDLMS conformance block; bit 0 of the 24-bit string is the most significant bit."""

    RESERVED_ZERO = 1 << 23
    GENERAL_PROTECTION = 1 << 22
    GENERAL_BLOCK_TRANSFER = 1 << 21
    READ = 1 << 20
    WRITE = 1 << 19
    UNCONFIRMED_WRITE = 1 << 18
    DELTA_VALUE_ENCODING = 1 << 17
    RESERVED_SEVEN = 1 << 16
    ATTRIBUTE0_SUPPORTED_WITH_SET = 1 << 15
    PRIORITY_MGMT_SUPPORTED = 1 << 14
    ATTRIBUTE0_SUPPORTED_WITH_GET = 1 << 13
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << 12
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << 11
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10
    MULTIPLE_REFERENCES = 1 << 9
    INFORMATION_REPORT = 1 << 8
    DATA_NOTIFICATION = 1 << 7
    ACCESS = 1 << 6
    PARAMETERIZED_ACCESS = 1 << 5
    GET = 1 << 4
    SET = 1 << 3
    SELECTIVE_ACCESS = 1 << 2
    EVENT_NOTIFICATION = 1 << 1
    ACTION = 1 << 0

    def names(self) -> list[str]:
        """Set bits as Green Book names, in bit-string order."""
        return [
            (flag.name or "").lower().replace("_", "-")
            for flag in sorted(Conformance, key=lambda f: -f.value)
            if self & flag
        ]


DEFAULT_CONFORMANCE = (
    Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE
    | Conformance.BLOCK_TRANSFER_WITH_ACTION
    | Conformance.MULTIPLE_REFERENCES
    | Conformance.GET
    | Conformance.SET
    | Conformance.SELECTIVE_ACCESS
    | Conformance.ACTION
)


# --------------------------------------------------------------------------- reader


class _Reader:
    """Bounds-checked cursor over an APDU; every failure is a DecodeError naming the offset."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, buf: bytes, what: str, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.what = what

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def u8(self, field_name: str) -> int:
        if self.pos >= len(self.buf):
            raise DecodeError(f"{self.what}: {field_name} missing at offset {self.pos} (data ends)")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def take(self, n: int, field_name: str) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise DecodeError(
                f"{self.what}: {field_name} needs {n} octets at offset {self.pos}, "
                f"only {self.remaining()} left"
            )
        value = self.buf[self.pos : end]
        self.pos = end
        return value

    def uint(self, n: int, field_name: str) -> int:
        return int.from_bytes(self.take(n, field_name), "big")

    def length(self) -> int:
        value, self.pos = decode_length(self.buf, self.pos)
        return value

    def data(self) -> Data:
        value, self.pos = decode_data_at(self.buf, self.pos)
        return value

    def octet_string(self, field_name: str) -> bytes:
        return self.take(self.length(), field_name)

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(
                f"{self.what}: {self.remaining()} unexpected trailing octets at offset {self.pos}"
            )


def _enum(enum_type: type[_Named], value: int, what: str) -> _Named:
    try:
        return enum_type(value)
    except ValueError:
        raise DecodeError(f"{what}: unknown {enum_type.__name__} value {value}") from None


# --------------------------------------------------------------------------- building blocks


@dataclass(frozen=True, slots=True)
class InvokeIdAndPriority:
    invoke_id: int = 1
    confirmed: bool = True
    high_priority: bool = True

    def to_byte(self) -> int:
        if not 0 <= self.invoke_id <= 15:
            raise EncodeError(f"invoke id {self.invoke_id} is outside 0..15")
        return self.invoke_id | (0x40 if self.confirmed else 0) | (0x80 if self.high_priority else 0)

    @classmethod
    def from_byte(cls, value: int) -> InvokeIdAndPriority:
        # Bits 4-5 are reserved (self-descriptive / break-on-error in newer editions): ignored.
        return cls(value & 0x0F, bool(value & 0x40), bool(value & 0x80))


def _iip_from(value: int) -> InvokeIdAndPriority:
    iip = InvokeIdAndPriority.from_byte(value)
    if iip.to_byte() != value:
        # Keep reserved bits representable so decode -> encode stays byte-exact.
        return _RawInvokeIdAndPriority(iip.invoke_id, iip.confirmed, iip.high_priority, value)
    return iip


@dataclass(frozen=True, slots=True)
class _RawInvokeIdAndPriority(InvokeIdAndPriority):
    raw: int = 0

    def to_byte(self) -> int:
        return self.raw


def _encode_descriptor(
    out: bytearray, descriptor: object, class_id: int, logical_name: bytes, item_id: int, item: str
) -> None:
    """Attribute and method descriptors share one layout: class id (2), logical name (6), item id (1)."""
    if not 0 <= class_id <= 0xFFFF or not -128 <= item_id <= 255:
        raise EncodeError(f"descriptor {descriptor} has class id or {item} id out of range")
    if len(logical_name) != 6:
        raise EncodeError(f"logical name {logical_name!r} is not 6 octets")
    out += class_id.to_bytes(2, "big")
    out += logical_name
    out.append(item_id & 0xFF)


def _read_descriptor(r: _Reader, item: str) -> tuple[int, bytes, int]:
    class_id = r.uint(2, "class id")
    ln = r.take(6, "logical name")
    return class_id, ln, r.u8(f"{item} id")


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """COSEM attribute descriptor; ``logical_name`` is 6 octets."""

    class_id: int
    logical_name: bytes
    attribute_id: int

    @classmethod
    def of(cls, class_id: int, logical_name: str | bytes, attribute_id: int) -> AttributeDescriptor:
        return cls(class_id, ln_from_str(logical_name), attribute_id)

    @property
    def obis(self) -> str:
        return ln_to_str(self.logical_name)

    def encode_into(self, out: bytearray) -> None:
        _encode_descriptor(out, self, self.class_id, self.logical_name, self.attribute_id, "attribute")

    @classmethod
    def read(cls, r: _Reader) -> AttributeDescriptor:
        return cls(*_read_descriptor(r, "attribute"))

    def __str__(self) -> str:
        return f"{self.class_id}/{self.obis}/{self.attribute_id}"


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    class_id: int
    logical_name: bytes
    method_id: int

    @classmethod
    def of(cls, class_id: int, logical_name: str | bytes, method_id: int) -> MethodDescriptor:
        return cls(class_id, ln_from_str(logical_name), method_id)

    @property
    def obis(self) -> str:
        return ln_to_str(self.logical_name)

    def encode_into(self, out: bytearray) -> None:
        _encode_descriptor(out, self, self.class_id, self.logical_name, self.method_id, "method")

    @classmethod
    def read(cls, r: _Reader) -> MethodDescriptor:
        return cls(*_read_descriptor(r, "method"))


@dataclass(frozen=True, slots=True)
class AccessSelection:
    """Selective access: selector 1 = range descriptor, 2 = entry descriptor."""

    selector: int
    parameters: Data

    def encode_into(self, out: bytearray) -> None:
        out.append(self.selector)
        out += encode_data(self.parameters)

    @classmethod
    def read(cls, r: _Reader) -> AccessSelection:
        selector = r.u8("access selector")
        return cls(selector, r.data())

    @property
    def range_descriptor(self) -> RangeDescriptor | None:
        return RangeDescriptor.from_data(self.parameters) if self.selector == 1 else None

    @property
    def entry_descriptor(self) -> EntryDescriptor | None:
        return EntryDescriptor.from_data(self.parameters) if self.selector == 2 else None


@dataclass(frozen=True, slots=True)
class CaptureObject:
    class_id: int
    logical_name: bytes
    attribute_id: int
    data_index: int

    def to_data(self) -> Data:
        return Data.structure(
            [
                Data(DataType.LONG_UNSIGNED, self.class_id),
                Data(DataType.OCTET_STRING, self.logical_name),
                Data(DataType.INTEGER, self.attribute_id),
                Data(DataType.LONG_UNSIGNED, self.data_index),
            ]
        )

    @classmethod
    def from_data(cls, data: Data) -> CaptureObject:
        if data.type is not DataType.STRUCTURE or len(data) != 4:
            raise DecodeError(f"capture object must be a structure of 4, got {data.type.label}")
        class_id, ln, attr, index = (d.value for d in data.value)
        if not (
            isinstance(class_id, int)
            and isinstance(ln, bytes)
            and len(ln) == 6
            and isinstance(attr, int)
            and isinstance(index, int)
        ):
            raise DecodeError(f"capture object has wrong element types: {data.to_python()!r}")
        return cls(class_id, ln, attr, index)


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """Selective access by range (selector 1) of a profile generic buffer."""

    restricting_object: CaptureObject
    from_value: Data
    to_value: Data
    selected_values: tuple[CaptureObject, ...] = ()

    def to_data(self) -> Data:
        return Data.structure(
            [
                self.restricting_object.to_data(),
                self.from_value,
                self.to_value,
                Data.array([c.to_data() for c in self.selected_values]),
            ]
        )

    def to_access_selection(self) -> AccessSelection:
        return AccessSelection(1, self.to_data())

    @classmethod
    def from_data(cls, data: Data) -> RangeDescriptor:
        if data.type is not DataType.STRUCTURE or len(data) != 4:
            raise DecodeError(f"range descriptor must be a structure of 4, got {data.type.label}")
        restricting, from_value, to_value, selected = data.value
        if selected.type is not DataType.ARRAY:
            raise DecodeError(f"range descriptor selected_values must be an array, got {selected.type.label}")
        return cls(
            CaptureObject.from_data(restricting),
            from_value,
            to_value,
            tuple(CaptureObject.from_data(c) for c in selected.value),
        )

    @property
    def from_date_time(self) -> CosemDateTime:
        return self.from_value.as_date_time()

    @property
    def to_date_time(self) -> CosemDateTime:
        return self.to_value.as_date_time()


@dataclass(frozen=True, slots=True)
class EntryDescriptor:
    """Selective access by entry (selector 2): rows from_entry..to_entry (1-based, 0 = last), columns
    from_selected_value..to_selected_value (0 = last)."""

    from_entry: int
    to_entry: int
    from_selected_value: int = 1
    to_selected_value: int = 0

    def to_data(self) -> Data:
        return Data.structure(
            [
                Data(DataType.DOUBLE_LONG_UNSIGNED, self.from_entry),
                Data(DataType.DOUBLE_LONG_UNSIGNED, self.to_entry),
                Data(DataType.LONG_UNSIGNED, self.from_selected_value),
                Data(DataType.LONG_UNSIGNED, self.to_selected_value),
            ]
        )

    def to_access_selection(self) -> AccessSelection:
        return AccessSelection(2, self.to_data())

    @classmethod
    def from_data(cls, data: Data) -> EntryDescriptor:
        if data.type is not DataType.STRUCTURE or len(data) != 4:
            raise DecodeError(f"entry descriptor must be a structure of 4, got {data.type.label}")
        values = [d.value for d in data.value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DecodeError(f"entry descriptor has non-integer members: {data.to_python()!r}")
        return cls(*values)


def _encode_optional_access(access: AccessSelection | None, out: bytearray) -> None:
    if access is None:
        out.append(0)
    else:
        out.append(1)
        access.encode_into(out)


def _read_optional_access(r: _Reader) -> AccessSelection | None:
    flag = r.u8("access-selection flag")
    if flag == 0:
        return None
    if flag != 1:
        raise DecodeError(f"{r.what}: access-selection flag {flag} at offset {r.pos - 1} is not 0 or 1")
    return AccessSelection.read(r)


#: Result of one GET (or return parameters of an ACTION): the data, or why it is missing.
GetResult: TypeAlias = "Data | DataAccessResult"


def _encode_get_result(result: Data | DataAccessResult, out: bytearray) -> None:
    if isinstance(result, Data):
        out.append(0)
        out += encode_data(result)
    else:
        out.append(1)
        out.append(int(result))


def _read_get_result(r: _Reader) -> Data | DataAccessResult:
    choice = r.u8("result choice")
    if choice == 0:
        return r.data()
    if choice == 1:
        return _enum(DataAccessResult, r.u8("data-access-result"), r.what)  # type: ignore[return-value]
    raise DecodeError(f"{r.what}: result choice {choice} at offset {r.pos - 1} is not 0 (data) or 1 (error)")


# --------------------------------------------------------------------------- base


@dataclass(frozen=True, slots=True)
class Apdu:
    """Base of all APDUs."""

    TAG: ClassVar[int] = -1
    NAME: ClassVar[str] = "apdu"

    def encode(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.NAME


# --------------------------------------------------------------------------- xDLMS initiate


def _encode_conformance(value: int) -> bytes:
    return b"\x5f\x1f\x04\x00" + int(value).to_bytes(3, "big")


def _read_conformance(r: _Reader) -> Conformance:
    header = r.take(4, "conformance header")
    if header[:3] != b"\x5f\x1f\x04":
        raise DecodeError(f"{r.what}: conformance block header {header.hex()} is not 5f1f04..")
    return Conformance(r.uint(3, "conformance"))


@dataclass(frozen=True, slots=True)
class InitiateRequest(Apdu):
    TAG: ClassVar[int] = ApduTag.INITIATE_REQUEST
    NAME: ClassVar[str] = "initiate-request"

    proposed_conformance: Conformance = DEFAULT_CONFORMANCE
    client_max_receive_pdu_size: int = 0xFFFF
    dedicated_key: bytes | None = None
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None
    proposed_dlms_version: int = 6

    def encode(self) -> bytes:
        out = bytearray((self.TAG,))
        if self.dedicated_key is None:
            out.append(0)
        else:
            out.append(1)
            out += encode_length(len(self.dedicated_key)) + self.dedicated_key
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        if self.proposed_quality_of_service is None:
            out.append(0)
        else:
            out += bytes((1, self.proposed_quality_of_service))
        out.append(self.proposed_dlms_version)
        out += _encode_conformance(self.proposed_conformance)
        out += self.client_max_receive_pdu_size.to_bytes(2, "big")
        return bytes(out)

    @classmethod
    def read(cls, r: _Reader) -> InitiateRequest:
        key = r.octet_string("dedicated key") if r.u8("dedicated-key flag") else None
        response_allowed = True
        if r.u8("response-allowed flag"):
            response_allowed = r.u8("response-allowed") != 0
        qos = r.u8("quality of service") if r.u8("quality-of-service flag") else None
        version = r.u8("dlms version")
        conformance = _read_conformance(r)
        max_pdu = r.uint(2, "client max receive pdu size")
        return cls(conformance, max_pdu, key, response_allowed, qos, version)


@dataclass(frozen=True, slots=True)
class InitiateResponse(Apdu):
    TAG: ClassVar[int] = ApduTag.INITIATE_RESPONSE
    NAME: ClassVar[str] = "initiate-response"

    negotiated_conformance: Conformance = DEFAULT_CONFORMANCE
    server_max_receive_pdu_size: int = 0xFFFF
    negotiated_quality_of_service: int | None = None
    negotiated_dlms_version: int = 6
    vaa_name: int = 0x0007

    def encode(self) -> bytes:
        out = bytearray((self.TAG,))
        if self.negotiated_quality_of_service is None:
            out.append(0)
        else:
            out += bytes((1, self.negotiated_quality_of_service))
        out.append(self.negotiated_dlms_version)
        out += _encode_conformance(self.negotiated_conformance)
        out += self.server_max_receive_pdu_size.to_bytes(2, "big")
        out += self.vaa_name.to_bytes(2, "big")
        return bytes(out)

    @classmethod
    def read(cls, r: _Reader) -> InitiateResponse:
        qos = r.u8("quality of service") if r.u8("quality-of-service flag") else None
        version = r.u8("dlms version")
        conformance = _read_conformance(r)
        max_pdu = r.uint(2, "server max receive pdu size")
        vaa = r.uint(2, "vaa-name")
        return cls(conformance, max_pdu, qos, version, vaa)


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError(Apdu):
    TAG: ClassVar[int] = ApduTag.CONFIRMED_SERVICE_ERROR
    NAME: ClassVar[str] = "confirmed-service-error"

    service: ConfirmedService
    error: ServiceErrorKind
    value: int

    @property
    def value_name(self) -> str:
        names = SERVICE_ERROR_VALUES.get(self.error, ())
        return names[self.value] if self.value < len(names) else str(self.value)

    def __str__(self) -> str:
        return f"{self.service.label}: {self.error.label} / {self.value_name}"

    def encode(self) -> bytes:
        return bytes((self.TAG, self.service, self.error, self.value))

    @classmethod
    def read(cls, r: _Reader) -> ConfirmedServiceError:
        service = _enum(ConfirmedService, r.u8("service"), r.what)
        error = _enum(ServiceErrorKind, r.u8("service error"), r.what)
        return cls(service, error, r.u8("service error value"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- ciphered


@dataclass(frozen=True, slots=True)
class CipheredApdu(Apdu):
    """A glo-* or ded-* ciphered APDU: ``security_control``, ``invocation_counter``, then ciphertext+tag."""

    NAME: ClassVar[str] = "ciphered"

    tag: int
    security_control: int
    invocation_counter: int
    ciphered_text: bytes

    @property
    def name(self) -> str:
        try:
            return ApduTag(self.tag).label
        except ValueError:  # pragma: no cover - only built from known tags
            return f"ciphered-0x{self.tag:02x}"

    def encode(self) -> bytes:
        body = (
            bytes((self.security_control,)) + self.invocation_counter.to_bytes(4, "big") + self.ciphered_text
        )
        return bytes((self.tag,)) + encode_length(len(body)) + body

    @classmethod
    def read(cls, r: _Reader, tag: int) -> CipheredApdu:
        n = r.length()
        if n < 5:
            raise DecodeError(
                f"{r.what}: ciphered content of {n} octets is shorter than SC + invocation counter"
            )
        body = r.take(n, "ciphered content")
        return cls(tag, body[0], int.from_bytes(body[1:5], "big"), body[5:])


@dataclass(frozen=True, slots=True)
class GeneralGloCiphering(Apdu):
    """general-glo-ciphering (0xDB) / general-ded-ciphering (0xDC): carries the sender's system title."""

    NAME: ClassVar[str] = "general-glo-ciphering"

    system_title: bytes
    security_control: int
    invocation_counter: int
    ciphered_text: bytes
    tag: int = ApduTag.GENERAL_GLO_CIPHERING

    @property
    def name(self) -> str:
        return ApduTag(self.tag).label

    def encode(self) -> bytes:
        body = (
            bytes((self.security_control,)) + self.invocation_counter.to_bytes(4, "big") + self.ciphered_text
        )
        return (
            bytes((self.tag,))
            + encode_length(len(self.system_title))
            + self.system_title
            + encode_length(len(body))
            + body
        )

    @classmethod
    def read(cls, r: _Reader, tag: int) -> GeneralGloCiphering:
        title = r.octet_string("system title")
        n = r.length()
        if n < 5:
            raise DecodeError(
                f"{r.what}: ciphered content of {n} octets is shorter than SC + invocation counter"
            )
        body = r.take(n, "ciphered content")
        return cls(title, body[0], int.from_bytes(body[1:5], "big"), body[5:], tag)


#: What ACSE user-information may carry.
UserInformation: TypeAlias = "InitiateRequest | InitiateResponse | ConfirmedServiceError | CipheredApdu"


def _decode_user_information(content: bytes, what: str) -> UserInformation:
    r = _Reader(content, what)
    if r.u8("user-information tag") != 0x04:
        raise DecodeError(f"{what}: user-information does not hold an OCTET STRING")
    inner = r.take(_ber_length(r), "user-information")
    r.end()
    apdu = decode_apdu(inner)
    if not isinstance(apdu, InitiateRequest | InitiateResponse | ConfirmedServiceError | CipheredApdu):
        raise DecodeError(f"{what}: user-information holds {apdu.name}, not an xDLMS initiate APDU")
    return apdu


# --------------------------------------------------------------------------- ACSE (BER)

_OID_PREFIX_CONTEXT = bytes.fromhex("608574050801")
_OID_PREFIX_MECHANISM = bytes.fromhex("608574050802")


def _ber_length(r: _Reader) -> int:
    first = r.u8("BER length")
    if first < 0x80:
        return first
    count = first & 0x7F
    if count == 0 or count > 3:
        raise DecodeError(f"{r.what}: unsupported BER length form 0x{first:02x} at offset {r.pos - 1}")
    return r.uint(count, "BER length")


def _ber_encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _ber_encode_length(len(content)) + content


def _ber_fields(content: bytes, what: str) -> list[tuple[int, bytes]]:
    r = _Reader(content, what)
    fields = []
    while r.remaining():
        tag = r.u8("BER tag")
        fields.append((tag, r.take(_ber_length(r), f"BER field 0x{tag:02x}")))
    return fields


def _read_oid(content: bytes, prefix: bytes, what: str) -> int:
    if len(content) < 2 or content[0] != 0x06 or content[1] != len(content) - 2:
        raise DecodeError(f"{what}: expected an OBJECT IDENTIFIER, got {content.hex()}")
    oid = content[2:]
    if len(oid) != len(prefix) + 1 or oid[:-1] != prefix:
        raise DecodeError(f"{what}: object identifier {oid.hex()} is not a DLMS UA name")
    return oid[-1]


def _read_small_int(content: bytes, what: str) -> int:
    # INTEGER inside an explicit tag: 02 01 vv
    if len(content) != 3 or content[0] != 0x02 or content[1] != 1:
        raise DecodeError(f"{what}: expected a one-octet INTEGER, got {content.hex()}")
    return content[2]


def _read_ap_title(content: bytes, what: str) -> bytes:
    if len(content) < 2 or content[0] != 0x04 or content[1] != len(content) - 2:
        raise DecodeError(f"{what}: AP title must be an OCTET STRING, got {content.hex()}")
    return content[2:]


def _read_auth_value(content: bytes, what: str) -> bytes:
    if len(content) < 2 or content[0] not in (0x80, 0x81) or content[1] != len(content) - 2:
        raise DecodeError(f"{what}: authentication value must be [0] GraphicString, got {content.hex()}")
    return content[2:]


def _acse_requirements(content: bytes, what: str) -> bool:
    if len(content) != 2:
        raise DecodeError(f"{what}: ACSE requirements bit string has {len(content)} octets, expected 2")
    return bool(content[1] & 0x80)


@dataclass(frozen=True, slots=True)
class Aarq(Apdu):
    TAG: ClassVar[int] = ApduTag.AARQ
    NAME: ClassVar[str] = "AARQ"

    application_context: int = ApplicationContext.LOGICAL_NAME
    calling_ap_title: bytes | None = None
    mechanism: AuthenticationMechanism | None = None
    calling_authentication_value: bytes | None = None
    user_information: UserInformation | None = None
    authentication_required: bool | None = None  # sender-acse-requirements; None = field absent
    protocol_version: bytes | None = None  # raw [0] bit-string content when present

    def encode(self) -> bytes:
        out = bytearray()
        if self.protocol_version is not None:
            out += _tlv(0x80, self.protocol_version)
        out += _tlv(0xA1, _tlv(0x06, _OID_PREFIX_CONTEXT + bytes((self.application_context,))))
        if self.calling_ap_title is not None:
            out += _tlv(0xA6, _tlv(0x04, self.calling_ap_title))
        auth_required = self.authentication_required
        if auth_required is None:
            auth_required = self.mechanism is not None
        if auth_required:
            out += _tlv(0x8A, b"\x07\x80")
        if self.mechanism is not None:
            out += _tlv(0x8B, _OID_PREFIX_MECHANISM + bytes((self.mechanism,)))
        if self.calling_authentication_value is not None:
            out += _tlv(0xAC, _tlv(0x80, self.calling_authentication_value))
        if self.user_information is not None:
            out += _tlv(0xBE, _tlv(0x04, self.user_information.encode()))
        return _tlv(self.TAG, bytes(out))

    @classmethod
    def read(cls, content: bytes) -> Aarq:
        what = "AARQ"
        values: dict[str, object] = {"authentication_required": False}
        for tag, body in _ber_fields(content, what):
            if tag == 0x80:
                values["protocol_version"] = body
            elif tag == 0xA1:
                values["application_context"] = _read_oid(body, _OID_PREFIX_CONTEXT, what)
            elif tag == 0xA6:
                values["calling_ap_title"] = _read_ap_title(body, what)
            elif tag == 0x8A:
                values["authentication_required"] = _acse_requirements(body, what)
            elif tag == 0x8B:
                mech = _read_oid(b"\x06" + bytes((len(body),)) + body, _OID_PREFIX_MECHANISM, what)
                values["mechanism"] = _enum(AuthenticationMechanism, mech, what)
            elif tag == 0xAC:
                values["calling_authentication_value"] = _read_auth_value(body, what)
            elif tag == 0xBE:
                values["user_information"] = _decode_user_information(body, what)
            elif tag in (0xA2, 0xA3, 0xA4, 0xA5, 0xA7, 0xA8, 0xA9, 0xBD):
                continue  # optional ACSE fields DLMS does not use
            else:
                raise DecodeError(f"{what}: unexpected field tag 0x{tag:02x}")
        if "application_context" not in values:
            raise DecodeError(f"{what}: application-context-name field (a1) missing")
        result = cls(**values)  # type: ignore[arg-type]
        if result.authentication_required == (result.mechanism is not None):
            # Canonical form: the flag is implied by the mechanism; keep None so encode() reproduces it.
            object.__setattr__(result, "authentication_required", None)
        return result


@dataclass(frozen=True, slots=True)
class Aare(Apdu):
    TAG: ClassVar[int] = ApduTag.AARE
    NAME: ClassVar[str] = "AARE"

    result: AssociationResult = AssociationResult.ACCEPTED
    diagnostic: int = 0
    diagnostic_source: int = 1  # 1 = acse-service-user, 2 = acse-service-provider
    application_context: int = ApplicationContext.LOGICAL_NAME
    responding_ap_title: bytes | None = None
    mechanism: AuthenticationMechanism | None = None
    responding_authentication_value: bytes | None = None
    user_information: UserInformation | None = None
    authentication_required: bool | None = None  # responder-acse-requirements; None = implied
    protocol_version: bytes | None = None

    @property
    def diagnostic_name(self) -> str:
        enum_type: type[_Named] = AcseServiceUser if self.diagnostic_source == 1 else AcseServiceProvider
        try:
            return enum_type(self.diagnostic).label
        except ValueError:
            return str(self.diagnostic)

    def encode(self) -> bytes:
        out = bytearray()
        if self.protocol_version is not None:
            out += _tlv(0x80, self.protocol_version)
        out += _tlv(0xA1, _tlv(0x06, _OID_PREFIX_CONTEXT + bytes((self.application_context,))))
        out += _tlv(0xA2, _tlv(0x02, bytes((self.result,))))
        out += _tlv(0xA3, _tlv(0xA0 | self.diagnostic_source, _tlv(0x02, bytes((self.diagnostic,)))))
        if self.responding_ap_title is not None:
            out += _tlv(0xA4, _tlv(0x04, self.responding_ap_title))
        auth_required = self.authentication_required
        if auth_required is None:
            auth_required = self.mechanism is not None
        if auth_required:
            out += _tlv(0x88, b"\x07\x80")
        if self.mechanism is not None:
            out += _tlv(0x89, _OID_PREFIX_MECHANISM + bytes((self.mechanism,)))
        if self.responding_authentication_value is not None:
            out += _tlv(0xAA, _tlv(0x80, self.responding_authentication_value))
        if self.user_information is not None:
            out += _tlv(0xBE, _tlv(0x04, self.user_information.encode()))
        return _tlv(self.TAG, bytes(out))

    @classmethod
    def read(cls, content: bytes) -> Aare:
        what = "AARE"
        values: dict[str, object] = {"authentication_required": False}
        seen_result = False
        for tag, body in _ber_fields(content, what):
            if tag == 0x80:
                values["protocol_version"] = body
            elif tag == 0xA1:
                values["application_context"] = _read_oid(body, _OID_PREFIX_CONTEXT, what)
            elif tag == 0xA2:
                values["result"] = _enum(AssociationResult, _read_small_int(body, what), what)
                seen_result = True
            elif tag == 0xA3:
                if len(body) < 2 or body[0] not in (0xA1, 0xA2) or body[1] != len(body) - 2:
                    raise DecodeError(f"{what}: result-source-diagnostic {body.hex()} is malformed")
                values["diagnostic_source"] = body[0] & 0x0F
                values["diagnostic"] = _read_small_int(body[2:], what)
            elif tag == 0xA4:
                values["responding_ap_title"] = _read_ap_title(body, what)
            elif tag == 0x88:
                values["authentication_required"] = _acse_requirements(body, what)
            elif tag == 0x89:
                mech = _read_oid(b"\x06" + bytes((len(body),)) + body, _OID_PREFIX_MECHANISM, what)
                values["mechanism"] = _enum(AuthenticationMechanism, mech, what)
            elif tag == 0xAA:
                values["responding_authentication_value"] = _read_auth_value(body, what)
            elif tag == 0xBE:
                values["user_information"] = _decode_user_information(body, what)
            elif tag in (0xA5, 0xA6, 0xA7, 0xBD):
                continue
            else:
                raise DecodeError(f"{what}: unexpected field tag 0x{tag:02x}")
        if not seen_result:
            raise DecodeError(f"{what}: association result field (a2) missing")
        if "application_context" not in values:
            raise DecodeError(f"{what}: application-context-name field (a1) missing")
        result = cls(**values)  # type: ignore[arg-type]
        if result.authentication_required == (result.mechanism is not None):
            object.__setattr__(result, "authentication_required", None)
        return result


_Reason = TypeVar("_Reason", bound=_Named)


def _encode_release(tag: int, reason: int | None, info: UserInformation | None) -> bytes:
    """RLRQ and RLRE share one shape: an optional reason [0] and optional user-information [30]."""
    out = bytearray()
    if reason is not None:
        out += _tlv(0x80, bytes((reason,)))
    if info is not None:
        out += _tlv(0xBE, _tlv(0x04, info.encode()))
    return _tlv(tag, bytes(out))


def _read_release(
    content: bytes, reasons: type[_Reason], name: str
) -> tuple[_Reason | None, UserInformation | None]:
    reason: _Reason | None = None
    info = None
    for tag, body in _ber_fields(content, name):
        if tag == 0x80 and len(body) == 1:
            reason = cast(_Reason, _enum(reasons, body[0], name))
        elif tag == 0xBE:
            info = _decode_user_information(body, name)
        else:
            raise DecodeError(f"{name}: unexpected field tag 0x{tag:02x} ({body.hex()})")
    return reason, info


@dataclass(frozen=True, slots=True)
class Rlrq(Apdu):
    TAG: ClassVar[int] = ApduTag.RLRQ
    NAME: ClassVar[str] = "RLRQ"

    reason: ReleaseRequestReason | None = ReleaseRequestReason.NORMAL
    user_information: UserInformation | None = None

    def encode(self) -> bytes:
        return _encode_release(self.TAG, self.reason, self.user_information)

    @classmethod
    def read(cls, content: bytes) -> Rlrq:
        reason, info = _read_release(content, ReleaseRequestReason, "RLRQ")
        return cls(reason, info)


@dataclass(frozen=True, slots=True)
class Rlre(Apdu):
    TAG: ClassVar[int] = ApduTag.RLRE
    NAME: ClassVar[str] = "RLRE"

    reason: ReleaseResponseReason | None = ReleaseResponseReason.NORMAL
    user_information: UserInformation | None = None

    def encode(self) -> bytes:
        return _encode_release(self.TAG, self.reason, self.user_information)

    @classmethod
    def read(cls, content: bytes) -> Rlre:
        reason, info = _read_release(content, ReleaseResponseReason, "RLRE")
        return cls(reason, info)


# --------------------------------------------------------------------------- GET


@dataclass(frozen=True, slots=True)
class GetRequestNormal(Apdu):
    TAG: ClassVar[int] = ApduTag.GET_REQUEST
    NAME: ClassVar[str] = "get-request-normal"

    attribute: AttributeDescriptor
    access_selection: AccessSelection | None = None
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 1, self.invoke_id_and_priority.to_byte()))
        self.attribute.encode_into(out)
        _encode_optional_access(self.access_selection, out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class GetRequestNext(Apdu):
    TAG: ClassVar[int] = ApduTag.GET_REQUEST
    NAME: ClassVar[str] = "get-request-next"

    block_number: int
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        return bytes((self.TAG, 2, self.invoke_id_and_priority.to_byte())) + self.block_number.to_bytes(
            4, "big"
        )


@dataclass(frozen=True, slots=True)
class GetRequestWithList(Apdu):
    TAG: ClassVar[int] = ApduTag.GET_REQUEST
    NAME: ClassVar[str] = "get-request-with-list"

    attributes: tuple[tuple[AttributeDescriptor, AccessSelection | None], ...]
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 3, self.invoke_id_and_priority.to_byte()))
        out += encode_length(len(self.attributes))
        for descriptor, access in self.attributes:
            descriptor.encode_into(out)
            _encode_optional_access(access, out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class GetResponseNormal(Apdu):
    TAG: ClassVar[int] = ApduTag.GET_RESPONSE
    NAME: ClassVar[str] = "get-response-normal"

    result: Data | DataAccessResult
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 1, self.invoke_id_and_priority.to_byte()))
        _encode_get_result(self.result, out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class GetResponseWithDataBlock(Apdu):
    """One block of a long GET: ``raw_data`` is a slice of the A-XDR encoding, or the error that ended it."""

    TAG: ClassVar[int] = ApduTag.GET_RESPONSE
    NAME: ClassVar[str] = "get-response-with-datablock"

    last_block: bool
    block_number: int
    raw_data: bytes | DataAccessResult
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 2, self.invoke_id_and_priority.to_byte(), 1 if self.last_block else 0))
        out += self.block_number.to_bytes(4, "big")
        if isinstance(self.raw_data, bytes):
            out.append(0)
            out += encode_length(len(self.raw_data))
            out += self.raw_data
        else:
            out += bytes((1, self.raw_data))
        return bytes(out)


@dataclass(frozen=True, slots=True)
class GetResponseWithList(Apdu):
    TAG: ClassVar[int] = ApduTag.GET_RESPONSE
    NAME: ClassVar[str] = "get-response-with-list"

    results: tuple[Data | DataAccessResult, ...]
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 3, self.invoke_id_and_priority.to_byte()))
        out += encode_length(len(self.results))
        for result in self.results:
            _encode_get_result(result, out)
        return bytes(out)


def decode_get_with_list_results(raw: bytes) -> tuple[Data | DataAccessResult, ...]:
    """Decode reassembled block data of a GET-with-list (SEQUENCE OF Get-Data-Result)."""
    r = _Reader(raw, "get-with-list block data")
    results = tuple(_read_get_result(r) for _ in range(_bounded_count(r)))
    r.end()
    return results


class BlockReassembler:
    """Joins GET-with-datablock blocks; checks numbering; ``add`` returns True after the last block."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.last_block_number = 0
        self.complete = False

    def add(self, block: GetResponseWithDataBlock) -> bool:
        if self.complete:
            raise DecodeError(f"block {block.block_number} arrived after the last block")
        if isinstance(block.raw_data, DataAccessResult):
            raise DecodeError(
                f"block transfer ended with {block.raw_data.label} at block {block.block_number}"
            )
        if block.block_number != self.last_block_number + 1:
            raise DecodeError(
                f"block {block.block_number} arrived, expected block {self.last_block_number + 1}"
            )
        self._parts.append(block.raw_data)
        self.last_block_number = block.block_number
        self.complete = block.last_block
        return self.complete

    @property
    def raw_data(self) -> bytes:
        return b"".join(self._parts)

    def data(self) -> Data:
        """The reassembled value (for a GET-normal transfer)."""
        if not self.complete:
            raise DecodeError("block transfer is not complete")
        value, end = decode_data_at(self.raw_data, 0)
        if end != len(self.raw_data):
            raise DecodeError(f"{len(self.raw_data) - end} trailing octets after reassembled data")
        return value


def _bounded_count(r: _Reader) -> int:
    count = r.length()
    if count > r.remaining():
        raise DecodeError(f"{r.what}: list of {count} items cannot fit in {r.remaining()} octets")
    return count


def _decode_get_request(r: _Reader) -> Apdu:
    kind = r.u8("get-request choice")
    iip = _iip_from(r.u8("invoke-id-and-priority"))
    if kind == 1:
        descriptor = AttributeDescriptor.read(r)
        return GetRequestNormal(descriptor, _read_optional_access(r), iip)
    if kind == 2:
        return GetRequestNext(r.uint(4, "block number"), iip)
    if kind == 3:
        items = []
        for _ in range(_bounded_count(r)):
            descriptor = AttributeDescriptor.read(r)
            items.append((descriptor, _read_optional_access(r)))
        return GetRequestWithList(tuple(items), iip)
    raise DecodeError(f"get-request: unknown choice {kind}")


def _decode_get_response(r: _Reader) -> Apdu:
    kind = r.u8("get-response choice")
    iip = _iip_from(r.u8("invoke-id-and-priority"))
    if kind == 1:
        return GetResponseNormal(_read_get_result(r), iip)
    if kind == 2:
        last = r.u8("last-block")
        number = r.uint(4, "block number")
        choice = r.u8("raw-data choice")
        raw: bytes | DataAccessResult
        if choice == 0:
            raw = r.octet_string("raw-data")
        elif choice == 1:
            raw = _enum(DataAccessResult, r.u8("data-access-result"), r.what)  # type: ignore[assignment]
        else:
            raise DecodeError(f"get-response-with-datablock: result choice {choice} is not 0 or 1")
        return GetResponseWithDataBlock(last != 0, number, raw, iip)
    if kind == 3:
        results = tuple(_read_get_result(r) for _ in range(_bounded_count(r)))
        return GetResponseWithList(results, iip)
    raise DecodeError(f"get-response: unknown choice {kind}")


# --------------------------------------------------------------------------- SET


@dataclass(frozen=True, slots=True)
class SetRequestNormal(Apdu):
    TAG: ClassVar[int] = ApduTag.SET_REQUEST
    NAME: ClassVar[str] = "set-request-normal"

    attribute: AttributeDescriptor
    value: Data
    access_selection: AccessSelection | None = None
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 1, self.invoke_id_and_priority.to_byte()))
        self.attribute.encode_into(out)
        _encode_optional_access(self.access_selection, out)
        out += encode_data(self.value)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SetResponseNormal(Apdu):
    TAG: ClassVar[int] = ApduTag.SET_RESPONSE
    NAME: ClassVar[str] = "set-response-normal"

    result: DataAccessResult
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        return bytes((self.TAG, 1, self.invoke_id_and_priority.to_byte(), self.result))


# --------------------------------------------------------------------------- ACTION


@dataclass(frozen=True, slots=True)
class ActionRequestNormal(Apdu):
    TAG: ClassVar[int] = ApduTag.ACTION_REQUEST
    NAME: ClassVar[str] = "action-request-normal"

    method: MethodDescriptor
    parameters: Data | None = None
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 1, self.invoke_id_and_priority.to_byte()))
        self.method.encode_into(out)
        if self.parameters is None:
            out.append(0)
        else:
            out.append(1)
            out += encode_data(self.parameters)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class ActionResponseNormal(Apdu):
    TAG: ClassVar[int] = ApduTag.ACTION_RESPONSE
    NAME: ClassVar[str] = "action-response-normal"

    result: ActionResult
    return_parameters: Data | DataAccessResult | None = None
    invoke_id_and_priority: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)

    def encode(self) -> bytes:
        out = bytearray((self.TAG, 1, self.invoke_id_and_priority.to_byte(), self.result))
        if self.return_parameters is None:
            out.append(0)
        else:
            out.append(1)
            _encode_get_result(self.return_parameters, out)
        return bytes(out)


# --------------------------------------------------------------------------- errors and notifications


@dataclass(frozen=True, slots=True)
class ExceptionResponse(Apdu):
    TAG: ClassVar[int] = ApduTag.EXCEPTION_RESPONSE
    NAME: ClassVar[str] = "exception-response"

    state_error: StateError
    service_error: ExceptionServiceError
    invocation_counter: int | None = None  # only with invocation-counter-error

    def __str__(self) -> str:
        return f"exception-response: {self.state_error.label} / {self.service_error.label}"

    def encode(self) -> bytes:
        out = bytes((self.TAG, self.state_error, self.service_error))
        if self.invocation_counter is not None:
            out += self.invocation_counter.to_bytes(4, "big")
        return out


@dataclass(frozen=True, slots=True)
class DataNotification(Apdu):
    """Push data-notification. ``date_time_tagged`` keeps the non-standard ``09 0c`` form some meters send."""

    TAG: ClassVar[int] = ApduTag.DATA_NOTIFICATION
    NAME: ClassVar[str] = "data-notification"

    long_invoke_id_and_priority: int
    body: Data
    date_time: CosemDateTime | None = None
    date_time_tagged: bool = False

    @property
    def invoke_id(self) -> int:
        return self.long_invoke_id_and_priority & 0x00FFFFFF

    @property
    def confirmed(self) -> bool:
        return bool(self.long_invoke_id_and_priority & 0x40000000)

    @property
    def high_priority(self) -> bool:
        return bool(self.long_invoke_id_and_priority & 0x80000000)

    def encode(self) -> bytes:
        out = bytearray((self.TAG,))
        out += self.long_invoke_id_and_priority.to_bytes(4, "big")
        if self.date_time is None:
            out.append(0)
        else:
            if self.date_time_tagged:
                out.append(DataType.OCTET_STRING)
            out.append(12)
            out += self.date_time.encode_raw()
        out += encode_data(self.body)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class EventNotificationRequest(Apdu):
    TAG: ClassVar[int] = ApduTag.EVENT_NOTIFICATION_REQUEST
    NAME: ClassVar[str] = "event-notification-request"

    attribute: AttributeDescriptor
    value: Data
    time: CosemDateTime | None = None

    def encode(self) -> bytes:
        out = bytearray((self.TAG,))
        if self.time is None:
            out.append(0)
        else:
            out += b"\x01\x0c" + self.time.encode_raw()
        self.attribute.encode_into(out)
        out += encode_data(self.value)
        return bytes(out)


def _decode_exception(r: _Reader) -> ExceptionResponse:
    state = _enum(StateError, r.u8("state-error"), r.what)
    service = _enum(ExceptionServiceError, r.u8("service-error"), r.what)
    counter = None
    if service is ExceptionServiceError.INVOCATION_COUNTER_ERROR:
        counter = r.uint(4, "invocation counter")
    return ExceptionResponse(state, service, counter)  # type: ignore[arg-type]


def _decode_data_notification(r: _Reader) -> DataNotification:
    long_iip = r.uint(4, "long-invoke-id-and-priority")
    n = r.u8("date-time length")
    tagged = False
    if n == DataType.OCTET_STRING and r.remaining() >= 13 and r.buf[r.pos] == 12:
        # Some meters (Kaifa) send the date-time as a tagged octet-string: 09 0c <12 octets>.
        tagged = True
        n = r.u8("date-time length")
    date_time = None
    if n == 12:
        date_time = CosemDateTime.decode_raw(r.take(12, "date-time"))
    elif n != 0:
        raise DecodeError(f"data-notification: date-time of {n} octets (expected 0 or 12)")
    return DataNotification(long_iip, r.data(), date_time, tagged)


def _decode_event_notification(r: _Reader) -> EventNotificationRequest:
    time = None
    flag = r.u8("time flag")
    if flag == 1:
        if r.u8("time length") != 12:
            raise DecodeError("event-notification-request: time is not 12 octets")
        time = CosemDateTime.decode_raw(r.take(12, "time"))
    elif flag != 0:
        raise DecodeError(f"event-notification-request: time flag {flag} is not 0 or 1")
    descriptor = AttributeDescriptor.read(r)
    return EventNotificationRequest(descriptor, r.data(), time)


# --------------------------------------------------------------------------- decode_apdu

LLC_HEADERS = (b"\xe6\xe6\x00", b"\xe6\xe7\x00")


def strip_llc(data: bytes) -> bytes:
    """Remove an LLC header (E6 E6 00 command / E6 E7 00 response) if the data starts with one."""
    return data[3:] if data[:3] in LLC_HEADERS else data


def _decode(r: _Reader) -> Apdu:
    tag = r.u8("APDU tag")
    if tag == ApduTag.GET_REQUEST:
        return _decode_get_request(r)
    if tag == ApduTag.GET_RESPONSE:
        return _decode_get_response(r)
    if tag == ApduTag.SET_REQUEST:
        kind = r.u8("set-request choice")
        iip = _iip_from(r.u8("invoke-id-and-priority"))
        if kind != 1:
            raise DecodeError(f"set-request choice {kind} is not supported (only set-request-normal)")
        descriptor = AttributeDescriptor.read(r)
        access = _read_optional_access(r)
        return SetRequestNormal(descriptor, r.data(), access, iip)
    if tag == ApduTag.SET_RESPONSE:
        kind = r.u8("set-response choice")
        iip = _iip_from(r.u8("invoke-id-and-priority"))
        if kind != 1:
            raise DecodeError(f"set-response choice {kind} is not supported (only set-response-normal)")
        return SetResponseNormal(_enum(DataAccessResult, r.u8("result"), r.what), iip)  # type: ignore[arg-type]
    if tag == ApduTag.ACTION_REQUEST:
        kind = r.u8("action-request choice")
        iip = _iip_from(r.u8("invoke-id-and-priority"))
        if kind != 1:
            raise DecodeError(f"action-request choice {kind} is not supported (only action-request-normal)")
        method = MethodDescriptor.read(r)
        flag = r.u8("parameters flag")
        if flag not in (0, 1):
            raise DecodeError(f"action-request: parameters flag {flag} is not 0 or 1")
        return ActionRequestNormal(method, r.data() if flag else None, iip)
    if tag == ApduTag.ACTION_RESPONSE:
        kind = r.u8("action-response choice")
        iip = _iip_from(r.u8("invoke-id-and-priority"))
        if kind != 1:
            raise DecodeError(f"action-response choice {kind} is not supported (only action-response-normal)")
        result = _enum(ActionResult, r.u8("action-result"), r.what)
        flag = r.u8("return-parameters flag")
        if flag not in (0, 1):
            raise DecodeError(f"action-response: return-parameters flag {flag} is not 0 or 1")
        return ActionResponseNormal(result, _read_get_result(r) if flag else None, iip)  # type: ignore[arg-type]
    if tag in (ApduTag.AARQ, ApduTag.AARE, ApduTag.RLRQ, ApduTag.RLRE):
        content = r.take(_ber_length(r), f"{ApduTag(tag).name} content")
        if tag == ApduTag.AARQ:
            return Aarq.read(content)
        if tag == ApduTag.AARE:
            return Aare.read(content)
        if tag == ApduTag.RLRQ:
            return Rlrq.read(content)
        return Rlre.read(content)
    if tag == ApduTag.INITIATE_REQUEST:
        return InitiateRequest.read(r)
    if tag == ApduTag.INITIATE_RESPONSE:
        return InitiateResponse.read(r)
    if tag == ApduTag.CONFIRMED_SERVICE_ERROR:
        return ConfirmedServiceError.read(r)
    if tag == ApduTag.EXCEPTION_RESPONSE:
        return _decode_exception(r)
    if tag == ApduTag.DATA_NOTIFICATION:
        return _decode_data_notification(r)
    if tag == ApduTag.EVENT_NOTIFICATION_REQUEST:
        return _decode_event_notification(r)
    if tag in (ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING):
        return GeneralGloCiphering.read(r, tag)
    if tag in _CIPHERED_TAG_VALUES:
        return CipheredApdu.read(r, tag)
    raise DecodeError(f"unknown or unsupported APDU tag 0x{tag:02x}")


_CIPHERED_TAG_VALUES = frozenset(int(t) for t in CIPHERED_TAGS)


def decode_apdu(data: bytes) -> Apdu:
    """Decode one complete APDU (no LLC header). Raises DecodeError for anything malformed."""
    data = bytes(data)
    if not data:
        raise DecodeError("empty APDU")
    r = _Reader(data, "APDU")
    try:
        apdu = _decode(r)
    except DecodeError:
        raise
    except (struct.error, ValueError, IndexError, TypeError, OverflowError) as exc:
        # Defensive: the readers bounds-check, but a decoder must never leak a non-DecodeError.
        raise DecodeError(f"malformed APDU {data[:16].hex()}...: {exc}") from None
    r.what = apdu.name
    r.end()
    return apdu
