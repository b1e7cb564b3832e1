"""APDUs: hypothesis round trips of every APDU type, hand-checked encodings, decode errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_axdr import data_values, date_times

from villageami.dlms.apdu import (
    CIPHERED_TAGS,
    Aare,
    Aarq,
    AccessSelection,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    Apdu,
    ApduTag,
    AssociationResult,
    AttributeDescriptor,
    AuthenticationMechanism,
    BlockReassembler,
    CaptureObject,
    CipheredApdu,
    ConfirmedService,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    DataNotification,
    EntryDescriptor,
    EventNotificationRequest,
    ExceptionResponse,
    ExceptionServiceError,
    GeneralGloCiphering,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDataBlock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    InvokeIdAndPriority,
    MethodDescriptor,
    RangeDescriptor,
    ReleaseRequestReason,
    ReleaseResponseReason,
    Rlre,
    Rlrq,
    ServiceErrorKind,
    SetRequestNormal,
    SetResponseNormal,
    StateError,
    decode_apdu,
    decode_get_with_list_results,
)
from villageami.dlms.axdr import CosemDateTime, Data, DataType
from villageami.dlms.errors import DecodeError

# --------------------------------------------------------------------------- strategies

iips = st.builds(InvokeIdAndPriority, st.integers(0, 15), st.booleans(), st.booleans())
lns = st.binary(min_size=6, max_size=6)
attributes = st.builds(AttributeDescriptor, st.integers(0, 0xFFFF), lns, st.integers(0, 255))
methods = st.builds(MethodDescriptor, st.integers(0, 0xFFFF), lns, st.integers(0, 255))
accesses = st.one_of(st.none(), st.builds(AccessSelection, st.integers(0, 255), data_values))
dars = st.sampled_from(list(DataAccessResult))
get_results = st.one_of(data_values, dars)
conformances = st.builds(Conformance, st.integers(0, 2**24 - 1))
initiate_requests = st.builds(
    InitiateRequest,
    conformances,
    st.integers(0, 0xFFFF),
    st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 255)),
    st.integers(0, 255),
)
initiate_responses = st.builds(
    InitiateResponse,
    conformances,
    st.integers(0, 0xFFFF),
    st.one_of(st.none(), st.integers(0, 255)),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
)
ciphered = st.builds(
    CipheredApdu,
    st.sampled_from(sorted(int(t) for t in CIPHERED_TAGS)),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=200),
)
service_errors = st.builds(
    ConfirmedServiceError,
    st.sampled_from(list(ConfirmedService)),
    st.sampled_from(list(ServiceErrorKind)),
    st.integers(0, 255),
)
user_information = st.one_of(st.none(), initiate_requests, initiate_responses, ciphered, service_errors)
titles = st.one_of(st.none(), st.binary(min_size=8, max_size=8))
mechanisms = st.one_of(st.none(), st.sampled_from(list(AuthenticationMechanism)))
auth_values = st.one_of(st.none(), st.binary(min_size=1, max_size=64))

apdus: st.SearchStrategy[Apdu] = st.one_of(
    st.builds(GetRequestNormal, attributes, accesses, iips),
    st.builds(GetRequestNext, st.integers(0, 2**32 - 1), iips),
    st.builds(
        GetRequestWithList,
        st.lists(st.tuples(attributes, accesses), min_size=1, max_size=10).map(tuple),
        iips,
    ),
    st.builds(GetResponseNormal, get_results, iips),
    st.builds(
        GetResponseWithDataBlock,
        st.booleans(),
        st.integers(0, 2**32 - 1),
        st.one_of(st.binary(max_size=300), dars),
        iips,
    ),
    st.builds(GetResponseWithList, st.lists(get_results, max_size=10).map(tuple), iips),
    st.builds(SetRequestNormal, attributes, data_values, accesses, iips),
    st.builds(SetResponseNormal, dars, iips),
    st.builds(ActionRequestNormal, methods, st.one_of(st.none(), data_values), iips),
    st.builds(
        ActionResponseNormal, st.sampled_from(list(ActionResult)), st.one_of(st.none(), get_results), iips
    ),
    st.builds(
        ExceptionResponse, st.sampled_from(list(StateError)), st.sampled_from(list(ExceptionServiceError)[:5])
    ),
    st.builds(
        ExceptionResponse,
        st.sampled_from(list(StateError)),
        st.just(ExceptionServiceError.INVOCATION_COUNTER_ERROR),
        st.integers(0, 2**32 - 1),
    ),
    service_errors,
    st.builds(
        DataNotification,
        st.integers(0, 2**32 - 1),
        data_values,
        st.one_of(st.none(), date_times),
        st.booleans(),
    ).filter(lambda n: n.date_time is not None or not n.date_time_tagged),
    st.builds(EventNotificationRequest, attributes, data_values, st.one_of(st.none(), date_times)),
    initiate_requests,
    initiate_responses,
    ciphered,
    st.builds(
        GeneralGloCiphering,
        st.binary(min_size=8, max_size=8),
        st.integers(0, 255),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=100),
        st.sampled_from([ApduTag.GENERAL_GLO_CIPHERING, ApduTag.GENERAL_DED_CIPHERING]),
    ),
    st.builds(
        Aarq,
        st.integers(1, 4),
        titles,
        mechanisms,
        auth_values,
        user_information,
        st.sampled_from([None, True, False]),
    ),
    st.builds(
        Aare,
        st.sampled_from(list(AssociationResult)),
        st.integers(0, 14),
        st.sampled_from([1, 2]),
        st.integers(1, 4),
        titles,
        mechanisms,
        auth_values,
        user_information,
    ),
    st.builds(Rlrq, st.one_of(st.none(), st.sampled_from(list(ReleaseRequestReason))), user_information),
    st.builds(Rlre, st.one_of(st.none(), st.sampled_from(list(ReleaseResponseReason))), user_information),
)


def _canonical(apdu: Apdu) -> Apdu:
    """An explicit authentication flag equal to the implied one decodes as None (implied)."""
    if isinstance(apdu, Aarq | Aare) and apdu.authentication_required == (apdu.mechanism is not None):
        object.__setattr__(apdu, "authentication_required", None)
    return apdu


@settings(max_examples=600, deadline=None)
@given(apdus)
def test_round_trip_every_apdu(apdu: Apdu) -> None:
    encoded = apdu.encode()
    decoded = decode_apdu(encoded)
    assert decoded == _canonical(apdu)
    assert decoded.encode() == encoded


# --------------------------------------------------------------------------- hand-checked encodings


def test_get_request_normal_layout() -> None:
    request = GetRequestNormal(AttributeDescriptor.of(3, "1-0:1.8.0.255", 2), None, InvokeIdAndPriority(1))
    assert request.encode().hex() == "c001c1" + "0003" + "0100010800ff" + "02" + "00"


def test_aarq_for_lls_layout() -> None:
    aarq = Aarq(
        mechanism=AuthenticationMechanism.LOW,
        calling_authentication_value=b"12345678",
        user_information=InitiateRequest(Conformance(0x007E1F), 1200),
    )
    assert aarq.encode().hex() == (
        "6036a1090607608574050801018a0207808b0760857405080201ac0a80083132333435363738"
        "be10040e01000000065f1f0400007e1f04b0"
    )


def test_conformance_names_in_bit_order() -> None:
    assert Conformance(0x00501F).names() == [
        "priority-mgmt-supported",
        "block-transfer-with-get-or-read",
        "get",
        "set",
        "selective-access",
        "event-notification",
        "action",
    ]


def test_range_descriptor_builds_selector_one() -> None:
    clock = CaptureObject(8, bytes([0, 0, 1, 0, 0, 255]), 2, 0)
    start = CosemDateTime(2020, 1, 1, 3, 10, 0, 0, 0, 0, 0)
    end = CosemDateTime(2020, 1, 1, 3, 11, 0, 0, 0, 0, 0)
    descriptor = RangeDescriptor(clock, Data.date_time(start), Data.date_time(end))
    request = GetRequestNormal(
        AttributeDescriptor.of(7, "1-0:99.1.0.255", 2),
        descriptor.to_access_selection(),
        InvokeIdAndPriority(1),
    )
    # Same bytes as corpus vector 73 (Circutor/gosem).
    assert request.encode().hex() == (
        "c001c100070100630100ff0201010204020412000809060000010000ff0f02120000090c07e40101030a000000000000"
        "090c07e40101030b0000000000000100"
    )
    decoded = decode_apdu(request.encode())
    assert isinstance(decoded, GetRequestNormal) and decoded.access_selection is not None
    assert decoded.access_selection.range_descriptor == descriptor
    assert descriptor.from_date_time == start


def test_block_reassembler_checks_order() -> None:
    reassembler = BlockReassembler()
    assert not reassembler.add(GetResponseWithDataBlock(False, 1, b"\x01\x02"))
    with pytest.raises(DecodeError, match="expected block 2"):
        reassembler.add(GetResponseWithDataBlock(False, 3, b""))
    with pytest.raises(DecodeError, match="not complete"):
        reassembler.data()
    with pytest.raises(DecodeError, match="hardware-fault"):
        reassembler.add(GetResponseWithDataBlock(True, 2, DataAccessResult.HARDWARE_FAULT))


def test_with_list_block_data() -> None:
    raw = bytes.fromhex("02" + "00" + "1203e8" + "01" + "04")
    assert decode_get_with_list_results(raw) == (
        Data(DataType.LONG_UNSIGNED, 1000),
        DataAccessResult.OBJECT_UNDEFINED,
    )


def test_data_notification_flags() -> None:
    notification = DataNotification(0xC0000005, Data.null())
    assert notification.invoke_id == 5 and notification.confirmed and notification.high_priority


def test_unknown_iip_bits_are_kept() -> None:
    raw = bytes.fromhex("c001f1000100002b0100ff0200")  # bits 4-5 set
    apdu = decode_apdu(raw)
    assert isinstance(apdu, GetRequestNormal) and apdu.invoke_id_and_priority.invoke_id == 1
    assert apdu.encode() == raw


@pytest.mark.parametrize(
    ("hex_", "message"),
    [
        ("", "empty APDU"),
        ("ff", "unknown or unsupported APDU tag 0xff"),
        ("c0", "get-request choice missing"),
        ("c004c1", "unknown choice 4"),
        ("c001c1000100", "logical name needs 6 octets"),
        ("c001c1000100002b0100ff0202", "access-selection flag 2"),
        ("c401c10500", "result choice 5"),
        ("c401c100060000139100", "trailing"),
        ("c101c1", "class id needs 2 octets at offset 3"),
        ("c102c1", "only set-request-normal"),
        ("6103a10100", "OBJECT IDENTIFIER"),
        ("6105a203020100", "application-context-name field"),
        ("6105a1090607608574", "BER field 0xa1 needs 9 octets"),
        ("610ba109060760857405080101", "result field"),
        ("6003ff0100", "unexpected field tag 0xff"),
        ("d80909", "unknown StateError value 9"),
        ("0f0000000105", "date-time of 5 octets"),
        ("21023000", "shorter than SC"),
        ("60", "BER length missing"),
    ],
)
def test_decode_errors_name_the_problem(hex_: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_apdu(bytes.fromhex(hex_))


def test_entry_descriptor_round_trip() -> None:
    access = EntryDescriptor(1, 24).to_access_selection()
    request = GetRequestNormal(AttributeDescriptor.of(7, "1-0:99.1.0.255", 2), access)
    raw = request.encode()
    assert raw.hex().endswith("0102" + "0204" + "0600000001" + "0600000018" + "120001" + "120000")
    decoded = decode_apdu(raw)
    assert isinstance(decoded, GetRequestNormal) and decoded.access_selection is not None
    assert decoded.access_selection.entry_descriptor == EntryDescriptor(1, 24, 1, 0)
    assert decoded.access_selection.range_descriptor is None
    with pytest.raises(DecodeError, match="structure of 4"):
        EntryDescriptor.from_data(Data(DataType.UNSIGNED, 1))
