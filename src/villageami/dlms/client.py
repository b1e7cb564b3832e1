"""DLMS/COSEM client: a sans-IO ``ClientSession`` and an asyncio ``DlmsClient`` over an ``ApduLink``.

``ClientSession`` turns requests into APDU bytes and server APDU bytes into results or exceptions. It
owns invoke ids, association state (AARQ/AARE, HLS-GMAC passes 3 and 4), ciphering and the GET.next
block-transfer loop; it never does I/O. ``DlmsClient`` only moves bytes through the link, each
exchange bounded by ``ClientSettings.response_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self, TypeVar

from villageami.dlms.apdu import (
    DEFAULT_CONFORMANCE,
    Aare,
    Aarq,
    AccessSelection,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    Apdu,
    ApduTag,
    ApplicationContext,
    AssociationResult,
    AttributeDescriptor,
    AuthenticationMechanism,
    BlockReassembler,
    CipheredApdu,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    DataNotification,
    EventNotificationRequest,
    ExceptionResponse,
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
    Rlre,
    Rlrq,
    SetRequestNormal,
    SetResponseNormal,
    decode_apdu,
    decode_get_with_list_results,
)
from villageami.dlms.axdr import CosemDateTime, Data, DataType, decode_data, ln_from_str
from villageami.dlms.cosem import (
    CLOCK_LN,
    CURRENT_ASSOCIATION_LN,
    DISCONNECT_CONTROL_LN,
    AssociationLnMethod,
    ClassId,
    ClockAttribute,
    DisconnectControlMethod,
    RegisterAttribute,
    RegisterValue,
    register_value,
)
from villageami.dlms.errors import (
    AssociationError,
    AssociationRejected,
    AuthenticationFailure,
    CipheringError,
    DecodeError,
    DlmsError,
    LinkError,
    LinkTimeout,
    ServiceError,
)
from villageami.dlms.link import ApduLink
from villageami.dlms.security import SecurityContext, hls_gmac_response, verify_hls_gmac_response

_T = TypeVar("_T")

MAX_KEPT_NOTIFICATIONS = 256

# What one GET block costs of ClientSettings.max_block_transfer_octets besides its data (a round trip).
BLOCK_OVERHEAD = 128


class StaleResponse(DecodeError):
    """A response that answers another request (its invoke id is not the pending one): the link is out of
    step, e.g. a meter sent one answer twice. ``DlmsClient`` drops the link when it sees one."""


class Authentication(StrEnum):
    NONE = "none"
    LOW = "low"
    HLS_GMAC = "hls-gmac"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach and associate with one logical device.

    ``server_logical_address`` / ``server_physical_address`` / ``client_sap`` are used by the link layer
    (HDLC addresses, wrapper ports). ``invocation_counter`` is the next counter to use; persist
    ``DlmsClient.invocation_counter`` after a session and pass it back here (likewise
    ``DlmsClient.server_invocation_counter`` as ``server_invocation_counter``, the replay guard).
    """

    client_sap: int = 16
    server_logical_address: int = 1
    server_physical_address: int | None = None
    authentication: Authentication = Authentication.NONE
    password: bytes | None = None
    system_title: bytes | None = None
    encryption_key: bytes | None = None
    authentication_key: bytes | None = None
    dedicated_key: bytes | None = None
    invocation_counter: int = 0
    server_invocation_counter: int | None = None  # highest counter accepted from the server
    ciphering: bool | None = None  # None: cipher xDLMS APDUs when an encryption key is given
    security_control: int = 0x30
    max_pdu_size: int = 0xFFFF
    conformance: Conformance = DEFAULT_CONFORMANCE
    response_timeout: float = 10.0
    connect_timeout: float = 15.0
    challenge_length: int = 16
    # A GET block transfer longer than this is refused: a meter that never sets last-block must not make
    # the client reassemble for ever. Each block also costs BLOCK_OVERHEAD octets of this budget, so tiny or
    # empty blocks exhaust it too (at most 8192 blocks by default).
    max_block_transfer_octets: int = 1 << 20

    @property
    def uses_ciphering(self) -> bool:
        return self.encryption_key is not None if self.ciphering is None else self.ciphering


