"""Interop: villageami's client with HLS-GMAC (suite 0, authenticated and encrypted APDUs, client SAP 1)
against a meter built on gurux-dlms's secure server classes (test-only, GPL-2.0; see gurux_secure_server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from gurux_dlms.enums import Authentication as GuruxAuthentication
from gurux_dlms.enums import InterfaceType
from gurux_dlms.objects.enums import AssociationStatus, ControlState
from gurux_secure_server import (
    AUTHENTICATION_KEY,
    ENCRYPTION_KEY,
    HLS_CLIENT_SAP,
    METER_SYSTEM_TITLE,
    GuruxSecureMeter,
)
from gurux_server import ENERGY_WH, GuruxMeter, gurux_meter_server

from villageami.dlms.axdr import Data
from villageami.dlms.client import Authentication, ClientSettings, DlmsClient
from villageami.dlms.errors import AssociationRejected, CipheringError, DlmsError
from villageami.dlms.link import ApduLink
from villageami.dlms.transport import hdlc_tcp_link, tcp_wrapper_link

CLIENT_SYSTEM_TITLE = b"VAMI0001"
WRAPPER_HEADER = 8

# xDLMS APDU tags seen on the wire (IEC 62056-5-3).
AARQ, AARE, RLRQ, RLRE = 0x60, 0x61, 0x62, 0x63
GLO_GET_REQUEST, GLO_ACTION_REQUEST = 0xC8, 0xCB
GLO_GET_RESPONSE, GLO_ACTION_RESPONSE, GENERAL_GLO_CIPHERING = 0xCC, 0xCF, 0xDB


class RecordingSecureMeter(GuruxSecureMeter):
    """Keeps every (request, answer) byte string so the test can check what crossed the wire."""

    def __init__(self, interface: Any) -> None:
        super().__init__(interface)
        self.exchanges: list[tuple[bytes, bytes]] = []

    def answer(self, data: bytes) -> bytes:
        reply = super().answer(data)
        self.exchanges.append((bytes(data), reply))
        return reply


LINKS: dict[str, tuple[Any, Callable[[int], ApduLink]]] = {
    "wrapper": (
        InterfaceType.WRAPPER,
        lambda port: tcp_wrapper_link("127.0.0.1", port, client=HLS_CLIENT_SAP),
    ),
    "hdlc": (
        InterfaceType.HDLC,
        lambda port: hdlc_tcp_link("127.0.0.1", port, client=HLS_CLIENT_SAP, frame_timeout=0.5),
    ),
}


def _settings(
    encryption_key: bytes = ENCRYPTION_KEY, authentication_key: bytes = AUTHENTICATION_KEY
) -> ClientSettings:
    return ClientSettings(
        client_sap=HLS_CLIENT_SAP,
        authentication=Authentication.HLS_GMAC,
        system_title=CLIENT_SYSTEM_TITLE,
        encryption_key=encryption_key,
        authentication_key=authentication_key,
        response_timeout=3.0,
    )


def _only_meter(meters: list[GuruxMeter]) -> RecordingSecureMeter:
    assert len(meters) == 1
    meter = meters[0]
    assert isinstance(meter, RecordingSecureMeter)
    return meter


def _output_state(meter: GuruxMeter) -> object:
    """The gurux disconnect control's own output_state (read on the meter side, not over DLMS)."""
    return meter.switch.outputState


