"""Adversarial review of the HDLC and wrapper link layers: dead, slow, babbling and lying meters.

Every scenario must end in the project's own errors (LinkError/LinkTimeout/DecodeError) within its bound,
with bounded buffers. Fake meters are in-process TCP servers on port 0.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from villageami.dlms.errors import LinkError, LinkTimeout
from villageami.dlms.hdlc import (
    LLC_RESPONSE,
    ApduReceived,
    FrameKind,
    HdlcClientConnection,
    HdlcFrame,
    HdlcParameters,
    HdlcServerConnection,
    HdlcStreamDecoder,
    LinkDisconnected,
    LinkState,
    client_address,
    control_octet,
    server_address,
)
from villageami.dlms.transport import hdlc_serial_link, hdlc_tcp_link, tcp_wrapper_link
from villageami.dlms.wrapper import WrapperPdu, WrapperStreamDecoder

CLIENT = client_address(16)
SERVER = server_address(1)
REQUEST = bytes.fromhex("c001c100010000 2a0000ff0200".replace(" ", ""))


def run(coro: Awaitable[None], bound: float = 3.0) -> None:
    asyncio.run(asyncio.wait_for(coro, bound))  # type: ignore[arg-type]


def server_frame(kind: FrameKind, *, ns: int = 0, nr: int = 0, info: bytes = b"", seg: bool = False) -> bytes:
    control = control_octet(kind, send_seq=ns, recv_seq=nr)
    return HdlcFrame(CLIENT, SERVER, control, info, seg).encode()


def connected_client(max_retries: int = 2) -> HdlcClientConnection:
    client = HdlcClientConnection(CLIENT, SERVER, max_retries=max_retries)
    client.connect()
    client.receive_data(server_frame(FrameKind.UA))
    assert client.state is LinkState.CONNECTED
    return client


# --------------------------------------------------------------------------------- stream decoders


def test_hdlc_stream_decoder_buffer_stays_bounded_under_garbage_and_flags() -> None:
    decoder = HdlcStreamDecoder()
    rng = random.Random(3)
    # Random junk, endless flags, and flag + a plausible format field that never completes.
    feeds = [bytes(rng.randrange(256) for _ in range(4096)) for _ in range(8)]
    feeds += [b"\x7e" * 4096] * 4 + [b"\x7e\xa7\xff" + bytes(4093)] * 8
    for chunk in feeds:
        assert decoder.feed(chunk) == []
        assert decoder.buffered <= 16 * 0x7FF + len(chunk)
    # And a real frame after all that still gets through.
    frames = decoder.feed(server_frame(FrameKind.UA))
    assert [f.kind for f in frames] == [FrameKind.UA]


def test_wrapper_stream_decoder_buffer_is_bounded_by_the_length_field() -> None:
    decoder = WrapperStreamDecoder(max_length=100)
    with pytest.raises(Exception) as info:
        decoder.feed(bytes.fromhex("0001000100100065"))  # length 101 > 100
    assert type(info.value).__name__ == "DecodeError"
    assert decoder.buffered == 0


# ------------------------------------------------------------------------------- sans-IO HDLC machine


def test_segmented_response_that_never_ends_is_a_link_error_not_unbounded_memory() -> None:
    client = connected_client()
    client.send_apdu(REQUEST)
    segment = LLC_RESPONSE + bytes(125)
    with pytest.raises(LinkError, match="segmented"):
        for n in range(2000):  # 250 kB: far above any APDU a DLMS client accepts (64 KiB)
            client.receive_data(server_frame(FrameKind.I, ns=n & 7, nr=1, info=segment, seg=True))
            client.data_to_send()
    assert n * len(segment) <= 0x10000 + 2 * len(segment)


@pytest.mark.parametrize("field", ["max_info_transmit", "max_info_receive"])
def test_ua_with_zero_max_info_length_is_a_link_error(field: str) -> None:
    client = HdlcClientConnection(CLIENT, SERVER)
    client.connect()
    params = HdlcParameters(**{field: 0})
    with pytest.raises(LinkError, match="max info"):
        client.receive_data(server_frame(FrameKind.UA, info=params.encode()))
    assert client.state is LinkState.DISCONNECTED


def test_dm_in_the_middle_of_a_session_disconnects() -> None:
    client = connected_client()
    client.send_apdu(REQUEST)
    events = client.receive_data(server_frame(FrameKind.DM))
    assert events == [LinkDisconnected("DM")]
    assert client.state is LinkState.DISCONNECTED


def test_frmr_is_a_link_error() -> None:
    client = connected_client()
    client.send_apdu(REQUEST)
    with pytest.raises(LinkError, match="FRMR"):
        client.receive_data(server_frame(FrameKind.FRMR, info=b"\x10\x00\x01"))


def test_rnr_forever_ends_in_link_timeout_after_the_retries() -> None:
    client = connected_client(max_retries=2)
    client.send_apdu(REQUEST)
    with pytest.raises(LinkTimeout):
        for _ in range(10):
            assert client.receive_data(server_frame(FrameKind.RNR, nr=1)) == []
            client.on_timeout()


def test_frames_for_other_stations_and_wrong_sequence_numbers_are_not_answers() -> None:
    client = connected_client()
    client.send_apdu(REQUEST)
    other_client = HdlcFrame(client_address(17), SERVER, control_octet(FrameKind.I), LLC_RESPONSE + b"\x01")
    other_server = HdlcFrame(CLIENT, server_address(2), control_octet(FrameKind.I), LLC_RESPONSE + b"\x02")
    assert client.receive_data(other_client.encode() + other_server.encode()) == []
    # N(S)=5 when 0 is due: a stale or invented frame; the client asks again with RR N(R)=0.
    assert client.receive_data(server_frame(FrameKind.I, ns=5, nr=1, info=LLC_RESPONSE + b"\x03")) == []
    rr = HdlcStreamDecoder().feed(client.data_to_send())
    assert [(f.kind, f.recv_seq) for f in rr] == [(FrameKind.RR, 0)]
    events = client.receive_data(server_frame(FrameKind.I, ns=0, nr=1, info=LLC_RESPONSE + b"\x04"))
    assert events == [ApduReceived(b"\x04", SERVER)]


# ---------------------------------------------------------------------------------- fake TCP meters


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_meter(handler: Handler) -> AsyncIterator[int]:
    tasks: list[asyncio.Task[None]] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for task in tasks:
            task.cancel()
        for writer in writers:
            writer.close()
        server.close()


def hdlc_meter(
    *, drop_first_answer: bool = False, answer_delay: float = 0.0, babble: bool = False
) -> Handler:
    """A one-server HDLC meter that echoes each request APDU back; optional faults."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = HdlcServerConnection(SERVER)
        dropped = not drop_first_answer

        async def babbler() -> None:
            # Traffic of another station on the same bus, far more often than the frame timeout.
            foreign = HdlcFrame(client_address(99), SERVER, control_octet(FrameKind.RR)).encode()
            while True:
                writer.write(foreign)
                await asyncio.sleep(0.02)

        chatter = asyncio.create_task(babbler()) if babble else None
        try:
            while data := await reader.read(4096):
                for event in server.receive_data(data):
                    if isinstance(event, ApduReceived):
                        await asyncio.sleep(answer_delay)
                        server.send_apdu(event.source, event.apdu)
                        if not dropped:
                            dropped = True
                            server.data_to_send()  # the answer is lost on the line
                            continue
                writer.write(server.data_to_send())
        finally:
            if chatter:
                chatter.cancel()

    return handler


