"""The simulator's DLMS application layer: one association's APDU in, APDU out (sans-IO).

Built on villageami's own codec as a server: AARQ/AARE (public client without security, LLS with a
password, HLS-GMAC with security suite 0 and ciphered xDLMS APDUs), GET normal / with-list / block transfer
when a response exceeds the client's max PDU size, SET, ACTION, RLRQ/RLRE. Requests before an association
get an exception-response, as meters do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from villageami.dlms.apdu import (
    Aare,
    Aarq,
    AcseServiceUser,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    Apdu,
    ApplicationContext,
    AssociationResult,
    AuthenticationMechanism,
    CipheredApdu,
    ConfirmedService,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
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
    Rlre,
    Rlrq,
    ServiceErrorKind,
    SetRequestNormal,
    SetResponseNormal,
    StateError,
    decode_apdu,
)
from villageami.dlms.axdr import Data, encode_data
from villageami.dlms.errors import CipheringError, DecodeError
from villageami.dlms.security import SecurityContext, hls_gmac_response, verify_hls_gmac_response
from villageami.sim.dlms_model import SimMeter

SERVER_CONFORMANCE = (
    Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.MULTIPLE_REFERENCES
    | Conformance.GET
    | Conformance.SET
    | Conformance.SELECTIVE_ACCESS
    | Conformance.ACTION
)
# Octets a GET-response-with-datablock adds around its raw data (tag, choice, invoke id, last, number,
# result choice, up to 3 length octets).
BLOCK_OVERHEAD = 12


ASSOCIATION_LN = bytes((0, 0, 40, 0, 0, 255))
REPLY_TO_HLS = 1


@dataclass(slots=True)
class SecurityPolicy:
    """Which client SAPs may associate and how: 16 public (no security), 17 LLS with ``lls_password``,
    1 HLS-GMAC with the suite-0 keys below (the widely used test keys by default).

    ``invocation_counter`` is the server's next counter; it only grows, across associations."""

    public_client: int = 16
    lls_client: int = 17
    lls_password: bytes = b"00000000"
    hls_client: int = 1
    system_title: bytes = b"VAMSIM01"
    encryption_key: bytes = bytes(range(16))
    authentication_key: bytes = bytes(range(0xD0, 0xE0))
    invocation_counter: int = 1
    server_max_pdu: int = 1024
    # Highest invocation counter accepted from each client system title, across associations: like a real
    # meter, the simulator refuses a client that starts again from an old counter (a replay).
    client_invocation_counters: dict[bytes, int] = field(default_factory=dict)