def _service_error_text(apdu: Apdu) -> str:
    if isinstance(apdu, ExceptionResponse | ConfirmedServiceError):
        return str(apdu)
    return apdu.name


@dataclass(frozen=True, slots=True)
class GetStep:
    """Outcome of one GET response: either the next request to send, or the final results."""

    next_request: bytes | None = None
    results: tuple[Data | DataAccessResult, ...] | None = None


class ClientSession:
    """Sans-IO client state machine for one application association."""

    def __init__(
        self, settings: ClientSettings, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.settings = settings
        self._random_bytes = random_bytes
        self._invoke_id = 0
        self.associated = False
        self.negotiated_conformance = Conformance(0)
        self.server_max_pdu_size = 0
        self.server_system_title: bytes | None = None
        self._challenge_ctos: bytes | None = None
        self._challenge_stoc: bytes | None = None
        self._pending_invoke_id: int | None = None
        self._get_kind: str | None = None
        self._blocks: BlockReassembler | None = None
        self._block_octets = 0
        # Pushes that overtook a response, newest last. Nothing in the stack drains them, so only the
        # latest MAX_KEPT_NOTIFICATIONS are kept: a pushing meter must not grow a long-lived client.
        self.notifications: deque[DataNotification | EventNotificationRequest] = deque(
            maxlen=MAX_KEPT_NOTIFICATIONS
        )
        self._peeked: tuple[bytes, Apdu] | None = None
        self.security: SecurityContext | None = None
        needs_keys = settings.uses_ciphering or settings.authentication is Authentication.HLS_GMAC
        if needs_keys:
            if settings.system_title is None or settings.encryption_key is None:
                raise AssociationError(
                    "ciphering / HLS-GMAC needs a client system title and an encryption key"
                )
            if settings.authentication_key is None:
                raise AssociationError("ciphering / HLS-GMAC needs an authentication key")
            self.security = SecurityContext(
                system_title=settings.system_title,
                encryption_key=settings.encryption_key,
                authentication_key=settings.authentication_key,
                invocation_counter=settings.invocation_counter,
                security_control=settings.security_control,
                dedicated_key=settings.dedicated_key,
                peer_invocation_counter=settings.server_invocation_counter,
            )
        if settings.authentication is Authentication.LOW and not settings.password:
            raise AssociationError("low-level security (LLS) needs a password")

    # ------------------------------------------------------------------ counters and invoke ids

    @property
    def invocation_counter(self) -> int:
        """The next invocation counter this client will use (persist it between sessions)."""
        return self.security.invocation_counter if self.security else self.settings.invocation_counter

    @property
    def server_invocation_counter(self) -> int | None:
        return self.security.peer_invocation_counter if self.security else None

    def _next_iip(self) -> InvokeIdAndPriority:
        self._invoke_id = (self._invoke_id + 1) & 0x0F
        self._pending_invoke_id = self._invoke_id
        return InvokeIdAndPriority(self._invoke_id, True, True)

    def _check_invoke_id(self, iip: InvokeIdAndPriority) -> None:
        if self._pending_invoke_id is not None and iip.invoke_id != self._pending_invoke_id:
            raise StaleResponse(
                f"response invoke id {iip.invoke_id} does not match "
                f"request invoke id {self._pending_invoke_id}"
            )

    # ------------------------------------------------------------------ ciphering

    def _protect(self, apdu: Apdu) -> bytes:
        plain = apdu.encode()
        if self.security is not None and self.settings.uses_ciphering:
            return self.security.protect(plain, dedicated=self.settings.dedicated_key is not None)
        return plain

    def _unprotect(self, data: bytes) -> Apdu:
        cached, self._peeked = self._peeked, None
        if cached is not None and cached[0] is data:
            return cached[1]  # deciphered once by take_notification (its counter is spent)
        apdu = decode_apdu(data)
        if isinstance(apdu, CipheredApdu | GeneralGloCiphering):
            if self.security is None:
                raise CipheringError(f"received ciphered {apdu.name} but no keys are configured")
            return decode_apdu(self.security.unprotect(apdu))
        if self.settings.uses_ciphering and self.associated and not isinstance(apdu, ExceptionResponse):
            raise CipheringError(f"received unciphered {apdu.name} in a ciphered association")
        return apdu

    def take_notification(self, data: bytes) -> bool:
        """If ``data`` is a data- or event-notification (push), keep it in ``notifications`` and return True.

        A meter may push while the client waits for a response; the response then comes next.
        """
        if not data or data[0] not in _NOTIFICATION_TAGS:
            return False
        apdu = self._unprotect(data)
        if isinstance(apdu, DataNotification | EventNotificationRequest):
            self.notifications.append(apdu)
            return True
        self._peeked = (data, apdu)  # the very next _unprotect(data) reuses it, once
        return False

    def _expect_response(self, data: bytes) -> Apdu:
        apdu = self._unprotect(data)
        if isinstance(apdu, ExceptionResponse | ConfirmedServiceError):
            raise ServiceError(f"server refused the request: {_service_error_text(apdu)}")
        return apdu

    # ------------------------------------------------------------------ association

    def association_request(self) -> bytes:
        """The AARQ (with a fresh CtoS challenge for HLS-GMAC)."""
        s = self.settings
        initiate = InitiateRequest(
            proposed_conformance=s.conformance,
            client_max_receive_pdu_size=s.max_pdu_size,
            dedicated_key=s.dedicated_key if s.uses_ciphering else None,
        )
        user_information: InitiateRequest | CipheredApdu = initiate
        if s.uses_ciphering and self.security is not None:
            ciphered = decode_apdu(self.security.protect(initiate.encode()))
            assert isinstance(ciphered, CipheredApdu)
            user_information = ciphered
        mechanism: AuthenticationMechanism | None = None
        auth_value: bytes | None = None
        if s.authentication is Authentication.LOW:
            mechanism, auth_value = AuthenticationMechanism.LOW, s.password
        elif s.authentication is Authentication.HLS_GMAC:
            if not 8 <= s.challenge_length <= 64:
                raise AssociationError(f"HLS challenge length {s.challenge_length} is outside 8..64")
            mechanism = AuthenticationMechanism.HIGH_GMAC
            self._challenge_ctos = self._random_bytes(s.challenge_length)
            auth_value = self._challenge_ctos
        context = (
            ApplicationContext.LOGICAL_NAME_WITH_CIPHERING
            if s.uses_ciphering
            else ApplicationContext.LOGICAL_NAME
        )
        return Aarq(
            application_context=context,
            calling_ap_title=s.system_title if self.security is not None else None,
            mechanism=mechanism,
            calling_authentication_value=auth_value,
            user_information=user_information,
        ).encode()

    def handle_association_response(self, data: bytes) -> bytes | None:
        """Check the AARE. Returns the HLS pass-3 request to send, or None when associated."""
        apdu = decode_apdu(data)
        if isinstance(apdu, ExceptionResponse | ConfirmedServiceError):
            raise AssociationRejected(f"server answered the AARQ with {_service_error_text(apdu)}")
        if not isinstance(apdu, Aare):
            raise AssociationError(f"expected an AARE, got {apdu.name}")
        if apdu.responding_ap_title is not None:
            self.server_system_title = apdu.responding_ap_title
            if self.security is not None:
                self.security.peer_system_title = apdu.responding_ap_title
        info = apdu.user_information
        if isinstance(info, CipheredApdu):
            if self.security is None:
                raise CipheringError("AARE carries a ciphered initiate-response but no keys are configured")
            info = decode_apdu(self.security.unprotect(info))  # type: ignore[assignment]
        if apdu.result is not AssociationResult.ACCEPTED:
            detail = f"{apdu.result.label}, diagnostic {apdu.diagnostic_name}"
            if isinstance(info, ConfirmedServiceError):
                detail += f", {info}"
            if apdu.diagnostic_source == 1 and apdu.diagnostic == 13:
                raise AuthenticationFailure(f"association rejected: {detail} (wrong password or key?)")
            if info is None and self.security is not None:
                # A meter that cannot decipher our AARQ's initiate-request often rejects with no reason.
                detail += "; the server sent no initiate-response (wrong encryption key?)"
            raise AssociationRejected(f"association rejected: {detail}")
        if not isinstance(info, InitiateResponse):
            raise AssociationError(
                f"AARE accepted but carries {info.name if info else 'no'} initiate-response"
            )
        self.negotiated_conformance = info.negotiated_conformance
        self.server_max_pdu_size = info.server_max_receive_pdu_size
        if self.settings.authentication is Authentication.HLS_GMAC:
            if apdu.responding_authentication_value is None or self.server_system_title is None:
                raise AuthenticationFailure(
                    "HLS-GMAC: the AARE lacks the StoC challenge or the server system title"
                )
            self._challenge_stoc = apdu.responding_authentication_value
            return self._hls_pass3()
        self.associated = True
        return None

    def _hls_pass3(self) -> bytes:
        assert self.security is not None and self._challenge_stoc is not None
        counter = self.security.next_invocation_counter()
        answer = hls_gmac_response(
            self._challenge_stoc,
            system_title=self.security.system_title,
            invocation_counter=counter,
            encryption_key=self.security.encryption_key,
            authentication_key=self.security.authentication_key,
        )
        self.associated = True  # pass 3 travels ciphered when the context is ciphered
        request = ActionRequestNormal(
            MethodDescriptor.of(
                ClassId.ASSOCIATION_LN,
                CURRENT_ASSOCIATION_LN,
                AssociationLnMethod.REPLY_TO_HLS_AUTHENTICATION,
            ),
            Data.octet_string(answer),
            self._next_iip(),
        )
        return self._protect(request)

    def handle_hls_response(self, data: bytes) -> None:
        """Pass 4: verify the server's f(CtoS)."""
        try:
            apdu = self._expect_response(data)
        except ServiceError as exc:
            self.associated = False
            raise AuthenticationFailure(f"HLS-GMAC pass 3 refused: {exc}") from None
        except CipheringError as exc:
            self.associated = False
            raise AuthenticationFailure(f"HLS-GMAC: {exc}") from None
        if not isinstance(apdu, ActionResponseNormal):
            self.associated = False
            raise AuthenticationFailure(f"HLS-GMAC: expected an action-response, got {apdu.name}")
        if apdu.result is not ActionResult.SUCCESS or not isinstance(apdu.return_parameters, Data):
            self.associated = False
            raise AuthenticationFailure(f"HLS-GMAC: server rejected our f(StoC) ({apdu.result.label})")
        answer = apdu.return_parameters.value
        assert self.security is not None and self._challenge_ctos is not None
        assert self.server_system_title is not None
        if not isinstance(answer, bytes):
            self.associated = False
            raise AuthenticationFailure("HLS-GMAC: server answer is not an octet-string")
        try:
            verify_hls_gmac_response(
                answer,
                self._challenge_ctos,
                system_title=self.server_system_title,
                encryption_key=self.security.encryption_key,
                authentication_key=self.security.authentication_key,
            )
        except CipheringError as exc:
            self.associated = False
            raise AuthenticationFailure(f"HLS-GMAC: server f(CtoS) does not verify: {exc}") from None

    def release_request(self) -> bytes:
        info = None
        if self.settings.uses_ciphering and self.security is not None:
            initiate = InitiateRequest(self.settings.conformance, self.settings.max_pdu_size)
            ciphered = decode_apdu(self.security.protect(initiate.encode()))
            assert isinstance(ciphered, CipheredApdu)
            info = ciphered
        return Rlrq(user_information=info).encode()

    def handle_release_response(self, data: bytes) -> None:
        apdu = decode_apdu(data)
        self.associated = False
        if not isinstance(apdu, Rlre):
            raise AssociationError(f"expected an RLRE, got {apdu.name}")

    def link_lost(self) -> None:
        """The link under this association broke: the server forgot the association with it."""
        self.associated = False
        self._pending_invoke_id = None
        self._blocks = None

    # ------------------------------------------------------------------ GET

    def _require_associated(self) -> None:
        if not self.associated:
            raise AssociationError("not associated: call associate() first")

    def get_request(self, attribute: AttributeDescriptor, access: AccessSelection | None = None) -> bytes:
        self._require_associated()
        self._get_kind, self._blocks = "normal", None
        return self._protect(GetRequestNormal(attribute, access, self._next_iip()))

    def get_with_list_request(
        self, attributes: Sequence[AttributeDescriptor | tuple[AttributeDescriptor, AccessSelection | None]]
    ) -> bytes:
        self._require_associated()
        if not attributes:
            raise ServiceError("get-with-list needs at least one attribute")
        items = tuple(a if isinstance(a, tuple) else (a, None) for a in attributes)
        self._get_kind, self._blocks = "list", None
        return self._protect(GetRequestWithList(items, self._next_iip()))

    def handle_get_response(self, data: bytes) -> GetStep:
        apdu = self._expect_response(data)
        if isinstance(apdu, GetResponseNormal | GetResponseWithList | GetResponseWithDataBlock):
            self._check_invoke_id(apdu.invoke_id_and_priority)
        # A get-request-normal is answered by -normal (or blocks), a -with-list by -with-list (or blocks).
        if isinstance(apdu, GetResponseNormal) and self._get_kind == "normal":
            return GetStep(results=(apdu.result,))
        if isinstance(apdu, GetResponseWithList) and self._get_kind == "list":
            return GetStep(results=apdu.results)
        if isinstance(apdu, GetResponseWithDataBlock):
            if isinstance(apdu.raw_data, DataAccessResult):
                self._blocks = None
                raise ServiceError(
                    f"block transfer aborted by the server at block {apdu.block_number}: "
                    f"{apdu.raw_data.label}"
                )
            if self._blocks is None:
                self._blocks, self._block_octets = BlockReassembler(), 0
            self._block_octets += len(apdu.raw_data) + BLOCK_OVERHEAD
            if self._block_octets > self.settings.max_block_transfer_octets:
                self._blocks = None
                raise DecodeError(
                    f"GET block transfer exceeds {self.settings.max_block_transfer_octets} octets at block "
                    f"{apdu.block_number} without a last block (ClientSettings.max_block_transfer_octets)"
                )
            if not self._blocks.add(apdu):
                request = GetRequestNext(apdu.block_number, self._iip_same())
                return GetStep(next_request=self._protect(request))
            raw = self._blocks.raw_data
            self._blocks = None
            if self._get_kind == "list":
                return GetStep(results=decode_get_with_list_results(raw))
            return GetStep(results=(_decode_whole(raw),))
        raise DecodeError(f"expected a get-response to the {self._get_kind} get-request, got {apdu.name}")

    def _iip_same(self) -> InvokeIdAndPriority:
        return InvokeIdAndPriority(self._invoke_id, True, True)

    # ------------------------------------------------------------------ SET / ACTION

    def set_request(
        self, attribute: AttributeDescriptor, value: Data, access: AccessSelection | None = None
    ) -> bytes:
        self._require_associated()
        return self._protect(SetRequestNormal(attribute, value, access, self._next_iip()))

    def handle_set_response(self, data: bytes) -> None:
        apdu = self._expect_response(data)
        if not isinstance(apdu, SetResponseNormal):
            raise DecodeError(f"expected a set-response, got {apdu.name}")
        self._check_invoke_id(apdu.invoke_id_and_priority)
        if apdu.result is not DataAccessResult.SUCCESS:
            raise ServiceError(f"SET refused: {apdu.result.label}")

    def action_request(self, method: MethodDescriptor, parameters: Data | None = None) -> bytes:
        self._require_associated()
        return self._protect(ActionRequestNormal(method, parameters, self._next_iip()))

    def handle_action_response(self, data: bytes) -> Data | None:
        apdu = self._expect_response(data)
        if not isinstance(apdu, ActionResponseNormal):
            raise DecodeError(f"expected an action-response, got {apdu.name}")
        self._check_invoke_id(apdu.invoke_id_and_priority)
        if apdu.result is not ActionResult.SUCCESS:
            raise ServiceError(f"ACTION refused: {apdu.result.label}")
        if isinstance(apdu.return_parameters, DataAccessResult):
            raise ServiceError(f"ACTION return data unavailable: {apdu.return_parameters.label}")
        return apdu.return_parameters


_NOTIFICATION_TAGS = frozenset(
    {
        ApduTag.DATA_NOTIFICATION,
        ApduTag.EVENT_NOTIFICATION_REQUEST,
        ApduTag.GLO_EVENT_NOTIFICATION_REQUEST,
        ApduTag.DED_EVENT_NOTIFICATION_REQUEST,
        ApduTag.GENERAL_GLO_CIPHERING,
        ApduTag.GENERAL_DED_CIPHERING,
    }
)


def _decode_whole(raw: bytes) -> Data:
    return decode_data(raw)


def _single(result: Data | DataAccessResult, what: str) -> Data:
    if isinstance(result, DataAccessResult):
        raise ServiceError(f"GET {what} refused: {result.label}")
    return result


def _descriptor(
    attribute: AttributeDescriptor | tuple[int, str | bytes, int],
) -> AttributeDescriptor:
    if isinstance(attribute, AttributeDescriptor):
        return attribute
    return AttributeDescriptor.of(*attribute)


class DlmsClient:
    """Async DLMS client.

    ``async with DlmsClient(link, settings) as meter: await meter.read_register("1-0:1.8.0.255")``
    """

    def __init__(
        self, link: ApduLink, settings: ClientSettings, *, session: ClientSession | None = None
    ) -> None:
        self.link = link
        self.settings = settings
        self.session = session or ClientSession(settings)
        # One request at a time: the session has one pending invoke id and the link one answer in flight,
        # so concurrent callers queue here instead of mixing up each other's answers.
        self._lock = asyncio.Lock()

    @property
    def invocation_counter(self) -> int:
        """Next counter this client will use: persist it and pass it back as ``invocation_counter``."""
        return self.session.invocation_counter

    @property
    def server_invocation_counter(self) -> int | None:
        """Highest counter accepted from the server: persist it as ``server_invocation_counter``."""
        return self.session.server_invocation_counter

    async def _exchange(self, apdu: bytes) -> bytes:
        timeout = self.settings.response_timeout
        deadline = time.monotonic() + timeout
        try:
            response = await self.link.exchange(apdu, timeout)
            while self.session.associated and self.session.take_notification(response):
                # A push overtook the response. Links that offer ``receive(timeout)`` let us wait for the
                # real response (see dlms/link.py); others cannot. Pushes do not extend the deadline, so a
                # meter that only pushes cannot keep the caller waiting.
                receive = getattr(self.link, "receive", None)
                if receive is None:
                    raise DlmsError("a notification arrived instead of the response and the link cannot wait")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self._close_link_quietly()
                    raise LinkTimeout(
                        f"only notifications ({len(self.session.notifications)} kept) and no response "
                        f"within {timeout}s"
                    )
                response = await receive(remaining)
        except LinkError:
            # Links drop themselves on error and reconnect on the next call; an association does not survive
            # that, so the next request must associate again instead of being refused.
            self.session.link_lost()
            raise
        return response

    async def _transact(self, request: bytes, handle: Callable[[bytes], _T]) -> _T:
        """Exchange ``request`` and interpret the answer with ``handle``.

        An answer to another request (StaleResponse) means the link is out of step: a duplicated answer
        would otherwise be taken for every next request's, and even a new AARQ would get a stale answer.
        So the link is dropped and the association forgotten; the next ``associate()`` starts clean. Other
        DecodeErrors keep the association (the meter driver falls back from a garbled GET-with-list answer
        to single GETs on it).
        """
        response = await self._exchange(request)
        try:
            return handle(response)
        except StaleResponse:
            self.session.link_lost()
            await self._close_link_quietly()
            raise

    async def _close_link_quietly(self) -> None:
        """Drop the link (a late answer must not be taken for the next request's); errors are moot."""
        with contextlib.suppress(DlmsError, TimeoutError):
            await asyncio.wait_for(self.link.close(), self.settings.connect_timeout)

    async def _bounded(self, what: str, step: Awaitable[None]) -> None:
        """``link.open()`` / ``link.close()`` within ``connect_timeout``; LinkTimeout, not TimeoutError."""
        try:
            await asyncio.wait_for(step, self.settings.connect_timeout)
        except TimeoutError:
            self.session.link_lost()
            raise LinkTimeout(
                f"link {what} did not finish within connect_timeout {self.settings.connect_timeout}s"
            ) from None
        except LinkError:
            self.session.link_lost()
            raise

    async def associate(self) -> None:
        async with self._lock:
            await self._bounded("open", self.link.open())
            pass3 = await self._transact(
                self.session.association_request(), self.session.handle_association_response
            )
            if pass3 is not None:
                await self._transact(pass3, self.session.handle_hls_response)

    async def release(self) -> None:
        async with self._lock:
            try:
                if self.session.associated:
                    await self._transact(self.session.release_request(), self.session.handle_release_response)
            finally:
                await self._bounded("close", self.link.close())

    async def __aenter__(self) -> Self:
        await self.associate()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.release()
        except DlmsError:
            if exc is None:
                raise

    async def _get_loop(self, make_request: Callable[[], bytes]) -> tuple[Data | DataAccessResult, ...]:
        async with self._lock:
            request = make_request()
            while True:
                step = await self._transact(request, self.session.handle_get_response)
                if step.results is not None:
                    return step.results
                assert step.next_request is not None
                request = step.next_request

    async def get(
        self,
        attribute: AttributeDescriptor | tuple[int, str | bytes, int],
        access: AccessSelection | None = None,
    ) -> Data:
        descriptor = _descriptor(attribute)
        results = await self._get_loop(lambda: self.session.get_request(descriptor, access))
        return _single(results[0], str(descriptor))

    async def get_with_list(
        self, attributes: Sequence[AttributeDescriptor | tuple[int, str | bytes, int]]
    ) -> list[Data | DataAccessResult]:
        descriptors = [_descriptor(a) for a in attributes]
        results = await self._get_loop(lambda: self.session.get_with_list_request(descriptors))
        if len(results) != len(descriptors):
            raise DecodeError(
                f"get-with-list asked for {len(descriptors)} attributes, got {len(results)} results"
            )
        return list(results)

    async def set(
        self,
        attribute: AttributeDescriptor | tuple[int, str | bytes, int],
        value: Data,
        access: AccessSelection | None = None,
    ) -> None:
        descriptor = _descriptor(attribute)
        async with self._lock:
            request = self.session.set_request(descriptor, value, access)
            await self._transact(request, self.session.handle_set_response)

    async def action(
        self, method: MethodDescriptor | tuple[int, str | bytes, int], parameters: Data | None = None
    ) -> Data | None:
        descriptor = method if isinstance(method, MethodDescriptor) else MethodDescriptor.of(*method)
        async with self._lock:
            request = self.session.action_request(descriptor, parameters)
            return await self._transact(request, self.session.handle_action_response)

    # ------------------------------------------------------------------ COSEM conveniences

    async def read_register(
        self, logical_name: str | bytes, class_id: int = ClassId.REGISTER
    ) -> RegisterValue:
        """Value of a Register / Extended register with its scaler_unit applied (Data objects: scaler 0)."""
        ln = ln_from_str(logical_name)
        value_attr = AttributeDescriptor(class_id, ln, RegisterAttribute.VALUE)
        if class_id == ClassId.DATA:
            return register_value(await self.get(value_attr), None)
        unit_attr = AttributeDescriptor(class_id, ln, RegisterAttribute.SCALER_UNIT)
        if self.session.negotiated_conformance & Conformance.MULTIPLE_REFERENCES:
            value, scaler_unit = await self.get_with_list([value_attr, unit_attr])
            return register_value(_single(value, str(value_attr)), _single(scaler_unit, str(unit_attr)))
        return register_value(await self.get(value_attr), await self.get(unit_attr))

    async def read_clock(self, logical_name: str | bytes = CLOCK_LN) -> CosemDateTime:
        data = await self.get(
            AttributeDescriptor(ClassId.CLOCK, ln_from_str(logical_name), ClockAttribute.TIME)
        )
        return data.as_date_time()

    async def remote_disconnect(self, logical_name: str | bytes = DISCONNECT_CONTROL_LN) -> None:
        await self.action(
            MethodDescriptor(
                ClassId.DISCONNECT_CONTROL,
                ln_from_str(logical_name),
                DisconnectControlMethod.REMOTE_DISCONNECT,
            ),
            Data(DataType.INTEGER, 0),
        )

    async def remote_reconnect(self, logical_name: str | bytes = DISCONNECT_CONTROL_LN) -> None:
        await self.action(
            MethodDescriptor(
                ClassId.DISCONNECT_CONTROL,
                ln_from_str(logical_name),
                DisconnectControlMethod.REMOTE_RECONNECT,
            ),
            Data(DataType.INTEGER, 0),
        )
