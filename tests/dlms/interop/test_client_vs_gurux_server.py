"""Interop: villageami's client against a meter built on gurux-dlms's server classes (test-only, GPL-2.0).

Scope (see gurux_server.py): TCP wrapper and HDLC over TCP, no security and LLS. HLS-GMAC against a gurux
server is in test_client_vs_gurux_server_gmac.py (gurux_secure_server.py holds the extra shims).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from gurux_dlms.enums import InterfaceType
from gurux_server import ENERGY_WH, LLS_PASSWORD, gurux_meter_server

from villageami.dlms.client import Authentication, ClientSettings, DlmsClient
from villageami.dlms.errors import AuthenticationFailure
from villageami.dlms.link import ApduLink
from villageami.dlms.transport import hdlc_tcp_link, tcp_wrapper_link

LINKS: dict[str, tuple[Any, Callable[[int], ApduLink]]] = {
    "wrapper": (InterfaceType.WRAPPER, lambda port: tcp_wrapper_link("127.0.0.1", port)),
    "hdlc": (InterfaceType.HDLC, lambda port: hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.5)),
    # 32-octet information fields: both directions are segmented.
    "hdlc-small-frames": (
        InterfaceType.HDLC,
        lambda port: hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.5, max_info=32),
    ),
}


@pytest.mark.parametrize("kind", LINKS)
def test_client_reads_and_switches_gurux_meter(kind: str) -> None:
    interface, make_link = LINKS[kind]

    async def scenario(port: int) -> None:
        link = make_link(port)
        async with DlmsClient(link, ClientSettings(response_timeout=3.0)) as client:
            energy = await client.read_register("1-0:1.8.0.255")  # value + scaler_unit by GET-with-list
            assert (energy.raw, energy.scaler, energy.unit_text) == (ENERGY_WH, 0, "Wh")
            assert (await client.get((3, "1-0:1.8.0.255", 3))).to_python() == [0, 30]
            serial, value = await client.get_with_list([(1, "0-0:96.1.1.255", 2), (3, "1-0:1.8.0.255", 2)])
            assert serial.to_python() in ("GX0001", b"GX0001")
            assert value.to_python() == ENERGY_WH
            clock = await client.read_clock()
            assert clock.year is not None and clock.year >= 2024
            await client.remote_disconnect()
            assert (await client.get((70, "0-0:96.3.10.255", 2))).value is False
            await client.remote_reconnect()
            assert (await client.get((70, "0-0:96.3.10.255", 2))).value is True

    with gurux_meter_server(interface) as (port, _meters):
        asyncio.run(asyncio.wait_for(scenario(port), 15))


@pytest.mark.parametrize("attribute", [(3, "1-0:99.99.0.255", 2)])
def test_client_reports_gurux_access_errors(attribute: tuple[int, str, int]) -> None:
    from villageami.dlms.errors import DlmsError

    async def scenario(port: int) -> None:
        async with DlmsClient(
            tcp_wrapper_link("127.0.0.1", port), ClientSettings(response_timeout=3.0)
        ) as client:
            with pytest.raises(DlmsError):
                await client.get(attribute)

    with gurux_meter_server() as (port, _meters):
        asyncio.run(asyncio.wait_for(scenario(port), 15))


def test_client_lls_against_gurux_meter() -> None:
    def settings(password: bytes) -> ClientSettings:
        return ClientSettings(
            client_sap=17, authentication=Authentication.LOW, password=password, response_timeout=3.0
        )

    async def scenario(port: int) -> None:
        link = tcp_wrapper_link("127.0.0.1", port, client=17)
        async with DlmsClient(link, settings(LLS_PASSWORD)) as client:
            assert (await client.read_register("1-0:1.8.0.255")).raw == ENERGY_WH
        client = DlmsClient(tcp_wrapper_link("127.0.0.1", port, client=17), settings(b"wrong"))
        with pytest.raises(AuthenticationFailure):
            await client.associate()
        await client.link.close()

    with gurux_meter_server() as (port, _meters):
        asyncio.run(asyncio.wait_for(scenario(port), 15))