@dataclass(slots=True)
class AssociationSession:
    """State of one application association between a client SAP and the simulated logical device."""

    meter: SimMeter
    client_sap: int
    policy: SecurityPolicy = field(default_factory=SecurityPolicy)
    associated: bool = False
    client_max_pdu: int = 0xFFFF
    pending_blocks: list[bytes] = field(default_factory=list)
    block_number: int = 0
    block_invoke: InvokeIdAndPriority = field(default_factory=InvokeIdAndPriority)
    security: SecurityContext | None = None
    hls_pending: bool = False
    challenge_ctos: bytes = b""
    challenge_stoc: bytes = b""

    def handle(self, data: bytes) -> bytes:
        """Answer one request APDU (deciphering it and ciphering the answer in a ciphered association)."""
        try:
            request = decode_apdu(data)
            ciphered = isinstance(request, CipheredApdu | GeneralGloCiphering)
            if ciphered:
                if self.security is None:
                    return ExceptionResponse(
                        StateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.DECIPHERING_ERROR
                    ).encode()
                request = decode_apdu(self.security.unprotect(request))  # type: ignore[arg-type]
                self._remember_client_counter()
        except DecodeError:
            return ExceptionResponse(
                StateError.SERVICE_UNKNOWN, ExceptionServiceError.SERVICE_NOT_SUPPORTED
            ).encode()
        except CipheringError:
            return ExceptionResponse(
                StateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.DECIPHERING_ERROR
            ).encode()
        answer = self.respond(request).encode()
        if ciphered and self.security is not None and not isinstance(request, Aarq):
            answer = self.security.protect(answer)
            self.policy.invocation_counter = self.security.invocation_counter
        return answer

    def _remember_client_counter(self) -> None:
        security = self.security
        if (
            security is not None
            and security.peer_system_title
            and security.peer_invocation_counter is not None
        ):
            self.policy.client_invocation_counters[security.peer_system_title] = (
                security.peer_invocation_counter
            )

    def respond(self, request: Apdu) -> Apdu:
        if isinstance(request, Aarq):
            return self._associate(request)
        if isinstance(request, Rlrq):
            self.associated = False
            self.pending_blocks = []
            return Rlre()
        if self.hls_pending:
            return self._hls_pass3(request)
        if not self.associated:
            return ExceptionResponse(
                StateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.OPERATION_NOT_POSSIBLE
            )
        if isinstance(request, GetRequestNormal):
            attr = request.attribute
            result = self.meter.get(attr.class_id, attr.logical_name, attr.attribute_id)
            return self._fit(GetResponseNormal(result, request.invoke_id_and_priority))
        if isinstance(request, GetRequestWithList):
            results = tuple(
                self.meter.get(attr.class_id, attr.logical_name, attr.attribute_id)
                for attr, _access in request.attributes
            )
            return self._fit(GetResponseWithList(results, request.invoke_id_and_priority))
        if isinstance(request, GetRequestNext):
            return self._next_block(request)
        if isinstance(request, SetRequestNormal):
            attr = request.attribute
            status = self.meter.set(attr.class_id, attr.logical_name, attr.attribute_id, request.value)
            return SetResponseNormal(status, request.invoke_id_and_priority)
        if isinstance(request, ActionRequestNormal):
            method = request.method
            outcome = self.meter.action(
                method.class_id, method.logical_name, method.method_id, request.parameters
            )
            return ActionResponseNormal(outcome, None, request.invoke_id_and_priority)
        return ExceptionResponse(StateError.SERVICE_UNKNOWN, ExceptionServiceError.SERVICE_NOT_SUPPORTED)

    # ------------------------------------------------------------------------------ association

    def _associate(self, request: Aarq) -> Apdu:
        def reject(diagnostic: AcseServiceUser, mechanism: AuthenticationMechanism | None = None) -> Aare:
            self.associated = False
            return Aare(
                result=AssociationResult.REJECTED_PERMANENT,
                diagnostic=diagnostic,
                application_context=request.application_context,
                mechanism=mechanism,
            )

        policy = self.policy
        mechanism = request.mechanism
        initiate = request.user_information
        ciphered_context = request.application_context == ApplicationContext.LOGICAL_NAME_WITH_CIPHERING
        self.security, self.hls_pending = None, False
        if self.client_sap == policy.hls_client:
            if mechanism is not AuthenticationMechanism.HIGH_GMAC or request.calling_ap_title is None:
                return reject(AcseServiceUser.AUTHENTICATION_MECHANISM_NAME_REQUIRED)
            self.security = SecurityContext(
                system_title=policy.system_title,
                encryption_key=policy.encryption_key,
                authentication_key=policy.authentication_key,
                invocation_counter=policy.invocation_counter,
                peer_system_title=request.calling_ap_title,
                peer_invocation_counter=policy.client_invocation_counters.get(request.calling_ap_title),
            )
            self.challenge_ctos = request.calling_authentication_value or b""
            if isinstance(initiate, CipheredApdu):
                try:
                    initiate = decode_apdu(self.security.unprotect(initiate))  # type: ignore[assignment]
                except (CipheringError, DecodeError):
                    return reject(AcseServiceUser.AUTHENTICATION_FAILURE, mechanism)
                self._remember_client_counter()
        elif request.application_context != ApplicationContext.LOGICAL_NAME:
            return reject(AcseServiceUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        if not isinstance(initiate, InitiateRequest):
            return reject(AcseServiceUser.NO_REASON_GIVEN)
        if self.client_sap == policy.hls_client:
            pass
        elif self.client_sap == policy.public_client:
            if mechanism not in (None, AuthenticationMechanism.NONE):
                return reject(AcseServiceUser.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED)
        elif self.client_sap == policy.lls_client:
            if mechanism is not AuthenticationMechanism.LOW:
                return reject(AcseServiceUser.AUTHENTICATION_REQUIRED)
            if request.calling_authentication_value != policy.lls_password:
                return reject(AcseServiceUser.AUTHENTICATION_FAILURE, AuthenticationMechanism.LOW)
        else:
            return reject(AcseServiceUser.CALLING_AP_TITLE_NOT_RECOGNIZED)
        if initiate.proposed_dlms_version < 6:
            error = ConfirmedServiceError(ConfirmedService.INITIATE_ERROR, ServiceErrorKind.INITIATE, 1)
            return Aare(
                result=AssociationResult.REJECTED_PERMANENT,
                diagnostic=AcseServiceUser.NO_REASON_GIVEN,
                user_information=error,
            )
        self.client_max_pdu = initiate.client_max_receive_pdu_size or 0xFFFF
        self.meter.partners = (self.client_sap, 1)
        response = InitiateResponse(
            negotiated_conformance=Conformance(initiate.proposed_conformance & SERVER_CONFORMANCE),
            server_max_receive_pdu_size=policy.server_max_pdu,
        )
        if self.security is None:
            self.associated = True
            return Aare(
                result=AssociationResult.ACCEPTED,
                diagnostic=AcseServiceUser.NULL,
                mechanism=mechanism if mechanism not in (None, AuthenticationMechanism.NONE) else None,
                user_information=response,
            )
        # HLS: accepted pending pass 3/4; the initiate-response is ciphered when the request was.
        self.hls_pending = True
        self.challenge_stoc = os.urandom(16)
        user_information: InitiateResponse | CipheredApdu = response
        if ciphered_context:
            protected = decode_apdu(self.security.protect(response.encode()))
            assert isinstance(protected, CipheredApdu)
            user_information = protected
            policy.invocation_counter = self.security.invocation_counter
        return Aare(
            result=AssociationResult.ACCEPTED,
            diagnostic=AcseServiceUser.AUTHENTICATION_REQUIRED,
            application_context=request.application_context,
            responding_ap_title=policy.system_title,
            mechanism=mechanism,
            responding_authentication_value=self.challenge_stoc,
            user_information=user_information,
        )

    def _hls_pass3(self, request: Apdu) -> Apdu:
        """Check the client's f(StoC) (reply_to_HLS_authentication) and answer with f(CtoS)."""
        security = self.security
        self.hls_pending = False
        if (
            security is None
            or not isinstance(request, ActionRequestNormal)
            or (request.method.class_id, request.method.logical_name, request.method.method_id)
            != (15, ASSOCIATION_LN, REPLY_TO_HLS)
            or request.parameters is None
            or not isinstance(request.parameters.value, bytes)
        ):
            return ExceptionResponse(
                StateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.OPERATION_NOT_POSSIBLE
            )
        assert security.peer_system_title is not None
        try:
            verify_hls_gmac_response(
                request.parameters.value,
                self.challenge_stoc,
                system_title=security.peer_system_title,
                encryption_key=security.encryption_key,
                authentication_key=security.authentication_key,
            )
        except CipheringError:
            return ActionResponseNormal(ActionResult.OTHER_REASON, None, request.invoke_id_and_priority)
        self.associated = True
        answer = hls_gmac_response(
            self.challenge_ctos,
            system_title=security.system_title,
            invocation_counter=security.next_invocation_counter(),
            encryption_key=security.encryption_key,
            authentication_key=security.authentication_key,
        )
        self.policy.invocation_counter = security.invocation_counter
        return ActionResponseNormal(
            ActionResult.SUCCESS, Data.octet_string(answer), request.invoke_id_and_priority
        )

    # ---------------------------------------------------------------------------- block transfer

    def _fit(self, response: GetResponseNormal | GetResponseWithList) -> Apdu:
        encoded = response.encode()
        if len(encoded) <= self.client_max_pdu:
            return response
        # The raw data of a block transfer is the encoding of the result without the 3-octet header,
        # minus the get-data-result choice for GET-normal (block data carries the Data only).
        if isinstance(response, GetResponseNormal):
            if isinstance(response.result, DataAccessResult):
                return response
            raw = encode_data(response.result)
        else:
            raw = encoded[3:]
        size = max(1, self.client_max_pdu - BLOCK_OVERHEAD)
        self.pending_blocks = [raw[i : i + size] for i in range(0, len(raw), size)]
        self.block_number = 0
        self.block_invoke = response.invoke_id_and_priority
        return self._take_block()

    def _take_block(self) -> GetResponseWithDataBlock:
        chunk = self.pending_blocks.pop(0)
        self.block_number += 1
        return GetResponseWithDataBlock(
            last_block=not self.pending_blocks,
            block_number=self.block_number,
            raw_data=chunk,
            invoke_id_and_priority=self.block_invoke,
        )

    def _next_block(self, request: GetRequestNext) -> Apdu:
        if not self.pending_blocks:
            return GetResponseNormal(DataAccessResult.NO_LONG_GET_IN_PROGRESS, request.invoke_id_and_priority)
        if request.block_number != self.block_number:
            self.pending_blocks = []
            return GetResponseWithDataBlock(
                True,
                request.block_number,
                DataAccessResult.DATA_BLOCK_NUMBER_INVALID,
                request.invoke_id_and_priority,
            )
        return self._take_block()
