"""asyncio transports: wrapper and HDLC over TCP, HDLC over a pty; every wait bounded."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import tty
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest

from villageami.dlms.errors import LinkError, LinkTimeout
from villageami.dlms.hdlc import HdlcParameters
from villageami.dlms.transport import hdlc_serial_link, hdlc_tcp_link, tcp_wrapper_link
from villageami.dlms.wrapper import WrapperPdu
from villageami.sim.dlms_server import DlmsSimulator

GET_LDN = bytes.fromhex("c001c100010000 2a0000ff0200".replace(" ", ""))  # GET 1/0.0.42.0.0.255/2


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


@asynccontextmanager
async def silent_peer(reply: bytes = b"") -> AsyncIterator[int]:
    """A TCP listener that accepts and then says nothing (or ``reply`` once): a dead meter."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1)
        if reply:
            writer.write(reply)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wrapper_link_exchanges_with_simulator() -> None:
    async def scenario() -> None:
        async with DlmsSimulator(transport="wrapper") as sim:
            link = tcp_wrapper_link("127.0.0.1", sim.port)
            answer = await link.exchange(GET_LDN, 2.0)
            # Not associated yet: the simulator answers with an exception-response (tag 0xD8).
            assert answer[0] == 0xD8
            await link.close()
            await link.close()  # idempotent

    run(scenario())


def test_hdlc_tcp_link_negotiates_and_exchanges() -> None:
    async def scenario() -> None:
        sim = DlmsSimulator(transport="hdlc", hdlc_parameters=HdlcParameters(64, 64))
        async with sim:
            link = hdlc_tcp_link("127.0.0.1", sim.port, max_info=128)
            await link.open()
            await link.open()  # idempotent
            assert (link.negotiated.max_info_transmit, link.negotiated.max_info_receive) == (64, 64)
            assert (await link.exchange(GET_LDN, 2.0))[0] == 0xD8
            await link.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["wrapper", "hdlc"])
def test_dead_tcp_peer_gives_link_timeout_within_bound(kind: str) -> None:
    async def scenario() -> None:
        async with silent_peer() as port:
            started = time.monotonic()
            if kind == "wrapper":
                link = tcp_wrapper_link("127.0.0.1", port)
                with pytest.raises(LinkTimeout, match=r"no answer within 0\.5s"):
                    await link.exchange(GET_LDN, 0.5)
            else:
                link = hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.2, max_retries=2)
                with pytest.raises(LinkTimeout, match="after 2 retries"):
                    await link.open()
            assert time.monotonic() - started < 1.5
            await link.close()

    run(scenario())


def test_refused_connection_is_link_error() -> None:
    async def scenario() -> None:
        port = _free_port()
        for link in (tcp_wrapper_link("127.0.0.1", port), hdlc_tcp_link("127.0.0.1", port)):
            with pytest.raises(LinkError, match="cannot connect"):
                await link.open()

    run(scenario())


def test_bad_wrapper_header_from_peer_is_link_error() -> None:
    async def scenario() -> None:
        async with silent_peer(reply=bytes.fromhex("00020001001000020000")) as port:
            link = tcp_wrapper_link("127.0.0.1", port)
            with pytest.raises(LinkError, match="bad wrapper header"):
                await link.exchange(GET_LDN, 2.0)

    run(scenario())


def test_wrapper_link_skips_pdus_for_other_wports() -> None:
    other = WrapperPdu(2, 16, b"\x01").encode()
    ours = WrapperPdu(1, 16, b"\x02").encode()

    async def scenario() -> None:
        async with silent_peer(reply=other + ours) as port:
            link = tcp_wrapper_link("127.0.0.1", port)
            assert await link.exchange(GET_LDN, 2.0) == b"\x02"
            await link.close()

    run(scenario())


def test_wrapper_link_keeps_a_response_that_shares_a_read_with_a_push() -> None:
    # A meter's push and the response to our request can arrive in one TCP segment; neither may be lost.
    push = WrapperPdu(1, 16, bytes.fromhex("0f00000001000900")).encode()  # a data-notification
    response = WrapperPdu(1, 16, b"\xc4\x01\xc1\x00\x09\x03ABC").encode()

    async def scenario() -> None:
        async with silent_peer(reply=push + response) as port:
            link = tcp_wrapper_link("127.0.0.1", port)
            assert (await link.exchange(GET_LDN, 2.0))[0] == 0x0F
            assert (await link.receive(0.5))[0] == 0xC4
            with pytest.raises(LinkTimeout):
                await link.receive(0.2)
            await link.close()

    run(scenario())


def test_serial_link_on_silent_pty_times_out() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)

    async def scenario() -> None:
        link = hdlc_serial_link(os.ttyname(slave), baud=9600, frame_timeout=0.15, max_retries=1)
        started = time.monotonic()
        with pytest.raises(LinkTimeout):
            await link.open()
        assert time.monotonic() - started < 1.5
        await link.close()

    try:
        run(scenario())
        # The link did write: SNRM plus one retry reached the other end of the line.
        assert os.read(master, 4096).count(b"\x7e\xa0") == 2
    finally:
        os.close(master)
        os.close(slave)


def test_serial_link_missing_device_is_link_error() -> None:
    async def scenario() -> None:
        with pytest.raises(LinkError, match="cannot open"):
            await hdlc_serial_link("/dev/does-not-exist-villageami").open()

    run(scenario())


def test_hdlc_link_recovers_after_timeout_with_new_snrm() -> None:
    async def scenario() -> None:
        from villageami.sim.dlms_server import FaultMode

        async with DlmsSimulator(transport="hdlc") as sim:
            link = hdlc_tcp_link("127.0.0.1", sim.port, frame_timeout=0.2, max_retries=1)
            await link.open()
            sim.fault = FaultMode.NO_ANSWER
            with pytest.raises(LinkTimeout):
                await link.exchange(GET_LDN, 2.0)
            sim.fault = FaultMode.NONE
            assert (await link.exchange(GET_LDN, 2.0))[0] == 0xD8  # reconnects (SNRM) by itself
            assert sim.connections == 2
            await link.close()

    run(scenario())