@pytest.mark.parametrize("kind", LINKS)
def test_hls_gmac_client_reads_and_switches_gurux_meter(kind: str) -> None:
    interface, make_link = LINKS[kind]

    async def scenario(port: int, meters: list[GuruxMeter]) -> DlmsClient:
        client = DlmsClient(make_link(port), _settings())
        async with client:
            meter = _only_meter(meters)
            # Both HLS passes verified: gurux checked our f(StoC), we checked its f(CtoS).
            assert meter.settings.authentication == GuruxAuthentication.HIGH_GMAC
            assert meter.items[0].associationStatus == AssociationStatus.ASSOCIATED
            assert bytes(meter.settings.sourceSystemTitle) == CLIENT_SYSTEM_TITLE
            assert client.session.server_system_title == METER_SYSTEM_TITLE

            energy = await client.read_register("1-0:1.8.0.255")
            assert (energy.raw, energy.scaler, energy.unit_text) == (ENERGY_WH, 0, "Wh")
            assert (await client.get((3, "1-0:1.8.0.255", 2))).to_python() == ENERGY_WH
            assert (await client.get((3, "1-0:1.8.0.255", 3))).to_python() == [0, 30]
            serial, value = await client.get_with_list([(1, "0-0:96.1.1.255", 2), (3, "1-0:1.8.0.255", 2)])
            assert isinstance(serial, Data) and isinstance(value, Data)
            assert serial.to_python() in ("GX0001", b"GX0001")
            assert value.to_python() == ENERGY_WH
            clock = await client.read_clock()
            assert clock.year is not None and clock.year >= 2024

            await client.remote_disconnect()
            assert _output_state(meter) is False
            assert meter.switch.controlState == ControlState.DISCONNECTED
            assert (await client.get((70, "0-0:96.3.10.255", 2))).value is False
            await client.remote_reconnect()
            assert _output_state(meter) is True
            assert (await client.get((70, "0-0:96.3.10.255", 2))).value is True
        assert not client.session.associated
        return client

    with gurux_meter_server(interface, RecordingSecureMeter) as (port, meters):
        client = asyncio.run(asyncio.wait_for(scenario(port, meters), 15))
        meter = _only_meter(meters)
    # The last counter we accepted is the last one gurux used (its counter is the next one).
    assert client.server_invocation_counter == meter.settings.cipher.invocationCounter - 1
    assert client.invocation_counter > 1
    if kind == "wrapper":
        requests = [request[WRAPPER_HEADER] for request, _ in meter.exchanges]
        answers = [answer[WRAPPER_HEADER] for _, answer in meter.exchanges]
        # Everything between the AARQ and the RLRQ travelled ciphered, both ways.
        assert requests[0] == AARQ and answers[0] == AARE
        assert requests[-1] == RLRQ and answers[-1] == RLRE
        assert set(requests[1:-1]) == {GLO_GET_REQUEST, GLO_ACTION_REQUEST}
        assert set(answers[1:-1]) <= {GLO_GET_RESPONSE, GLO_ACTION_RESPONSE, GENERAL_GLO_CIPHERING}


WRONG_KEYS = {
    # gurux never checks GCM tags, so it deciphers our AARQ and answers; we reject its AARE's tag.
    "authentication-key": (ENCRYPTION_KEY, bytes(16), CipheringError, "tag does not verify"),
    # gurux cannot parse the garbage it deciphers: rejected-permanent, no user-information.
    "encryption-key": (bytes(16), AUTHENTICATION_KEY, AssociationRejected, "wrong encryption key"),
}


@pytest.mark.parametrize("wrong", WRONG_KEYS)
def test_hls_gmac_client_with_a_wrong_key_fails_cleanly(wrong: str) -> None:
    encryption_key, authentication_key, error, message = WRONG_KEYS[wrong]

    async def scenario(port: int) -> DlmsError:
        client = DlmsClient(
            tcp_wrapper_link("127.0.0.1", port, client=HLS_CLIENT_SAP),
            _settings(encryption_key, authentication_key),
        )
        try:
            with pytest.raises(error, match=message) as caught:
                await client.associate()
        finally:
            await client.link.close()
        assert not client.session.associated
        return caught.value

    with gurux_meter_server(InterfaceType.WRAPPER, RecordingSecureMeter) as (port, meters):
        asyncio.run(asyncio.wait_for(scenario(port), 10))
        meter = _only_meter(meters)
    assert len(meter.exchanges) == 1  # AARQ/AARE only: HLS pass 3 was never sent
    assert meter.items[0].associationStatus != AssociationStatus.ASSOCIATED