def test_hdlc_link_polls_for_a_lost_answer_while_other_stations_babble() -> None:
    """Foreign frames used to postpone the frame timer for ever: no RR poll, LinkTimeout at the deadline."""

    async def scenario() -> None:
        async with fake_meter(hdlc_meter(drop_first_answer=True, babble=True)) as port:
            link = hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.15, max_retries=2)
            await link.open()
            started = time.monotonic()
            assert await link.exchange(REQUEST, 1.5) == REQUEST
            assert time.monotonic() - started < 1.0
            await link.close()

    run(scenario())


def test_hdlc_slow_meter_one_octet_at_a_time_is_bounded_by_the_exchange_timeout() -> None:
    answer = server_frame(FrameKind.I, ns=0, nr=1, info=LLC_RESPONSE + bytes(100))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = HdlcServerConnection(SERVER)
        while data := await reader.read(4096):
            if not any(isinstance(e, ApduReceived) for e in server.receive_data(data)):
                writer.write(server.data_to_send())  # UA to the SNRM
                continue
            for octet in answer:  # a trickle: the frame never completes within the deadline
                writer.write(bytes([octet]))
                await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with fake_meter(handler) as port:
            link = hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.1, max_retries=3)
            await link.open()
            started = time.monotonic()
            with pytest.raises(LinkTimeout):
                await link.exchange(REQUEST, 0.4)
            assert 0.35 < time.monotonic() - started < 0.8

    run(scenario())


def test_hdlc_exchange_cancelled_by_the_caller_leaves_a_usable_link() -> None:
    """A cancelled exchange left a request 'outstanding': the next call failed with LinkError."""

    async def scenario() -> None:
        async with fake_meter(hdlc_meter(answer_delay=0.2)) as port:
            link = hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.5, max_retries=1)
            await link.open()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(link.exchange(b"\xc0\x01\xc1stale", 2.0), 0.05)
            assert await link.exchange(REQUEST, 2.0) == REQUEST
            await link.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["hdlc", "wrapper"])
