"""A test-only HLS-GMAC DLMS meter built on gurux-dlms's ``GXDLMSSecureServer`` (GPL-2.0, test dependency
only), used as an interop oracle for villageami's ciphered client.

It is ``gurux_server.GuruxMeter`` (whose shims 1-9 and 15 it inherits) on top of gurux's secure server,
plus the shims the dependency notes (§1.3) list for HLS-GMAC, numbered as there:

10. ``GXDLMSSecureServer.__init__`` fills ``settings.ciphering``; the code reads ``settings.cipher``.
11. ``_GXAPDU.generateAARE`` writes wrong BER lengths for the responding AP title (A4) and the StoC
    challenge (AA), and calls ``setUInt8()`` with no argument: replaced by a corrected copy (server only).
12. ``GXDLMSAssociationLogicalName.invoke`` (reply_to_HLS_authentication) does ``int()`` on the octet
    string f(StoC): overridden for HLS-GMAC.
13. The AARE's glo-initiate-response is ciphered without advancing the invocation counter, and
    ``GXCiphering.reset()`` zeroes the counter on every association: the AARE generator advances it and
    ``_KeepCounterCiphering.reset`` keeps it, so the meter never reuses a counter.
16. (not in the notes) ``GXDLMS.handleGloDedRequest`` builds ``AesGcmParameter(title, key, key)`` without
    its first argument (the tag), so every ciphered request (glo-get/set/action-request) is deciphered
    with the keys shifted by one and fails: replaced by a copy with the arguments in place.
5.  (HLS part) ``GXDLMSSettings.setConnected`` and ``GXDLMSAssociationLogicalName.getAssociationStatus``,
    which the reply_to_HLS path calls, do not exist.

Shim 14 (``settings.preEstablishedSystemTitle`` to get general-glo instead of glo-action-response) is
not applied: villageami's client deciphers both forms, so the meter keeps gurux's service-specific
``glo-*`` APDUs during HLS and whatever ciphering the negotiated conformance selects afterwards.

Each shim asserts that the gurux behaviour it works around is still there, so an upstream fix is noticed.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from typing import Any

from gurux_dlms import GXDLMS, GXByteBuffer, GXCiphering, GXDLMSSettings
from gurux_dlms._GXAPDU import _GXAPDU
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.ConnectionState import ConnectionState
from gurux_dlms.enums import (
    AssociationResult,
    Authentication,
    BerType,
    Command,
    PduType,
    RequestTypes,
    Security,
    SourceDiagnostic,
)
from gurux_dlms.GXSecure import GXSecure
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.objects import GXDLMSAssociationLogicalName
from gurux_dlms.objects.enums import AssociationStatus
from gurux_dlms.secure import GXDLMSSecureServer
from gurux_server import GuruxMeter

GURUX_VERSION = "1.0.203"
assert version("gurux-dlms") == GURUX_VERSION, "the HLS-GMAC shims were written against gurux-dlms 1.0.203"

ENCRYPTION_KEY = bytes(range(16))  # suite-0 global unicast encryption key (test value)
AUTHENTICATION_KEY = bytes(range(0xD0, 0xE0))
METER_SYSTEM_TITLE = b"GRX12345"
HLS_CLIENT_SAP = 1


class _KeepCounterCiphering(GXCiphering):  # type: ignore[misc]
    """Shim 13: reset() zeroes the invocation counter on every association; keep it monotonic."""

    def reset(self) -> None:
        counter = getattr(self, "invocationCounter")  # noqa: B009 (set by gurux; mypy cannot type it)
        super().reset()
        self.invocationCounter = counter


def _probe_reset_zeroes_counter() -> bool:
    probe = GXCiphering(bytearray(METER_SYSTEM_TITLE))
    probe.invocationCounter = 7
    probe.reset()
    return bool(probe.invocationCounter == 0)


_ORIGINAL_GENERATE_AARE = _GXAPDU.generateAARE


def _user_information(settings: Any, cipher: Any) -> bytes:
    """Shim 13: gurux ciphers the initiate-response with the current counter and never advances it."""
    before = cipher.invocationCounter if cipher is not None else None
    data = bytes(_GXAPDU.getUserInformation(settings, cipher))
    if cipher is not None and cipher.isCiphered():
        assert cipher.invocationCounter == before, "gurux now advances the AARE counter: drop shim 13"
        cipher.invocationCounter += 1
    return data


def _generate_aare(
    cls: Any,
    settings: Any,
    data: Any,
    result: Any,
    diagnostic: Any,
    cipher: Any,
    error_data: Any,
    encrypted_data: Any,
) -> None:
    """Shim 11: gurux's generateAARE with correct BER lengths (A4, AA) and the system title's length."""
    offset = len(data)
    data.setUInt8(BerType.APPLICATION | BerType.CONSTRUCTED | PduType.APPLICATION_CONTEXT_NAME)
    data.setUInt8(0)  # AARE length, patched at the end
    _GXAPDU.generateApplicationContextName(settings, data, cipher)
    data.set(bytearray((0xA2, 0x03, BerType.INTEGER, 0x01, int(result))))
    data.set(bytearray((0xA3, 0x05, 0xA1, 0x03, BerType.INTEGER, 0x01, int(diagnostic))))
    if cipher and (settings.authentication == Authentication.HIGH_GMAC or cipher.isCiphered()):
        title = bytes(cipher.systemTitle)
        data.setUInt8(BerType.CONTEXT | BerType.CONSTRUCTED | PduType.CALLED_AP_INVOCATION_ID)
        data.set(bytearray(bytes((2 + len(title), BerType.OCTET_STRING, len(title))) + title))
    if settings.userId != -1:
        data.setUInt8(BerType.CONTEXT | BerType.CONSTRUCTED | PduType.CALLED_AE_INVOCATION_ID)
        data.set(bytearray((0x03, BerType.INTEGER, 0x01, settings.userId)))
    if settings.authentication > Authentication.LOW:
        data.set(bytearray((0x88, 0x02, 0x07, 0x80)))  # responder ACSE requirements: authentication
        mechanism = (0x89, 0x07, 0x60, 0x85, 0x74, 0x05, 0x08, 0x02, int(settings.authentication))
        data.set(bytearray(mechanism))
        challenge = bytes(settings.stoCChallenge)
        data.set(bytearray(bytes((0xAA, 2 + len(challenge), BerType.CONTEXT, len(challenge))) + challenge))
    if result == AssociationResult.ACCEPTED or not cipher or cipher.security == Security.NONE:
        if encrypted_data:
            info = GXByteBuffer()
            info.setUInt8(Command.GLO_INITIATE_RESPONSE)
            _GXCommon.setObjectCount(len(encrypted_data), info)
            info.set(encrypted_data)
            user_information = bytes(info.array())
        elif error_data:
            user_information = bytes(error_data.array() if hasattr(error_data, "array") else error_data)
        else:
            user_information = _user_information(settings, cipher)
        data.setUInt8(BerType.CONTEXT | BerType.CONSTRUCTED | PduType.USER_INFORMATION)
        data.set(bytearray((2 + len(user_information), BerType.OCTET_STRING, len(user_information))))
        data.set(bytearray(user_information))
    data.setUInt8(len(data) - offset - 2, offset + 1)


_ORIGINAL_HANDLE_GLO_DED_REQUEST = GXDLMS.handleGloDedRequest


def _handle_glo_ded_request(cls: Any, settings: Any, data: Any) -> None:
    """Shim 16: decipher a glo-/ded- request with (tag, system title, key, authentication key) in place."""
    if settings.cipher is None:
        raise ValueError("Secure connection is not supported.")
    if data.moreData & RequestTypes.FRAME:
        data.data.position -= 1
        return
    data.data.position -= 1
    cipher = settings.cipher
    dedicated = cipher.dedicatedKey and settings.connected & ConnectionState.DLMS
    key = cipher.dedicatedKey if dedicated else cipher.blockCipherKey
    parameters = AesGcmParameter(0, settings.sourceSystemTitle, key, cipher.authenticationKey)
    plain = GXCiphering.decrypt(settings, parameters, data.data)
    data.data.clear()
    data.data.set(plain)
    data.command = Command(data.data.getUInt8())


def _install_module_shims() -> None:
    if getattr(_GXAPDU, "_villageami_aare_shim", False):
        return
    # Shim 11: the bugs are in the source text (a no-argument setUInt8 and the A4/AA lengths).
    source = inspect.getsource(_ORIGINAL_GENERATE_AARE)
    assert "data.setUInt8()" in source, "gurux fixed generateAARE: drop shim 11"
    _GXAPDU.generateAARE = classmethod(_generate_aare)
    _GXAPDU._villageami_aare_shim = True
    # Shim 16: the system title is passed where AesGcmParameter expects the tag.
    glo_source = inspect.getsource(_ORIGINAL_HANDLE_GLO_DED_REQUEST)
    assert re.search(r"AesGcmParameter\(\s*settings\.sourceSystemTitle", glo_source), "drop shim 16"
    GXDLMS.handleGloDedRequest = classmethod(_handle_glo_ded_request)
    # Shim 12: reply_to_HLS converts the octet-string answer with int().
    invoke_source = inspect.getsource(GXDLMSAssociationLogicalName.invoke)
    assert "int(e.parameters)" in invoke_source, "gurux fixed reply_to_HLS: drop shim 12"
    # Shim 13 (reset part).
    assert _probe_reset_zeroes_counter(), "gurux keeps the invocation counter on reset: drop shim 13"
    # Shim 5 (HLS part): methods the reply_to_HLS path calls.
    assert not hasattr(GXDLMSSettings, "setConnected"), "gurux added setConnected: drop shim 5"
    assert not hasattr(GXDLMSAssociationLogicalName, "getAssociationStatus"), "drop shim 5"

    def set_connected(self: Any, value: Any) -> None:
        self.connected = value

    def get_association_status(self: Any) -> Any:
        return self.associationStatus

    GXDLMSSettings.setConnected = set_connected
    GXDLMSAssociationLogicalName.getAssociationStatus = get_association_status


_install_module_shims()


class _GmacAssociation(GXDLMSAssociationLogicalName):  # type: ignore[misc]
    """Shim 12: reply_to_HLS_authentication for HLS-GMAC, with f(StoC) taken as the octet string it is."""

    def invoke(self, settings: Any, e: Any) -> Any:
        if e.index != 1 or settings.authentication != Authentication.HIGH_GMAC:
            return super().invoke(settings, e)
        answer = bytes(e.parameters or b"")
        # f(StoC) = SC (0x10) || IC (4 octets) || GMAC tag, computed with the client's system title.
        counter = int.from_bytes(answer[1:5], "big") if len(answer) >= 5 else 0
        expected = GXSecure.secure(
            settings, settings.cipher, counter, settings.stoCChallenge, settings.sourceSystemTitle
        )
        if bytes(expected) != answer:
            self.associationStatus = AssociationStatus.NON_ASSOCIATED
            return None
        self.associationStatus = AssociationStatus.ASSOCIATED
        return GXSecure.secure(
            settings,
            settings.cipher,
            settings.cipher.invocationCounter,
            settings.getCtoSChallenge(),
            settings.cipher.systemTitle,
        )


class GuruxSecureMeter(GuruxMeter, GXDLMSSecureServer):  # type: ignore[misc]
    """GuruxMeter that accepts HLS-GMAC (client SAP 1) with suite-0 authenticated+encrypted APDUs."""

    association_class = _GmacAssociation

    def __init__(self, interface: Any) -> None:
        super().__init__(interface)
        # Shim 10: the secure server stored its ciphering under the wrong attribute name.
        assert self.settings.cipher is None and isinstance(self.settings.ciphering, GXCiphering), (
            "gurux now sets settings.cipher: drop shim 10"
        )
        cipher = _KeepCounterCiphering(bytearray(METER_SYSTEM_TITLE))
        cipher.blockCipherKey = bytearray(ENCRYPTION_KEY)
        cipher.authenticationKey = bytearray(AUTHENTICATION_KEY)
        self.settings.cipher = cipher

    def onValidateAuthentication(self, authentication: Any, password: Any) -> Any:
        if authentication == Authentication.HIGH_GMAC:
            # The keys are proven in HLS passes 3/4; here only the client SAP is checked.
            if self.settings.clientAddress == HLS_CLIENT_SAP:
                return SourceDiagnostic.NONE
            return SourceDiagnostic.AUTHENTICATION_FAILURE
        return super().onValidateAuthentication(authentication, password)
