"""DlmsClient / ClientSession against an in-memory ApduLink that plays a meter.

Unciphered sessions use canned APDU bytes (mostly the corpus vectors). Ciphered / HLS-GMAC sessions use a
small fake meter that holds its own keys and counters, so a wrong client key really fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

from villageami.dlms.apdu import (
    Aare,
    Aarq,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    AssociationResult,
    AttributeDescriptor,
    AuthenticationMechanism,
    CipheredApdu,
    ConfirmedService,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    DataNotification,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    InitiateRequest,
    InitiateResponse,
    Rlre,
    Rlrq,
    ServiceErrorKind,
    decode_apdu,
)
from villageami.dlms.axdr import CosemDateTime, Data, DataType
from villageami.dlms.client import Authentication, ClientSession, ClientSettings, DlmsClient
from villageami.dlms.errors import (
    AssociationError,
    AssociationRejected,
    AuthenticationFailure,
    CipheringError,
    DecodeError,
    DlmsError,
    LinkTimeout,
    ServiceError,
)
from villageami.dlms.security import SecurityContext, hls_gmac_response, verify_hls_gmac_response

H = bytes.fromhex
AARE_ACCEPTED = H("6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f0400001e1d04c80007")
AARE_NO_MULTIPLE_REFERENCES = H(
    "6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000101d00800007"
)
RLRE = H("6303800100")


class ScriptedLink:
    """An ApduLink that checks each request against a script and returns the canned answer."""

    def __init__(self, script: list[tuple[bytes | None, bytes | Exception]]) -> None:
        self.script = list(script)
        self.sent: list[bytes] = []
        self.timeouts: list[float] = []
        self.opened = self.closed = 0

    async def open(self) -> None:
        self.opened += 1

    async def exchange(self, apdu: bytes, timeout: float) -> bytes:
        self.sent.append(apdu)
        self.timeouts.append(timeout)
        assert self.script, f"unexpected request {apdu.hex()}"
        expected, answer = self.script.pop(0)
        if expected is not None:
            assert apdu.hex() == expected.hex()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed += 1


def run(coro_factory: Callable[[], object]) -> object:
    return asyncio.run(coro_factory())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- unciphered sessions


def test_associate_without_security_then_release() -> None:
    # Our default AARQ is byte-identical to corpus vector 24 (dlms-cosem's default AARQ).
    link = ScriptedLink(
        [
            (H("601da109060760857405080101be10040e01000000065f1f0400001e1dffff"), AARE_ACCEPTED),
            (H("6203800100"), RLRE),
        ]
    )
    client = DlmsClient(link, ClientSettings(response_timeout=3.5))

    async def scenario() -> None:
        await client.associate()
        assert client.session.associated
        assert client.session.server_max_pdu_size == 1224
        assert client.session.negotiated_conformance == Conformance(0x001E1D)
        await client.release()

    run(scenario)
    assert link.opened == 1 and link.closed == 1 and link.timeouts == [3.5, 3.5] and not link.script


def test_lls_aarq_matches_the_gosem_vector() -> None:
    # Corpus vectors 78 (AARQ, LLS password "00000001") and 77 (AARE, server max PDU 128).
    link = ScriptedLink(
        [
            (
                H(
                    "6036a1090607608574050801018a0207808b0760857405080201ac0a80083030303030303031"
                    "be10040e01000000065f1f040000181f0100"
                ),
                H("6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000101d00800007"),
            )
        ]
    )
    settings = ClientSettings(
        authentication=Authentication.LOW,
        password=b"00000001",
        conformance=Conformance(0x00181F),
        max_pdu_size=256,
    )
    client = DlmsClient(link, settings)
    run(client.associate)
    assert client.session.server_max_pdu_size == 128


def _associated(
    script: list[tuple[bytes | None, bytes | Exception]], aare: bytes = AARE_ACCEPTED
) -> tuple[DlmsClient, ScriptedLink]:
    link = ScriptedLink([(None, aare), *script])
    client = DlmsClient(link, ClientSettings())
    run(client.associate)
    return client, link


def test_read_register_with_list_applies_scaler_unit() -> None:
    # value double-long-unsigned 2272138, scaler_unit {+1, Wh}
    client, _ = _associated(
        [
            (
                H("c003c102" + "000301000108" + "00ff0200" + "000301000108" + "00ff0300"),
                H("c403c102" + "00" + "060022ab8a" + "00" + "02020f01161e"),
            )
        ]
    )
    value = run(lambda: client.read_register("1-0:1.8.0.255"))
    assert value.decimal == Decimal(22721380) and value.unit_text == "Wh"  # type: ignore[attr-defined]
    assert value.raw == 2272138 and value.scaler == 1  # type: ignore[attr-defined]


def test_read_register_without_multiple_references_uses_two_gets() -> None:
    client, _ = _associated(
        [
            (H("c001c100030100200700ff0200"), H("c401c1001208e4")),
            (H("c001c200030100200700ff0300"), H("c401c20002020fff1623")),
        ],
        aare=AARE_NO_MULTIPLE_REFERENCES,
    )
    value = run(lambda: client.read_register("1-0:32.7.0.255"))
    assert value.decimal == Decimal("227.6") and value.unit_text == "V"  # type: ignore[attr-defined]


def test_get_with_list_keeps_per_item_errors() -> None:
    client, _ = _associated([(None, H("c403c10200090c07e50603040e091700ffc4000104"))])
    results = run(lambda: client.get_with_list([(8, "0-0:1.0.0.255", 2), (1, "0-0:96.1.0.255", 2)]))
    assert isinstance(results, list)
    clock, missing = results
    assert isinstance(clock, Data) and clock.as_date_time().year == 2021
    assert missing is DataAccessResult.OBJECT_UNDEFINED
    request = decode_apdu(client.link.sent[-1])  # type: ignore[attr-defined]
    assert isinstance(request, GetRequestWithList) and len(request.attributes) == 2


def test_read_clock() -> None:
    client, _ = _associated([(H("c001c100080000010000ff0200"), H("c401c100090c07e7020f0311371500800000"))])
    value = run(client.read_clock)
    assert value == CosemDateTime(2023, 2, 15, 3, 17, 55, 21, 0, None, 0)


def test_disconnect_and_reconnect_actions() -> None:
    # remote_disconnect request is corpus vector 60; answers are vector 61.
    client, link = _associated(
        [
            (H("c301c10046000060030aff01010f00"), H("c701c10000")),
            (H("c301c20046000060030aff02010f00"), H("c701c20000")),
        ]
    )

    async def scenario() -> None:
        await client.remote_disconnect()
        await client.remote_reconnect()

    run(scenario)
    assert not link.script


def test_action_refused_names_the_result() -> None:
    client, _ = _associated([(None, H("c701c10300"))])
    with pytest.raises(ServiceError, match="read-write-denied"):
        run(client.remote_disconnect)


def test_block_transfer_get_next_loop() -> None:
    # Corpus vectors 70-72: three blocks of a profile buffer, client asks for blocks 2 and 3.
    client, link = _associated(
        [
            (H("c001c100070100630100ff0200"), H("c402c10000000001000c010506000000010600000002")),
            (H("c002c100000001"), H("c402c10000000002000a06000000030600000004")),
            (H("c002c100000002"), H("c402c1010000000300050600000005")),
        ]
    )
    value = run(lambda: client.get((7, "1-0:99.1.0.255", 2)))
    assert isinstance(value, Data) and value.to_python() == [1, 2, 3, 4, 5]
    assert not link.script


def test_block_transfer_aborted() -> None:
    client, _ = _associated(
        [(None, H("c402c10000000001000c010506000000010600000002")), (None, H("c402c101000000020101"))]
    )
    with pytest.raises(ServiceError, match=r"block transfer aborted .* hardware-fault"):
        run(lambda: client.get((7, "1-0:99.1.0.255", 2)))


def test_get_error_is_a_service_error_with_the_result_name() -> None:
    client, _ = _associated([(None, H("c401c10102"))])
    with pytest.raises(ServiceError, match="temporary-failure"):
        run(lambda: client.get((8, "0-0:1.0.0.255", 3)))


def test_exception_response_is_a_service_error() -> None:
    client, _ = _associated([(None, H("d80102"))])
    with pytest.raises(ServiceError, match="service-not-allowed / service-not-supported"):
        run(lambda: client.set((3, "0-1:94.35.11.255", 2), Data(DataType.DOUBLE_LONG_UNSIGNED, 10000)))


def test_set_request_bytes_and_refusal() -> None:
    # Corpus vector 75 (set-request) answered with set-response read-write-denied.
    client, _ = _associated([(H("c101c1000300015e230bff02000600002710"), H("c501c103"))])
    with pytest.raises(ServiceError, match="SET refused: read-write-denied"):
        run(lambda: client.set((3, "0-1:94.35.11.255", 2), Data(DataType.DOUBLE_LONG_UNSIGNED, 10000)))


def test_wrong_invoke_id_is_rejected() -> None:
    client, _ = _associated([(None, H("c401c5001208e4"))])
    with pytest.raises(DecodeError, match="invoke id 5 does not match request invoke id 1"):
        run(lambda: client.get((1, "0-0:96.1.0.255", 2)))


def test_link_timeout_propagates() -> None:
    client, _ = _associated([(None, LinkTimeout("no answer within 10 s"))])
    with pytest.raises(LinkTimeout):
        run(lambda: client.get((1, "0-0:96.1.0.255", 2)))


def test_request_before_association_is_refused() -> None:
    client = DlmsClient(ScriptedLink([]), ClientSettings())
    with pytest.raises(AssociationError, match="not associated"):
        run(lambda: client.get((1, "0-0:96.1.0.255", 2)))


@pytest.mark.parametrize(
    ("aare_hex", "error", "message"),
    [
        (  # corpus vector 26
            "6129a109060760857405080101a203020101a305a103020102be10040e0800065f1f040000501f01f40007",
            AssociationRejected,
            "rejected-permanent, diagnostic application-context-name-not-supported",
        ),
        (  # corpus vector 27: xDLMS initiate error inside the AARE
            "611fa109060760857405080101a203020101a305a103020101be0604040e010601",
            AssociationRejected,
            "dlms-version-too-low",
        ),
        (  # corpus vector 80: wrong LLS password
            "6117a109060760857405080101a203020101a305a10302010d",
            AuthenticationFailure,
            "authentication-failure",
        ),
        ("c401c10102", AssociationError, "expected an AARE, got get-response-normal"),
        ("d80102", AssociationRejected, "service-not-allowed"),
    ],
)
def test_rejected_association(aare_hex: str, error: type[Exception], message: str) -> None:
    client = DlmsClient(ScriptedLink([(None, H(aare_hex))]), ClientSettings())
    with pytest.raises(error, match=message):
        run(client.associate)
    assert not client.session.associated


def test_settings_validation() -> None:
    with pytest.raises(AssociationError, match="needs a password"):
        ClientSession(ClientSettings(authentication=Authentication.LOW))
    with pytest.raises(AssociationError, match="system title"):
        ClientSession(ClientSettings(authentication=Authentication.HLS_GMAC))


# --------------------------------------------------------------------------- HLS-GMAC and ciphering

CLIENT_TITLE = b"VAMI0001"
SERVER_TITLE = b"MTR00042"
EK = bytes(range(16))
AK = bytes(range(16, 32))
STOC = b"server-challenge"


class FakeMeter:
    """A fake HLS-GMAC meter with its own keys: answers AARQ, pass 3, GET and RLRQ."""

    def __init__(self, *, encryption_key: bytes = EK, ciphered: bool = True, replay: bool = False) -> None:
        self.ciphered = ciphered
        self.replay = replay
        self.security = SecurityContext(
            system_title=SERVER_TITLE,
            encryption_key=encryption_key,
            authentication_key=AK,
            invocation_counter=500,
            peer_system_title=CLIENT_TITLE,
        )
        self.challenge_ctos: bytes | None = None
        self.last_answer: bytes | None = None
        self.requests: list[object] = []

    def _unwrap(self, data: bytes) -> object:
        apdu = decode_apdu(data)
        if isinstance(apdu, CipheredApdu):
            return decode_apdu(self.security.unprotect(apdu))
        return apdu

    def _wrap(self, apdu: object) -> bytes:
        plain = apdu.encode()  # type: ignore[attr-defined]
        return self.security.protect(plain) if self.ciphered else plain

    def __call__(self, data: bytes) -> bytes:
        if self.replay and self.last_answer is not None and data[0] != 0x62:
            return self.last_answer
        request = self._unwrap(data)
        self.requests.append(request)
        if isinstance(request, Aarq):
            assert request.mechanism is AuthenticationMechanism.HIGH_GMAC
            assert request.calling_ap_title == CLIENT_TITLE
            self.challenge_ctos = request.calling_authentication_value
            info = request.user_information
            if isinstance(info, CipheredApdu):
                try:
                    info = decode_apdu(self.security.unprotect(info))  # type: ignore[assignment]
                except CipheringError:
                    error = ConfirmedServiceError(
                        ConfirmedService.INITIATE_ERROR, ServiceErrorKind.APPLICATION_REFERENCE, 6
                    )
                    return Aare(AssociationResult.REJECTED_PERMANENT, 1, user_information=error).encode()
            assert isinstance(info, InitiateRequest)
            response = InitiateResponse(info.proposed_conformance, 1024)
            user_information = (
                decode_apdu(self.security.protect(response.encode())) if self.ciphered else response
            )
            answer = Aare(
                AssociationResult.ACCEPTED,
                14,  # authentication-required
                application_context=3 if self.ciphered else 1,
                responding_ap_title=SERVER_TITLE,
                mechanism=AuthenticationMechanism.HIGH_GMAC,
                responding_authentication_value=STOC,
                user_information=user_information,  # type: ignore[arg-type]
            ).encode()
        elif isinstance(request, ActionRequestNormal):
            assert request.parameters is not None
            verify_hls_gmac_response(
                request.parameters.value,
                STOC,
                system_title=CLIENT_TITLE,
                encryption_key=self.security.encryption_key,
                authentication_key=AK,
            )
            assert self.challenge_ctos is not None
            f_ctos = hls_gmac_response(
                self.challenge_ctos,
                system_title=SERVER_TITLE,
                invocation_counter=self.security.next_invocation_counter(),
                encryption_key=self.security.encryption_key,
                authentication_key=AK,
            )
            answer = self._wrap(
                ActionResponseNormal(
                    ActionResult.SUCCESS, Data.octet_string(f_ctos), request.invoke_id_and_priority
                )
            )
        elif isinstance(request, GetRequestNormal):
            answer = self._wrap(
                GetResponseNormal(Data(DataType.DOUBLE_LONG_UNSIGNED, 5009), request.invoke_id_and_priority)
            )
        elif isinstance(request, Rlrq):
            answer = Rlre().encode()
        else:  # pragma: no cover - the tests send nothing else
            raise AssertionError(f"unexpected {request}")
        self.last_answer = answer
        return answer


class MeterLink(ScriptedLink):
    def __init__(self, meter: Callable[[bytes], bytes]) -> None:
        super().__init__([])
        self.meter = meter

    async def exchange(self, apdu: bytes, timeout: float) -> bytes:
        self.sent.append(apdu)
        return self.meter(apdu)


def _hls_settings(
    *, ciphering: bool = True, encryption_key: bytes = EK, counter: int = 100
) -> ClientSettings:
    return ClientSettings(
        authentication=Authentication.HLS_GMAC,
        system_title=CLIENT_TITLE,
        encryption_key=encryption_key,
        authentication_key=AK,
        invocation_counter=counter,
        ciphering=ciphering,
    )


@pytest.mark.parametrize("ciphering", [True, False])
def test_hls_gmac_association_and_get(ciphering: bool) -> None:
    meter = FakeMeter(ciphered=ciphering)
    link = MeterLink(meter)
    client = DlmsClient(link, _hls_settings(ciphering=ciphering))

    async def scenario() -> Data:
        async with client:
            return await client.get((1, "0-0:43.1.0.255", 2))

    value = run(scenario)
    assert isinstance(value, Data) and value.value == 5009
    aarq = decode_apdu(link.sent[0])
    assert isinstance(aarq, Aarq) and aarq.application_context == (3 if ciphering else 1)
    assert isinstance(aarq.user_information, CipheredApdu if ciphering else InitiateRequest)
    # Every ciphered request after the AARQ travels as a glo-* APDU with a fresh counter.
    if ciphering:
        assert [b[0] for b in link.sent[1:3]] == [0xCB, 0xC8]
        # counters used: 100 (glo-initiate), 101 (f(StoC)), 102 (action), 103 (get), 104 (RLRQ info)
        assert client.invocation_counter == 105
        assert client.session.server_invocation_counter == meter.security.invocation_counter - 1
    else:
        assert [b[0] for b in link.sent[1:3]] == [0xC3, 0xC0]
        assert client.invocation_counter == 101  # only f(StoC) used a counter


def test_hls_gmac_wrong_key_fails_authentication() -> None:
    # Unciphered HLS: the meter answers f(CtoS) made with another key; the client must not accept it.
    meter = FakeMeter(ciphered=False)

    def wrong_key_meter(data: bytes) -> bytes:
        request = decode_apdu(data)
        if isinstance(request, ActionRequestNormal):
            f_ctos = hls_gmac_response(
                meter.challenge_ctos or b"",
                system_title=SERVER_TITLE,
                invocation_counter=1,
                encryption_key=bytes(16),
                authentication_key=AK,
            )
            return ActionResponseNormal(
                ActionResult.SUCCESS, Data.octet_string(f_ctos), request.invoke_id_and_priority
            ).encode()
        return meter(data)

    client = DlmsClient(MeterLink(wrong_key_meter), _hls_settings(ciphering=False))
    with pytest.raises(AuthenticationFailure, match="f\\(CtoS\\) does not verify"):
        run(client.associate)
    assert not client.session.associated


def test_ciphered_session_with_wrong_key_fails() -> None:
    meter = FakeMeter(ciphered=True)
    client = DlmsClient(MeterLink(meter), _hls_settings(encryption_key=bytes(16)))
    # The meter cannot decipher our glo-initiate-request and rejects the association.
    with pytest.raises(AssociationRejected, match="application-reference / deciphering-error"):
        run(client.associate)


def test_client_rejects_ciphered_answer_made_with_another_key() -> None:
    good = FakeMeter(ciphered=True)
    client = DlmsClient(MeterLink(good), _hls_settings())
    run(client.associate)
    good.security.encryption_key = bytes(16)  # the meter now ciphers with a key the client does not hold
    with pytest.raises(CipheringError, match="does not verify"):
        run(lambda: client.get((1, "0-0:43.1.0.255", 2)))


def test_replayed_server_counter_is_rejected() -> None:
    meter = FakeMeter(ciphered=True)
    client = DlmsClient(MeterLink(meter), _hls_settings())
    run(client.associate)
    run(lambda: client.get((1, "0-0:43.1.0.255", 2)))
    meter.replay = True  # the next answer repeats the previous one (same invocation counter)
    with pytest.raises(CipheringError, match="replayed or stale invocation counter"):
        run(lambda: client.get((1, "0-0:43.1.0.255", 2)))


def test_unciphered_answer_in_ciphered_session_is_rejected() -> None:
    meter = FakeMeter(ciphered=True)
    client = DlmsClient(MeterLink(meter), _hls_settings())
    run(client.associate)
    meter.ciphered = False
    with pytest.raises(CipheringError, match="unciphered get-response-normal"):
        run(lambda: client.get((1, "0-0:43.1.0.255", 2)))


def test_invocation_counter_resumes_from_settings() -> None:
    meter = FakeMeter(ciphered=True)
    client = DlmsClient(MeterLink(meter), _hls_settings(counter=7000))
    run(client.associate)
    aarq = decode_apdu(client.link.sent[0])  # type: ignore[attr-defined]
    assert isinstance(aarq, Aarq) and isinstance(aarq.user_information, CipheredApdu)
    assert aarq.user_information.invocation_counter == 7000
    assert client.invocation_counter == 7003


def test_hls_pass3_refused_is_authentication_failure() -> None:
    def meter(data: bytes) -> bytes:
        request = decode_apdu(data)
        if isinstance(request, Aarq):
            return Aare(
                AssociationResult.ACCEPTED,
                14,
                responding_ap_title=SERVER_TITLE,
                mechanism=AuthenticationMechanism.HIGH_GMAC,
                responding_authentication_value=STOC,
                user_information=InitiateResponse(),
            ).encode()
        assert isinstance(request, ActionRequestNormal)
        return ActionResponseNormal(
            ActionResult.READ_WRITE_DENIED, None, request.invoke_id_and_priority
        ).encode()

    client = DlmsClient(MeterLink(meter), _hls_settings(ciphering=False))
    with pytest.raises(AuthenticationFailure, match="rejected our f\\(StoC\\) \\(read-write-denied\\)"):
        run(client.associate)


def test_descriptor_helper_accepts_tuples() -> None:
    assert AttributeDescriptor.of(3, "1-0:1.8.0.255", 2).obis == "1-0:1.8.0.255"


def test_get_with_list_answered_in_blocks() -> None:
    # The with-list result (count + Get-Data-Results) split over two datablocks.
    raw = bytes.fromhex("02" + "00" + "1208e4" + "00" + "02020fff1623")
    client, link = _associated(
        [
            (None, H("c402c100000000010004") + raw[:4]),
            (H("c002c100000001"), H("c402c101000000020008") + raw[4:]),
        ]
    )
    results = run(lambda: client.get_with_list([(3, "1-0:32.7.0.255", 2), (3, "1-0:32.7.0.255", 3)]))
    assert results == [
        Data(DataType.LONG_UNSIGNED, 2276),
        Data.structure([Data(DataType.INTEGER, -1), Data(DataType.ENUM, 35)]),
    ]
    assert not link.script


def test_get_with_list_count_mismatch_is_rejected() -> None:
    client, _ = _associated([(None, H("c403c101001208e4"))])
    with pytest.raises(DecodeError, match="asked for 2 attributes, got 1 results"):
        run(lambda: client.get_with_list([(3, "1-0:32.7.0.255", 2), (3, "1-0:32.7.0.255", 3)]))


def test_server_counter_resumes_from_settings() -> None:
    meter = FakeMeter(ciphered=True)  # its counter starts at 500
    settings = ClientSettings(
        authentication=Authentication.HLS_GMAC,
        system_title=CLIENT_TITLE,
        encryption_key=EK,
        authentication_key=AK,
        server_invocation_counter=900,  # seen in an earlier session: 500 is a replay
    )
    client = DlmsClient(MeterLink(meter), settings)
    with pytest.raises(CipheringError, match="replayed or stale invocation counter 500"):
        run(client.associate)


class ReceivingLink(ScriptedLink):
    """A link that can also wait for an APDU without sending one."""

    async def receive(self, timeout: float) -> bytes:
        _, answer = self.script.pop(0)
        assert isinstance(answer, bytes)
        return answer


def test_notification_before_the_response_is_kept() -> None:
    # Corpus vector 82: a push arrives while the client waits for its GET response (gosem test).
    push = H("0f00000461000101020509060009190900ff12004612046e120a451204fe")
    link = ReceivingLink([(None, AARE_ACCEPTED), (None, push), (None, H("c401c1001208e4"))])
    client = DlmsClient(link, ClientSettings())

    async def scenario() -> Data:
        await client.associate()
        return await client.get((3, "1-0:32.7.0.255", 2))

    value = run(scenario)
    assert value == Data(DataType.LONG_UNSIGNED, 2276)
    (notification,) = client.session.notifications
    assert notification.name == "data-notification"


def test_notification_on_a_link_that_cannot_wait() -> None:
    push = H("0f00000461000101020509060009190900ff12004612046e120a451204fe")
    client, _ = _associated([(None, push)])
    with pytest.raises(DlmsError, match="notification arrived instead of the response"):
        run(lambda: client.get((3, "1-0:32.7.0.255", 2)))


def test_ciphered_push_before_ciphered_response() -> None:
    meter = FakeMeter(ciphered=True)
    queued: list[bytes] = []

    class PushingLink(MeterLink):
        async def exchange(self, apdu: bytes, timeout: float) -> bytes:
            if apdu[0] != 0xC8:  # not a glo-get-request
                return await super().exchange(apdu, timeout)
            # The meter ciphers a push (counter n) and then the GET answer (counter n + 1).
            push = DataNotification(0x40000001, Data(DataType.UNSIGNED, 7)).encode()
            ciphered_push = meter.security.protect(push, general=True)
            queued.append(await super().exchange(apdu, timeout))
            return ciphered_push

        async def receive(self, timeout: float) -> bytes:
            return queued.pop(0)

    client = DlmsClient(PushingLink(meter), _hls_settings())
    run(client.associate)
    value = run(lambda: client.get((1, "0-0:43.1.0.255", 2)))
    assert isinstance(value, Data) and value.value == 5009
    (push,) = client.session.notifications
    assert isinstance(push, DataNotification) and push.body.value == 7
    assert client.server_invocation_counter == meter.security.invocation_counter - 1