def test_peer_closing_mid_frame_is_a_prompt_link_error(kind: str) -> None:
    half = (
        server_frame(FrameKind.I, info=LLC_RESPONSE + bytes(40))[:20]
        if kind == "hdlc"
        else WrapperPdu(1, 16, bytes(40)).encode()[:20]
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = HdlcServerConnection(SERVER)
        data = await reader.read(4096)
        if kind == "hdlc":
            server.receive_data(data)
            writer.write(server.data_to_send())  # UA
            await reader.read(4096)
        writer.write(half)
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with fake_meter(handler) as port:
            link = (
                hdlc_tcp_link("127.0.0.1", port, frame_timeout=1.0)
                if kind == "hdlc"
                else tcp_wrapper_link("127.0.0.1", port)
            )
            await link.open()
            started = time.monotonic()
            with pytest.raises(LinkError, match="closed"):
                await link.exchange(REQUEST, 2.0)
            assert time.monotonic() - started < 0.5

    run(scenario())


# ----------------------------------------------------------------------------------------- wrapper


def wrapper_echo_meter(delay: float = 0.0) -> Handler:
    """Answers every wrapper PDU with its own payload, after ``delay``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = WrapperStreamDecoder()
        while data := await reader.read(4096):
            for pdu in decoder.feed(data):
                await asyncio.sleep(delay)
                writer.write(WrapperPdu(pdu.destination_wport, pdu.source_wport, pdu.payload).encode())

    return handler


def test_wrapper_oversized_length_with_a_trickle_times_out_at_the_deadline() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(bytes.fromhex("000100010010ffff"))  # 65535 octets announced
        while True:
            writer.write(b"\x00")
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with fake_meter(handler) as port:
            link = tcp_wrapper_link("127.0.0.1", port)
            started = time.monotonic()
            with pytest.raises(LinkTimeout):
                await link.exchange(REQUEST, 0.3)
            assert time.monotonic() - started < 0.7

    run(scenario())


def test_concurrent_exchanges_on_one_wrapper_link_are_serialised() -> None:
    """Two readers on one StreamReader raised RuntimeError; each caller must get its own answer."""

    async def scenario() -> None:
        async with fake_meter(wrapper_echo_meter(delay=0.01)) as port:
            link = tcp_wrapper_link("127.0.0.1", port)
            await link.open()
            payloads = [bytes([n]) * 3 for n in range(5)]
            answers = await asyncio.gather(*(link.exchange(p, 1.0) for p in payloads))
            assert answers == payloads
            await link.close()

    run(scenario())


def test_wrapper_exchange_cancelled_by_the_caller_does_not_hand_its_late_answer_to_the_next() -> None:
    async def scenario() -> None:
        async with fake_meter(wrapper_echo_meter(delay=0.15)) as port:
            link = tcp_wrapper_link("127.0.0.1", port)
            await link.open()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(link.exchange(b"stale", 1.0), 0.05)
            await asyncio.sleep(0.2)  # the late answer to "stale" arrives
            assert await link.exchange(b"fresh", 1.0) == b"fresh"
            await link.close()

    run(scenario())


# --------------------------------------------------------------------------------------- transports


def test_connect_to_a_blackhole_is_bounded() -> None:
    async def scenario() -> None:
        # 192.0.2.0/24 is TEST-NET-1: never routed; either unreachable at once or silent until the bound.
        link = tcp_wrapper_link("192.0.2.1", 4059, connect_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(LinkError):
            await link.open()
        assert time.monotonic() - started < 0.6

    run(scenario())


def test_serial_device_that_disappears_mid_session_is_a_link_error() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)

    async def scenario() -> None:
        link = hdlc_serial_link(path, frame_timeout=0.2, max_retries=1)
        server = HdlcServerConnection(SERVER)
        loop = asyncio.get_running_loop()

        async def answer_snrm() -> None:
            data = await loop.run_in_executor(None, os.read, master, 4096)
            server.receive_data(data)
            os.write(master, server.data_to_send())

        await asyncio.gather(link.open(), answer_snrm())
        os.close(master)  # the USB adapter is unplugged
        started = time.monotonic()
        with pytest.raises(LinkError):
            await link.exchange(REQUEST, 1.0)
        assert time.monotonic() - started < 1.5
        await link.close()

    try:
        run(scenario())
    finally:
        os.close(slave)


def test_concurrent_exchanges_on_one_hdlc_link_are_serialised() -> None:
    async def scenario() -> None:
        async with fake_meter(hdlc_meter(answer_delay=0.01)) as port:
            link = hdlc_tcp_link("127.0.0.1", port, frame_timeout=0.5, max_retries=1)
            payloads = [b"\xc0\x01\xc1" + bytes([n]) * 3 for n in range(5)]
            answers = await asyncio.gather(*(link.exchange(p, 1.5) for p in payloads))
            assert answers == payloads
            await link.close()

    run(scenario())
