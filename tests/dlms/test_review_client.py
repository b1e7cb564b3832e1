"""Adversarial review of DlmsClient: lying, babbling and hanging meters end in the project's own errors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from villageami.dlms.apdu import (
    Conformance,
    DataNotification,
    ExceptionResponse,
    ExceptionServiceError,
    GetResponseNormal,
    GetResponseWithDataBlock,
    GetResponseWithList,
    InvokeIdAndPriority,
    StateError,
    decode_apdu,
)
from villageami.dlms.axdr import Data
from villageami.dlms.client import BLOCK_OVERHEAD, ClientSettings, DlmsClient
from villageami.dlms.errors import (
    AssociationError,
    DecodeError,
    DlmsError,
    LinkError,
    LinkTimeout,
    ServiceError,
)
from villageami.dlms.transport import hdlc_tcp_link, tcp_wrapper_link
from villageami.dlms.wrapper import WrapperStreamDecoder
from villageami.sim.dlms_server import DlmsSimulator

SERIAL = (1, "0-0:96.1.1.255", 2)
VOLTAGE = (3, "1-0:32.7.0.255", 2)


def run(coro: Awaitable[None], bound: float = 3.0) -> None:
    """Run a scenario; a hang shows up as TimeoutError from this bound, never as a stuck test."""
    asyncio.run(asyncio.wait_for(coro, bound))  # type: ignore[arg-type]


def invoke_id_of(request: bytes) -> int:
    return request[2] & 0x0F


class ScriptedLink:
    """An ApduLink whose answers come from ``answer(request) -> response``; ``pushes`` feeds ``receive``."""

    def __init__(
        self,
        answer: Callable[[bytes], bytes],
        *,
        receive: Callable[[], Awaitable[bytes]] | None = None,
        open_delay: float = 0.0,
    ) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._receive = receive
        self.open_delay = open_delay
        self.closed = 0

    async def open(self) -> None:
        await asyncio.sleep(self.open_delay)

    async def exchange(self, apdu: bytes, timeout: float) -> bytes:
        self.requests.append(apdu)
        await asyncio.sleep(0)
        return self.answer(apdu)

    async def close(self) -> None:
        self.closed += 1
        await asyncio.sleep(self.open_delay)

    def __getattr__(self, name: str) -> Any:
        if name == "receive" and self._receive is not None:
            receive = self._receive

            async def _receive(timeout: float) -> bytes:
                return await receive()

            return _receive
        raise AttributeError(name)


def associated_client(link: Any, **settings: Any) -> DlmsClient:
    client = DlmsClient(link, ClientSettings(**settings))
    # These tests are about what follows the association; pretend the AARE was accepted.
    client.session.associated = True
    client.session.negotiated_conformance = Conformance.GET | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    return client


# ----------------------------------------------------------------------------------- block transfer


def test_block_transfer_that_never_ends_is_refused_not_accumulated_forever() -> None:
    """A meter that keeps sending blocks without last-block: bounded, DecodeError, not a memory leak."""
    block = bytes(1000)

    def endless(request: bytes) -> bytes:
        number = 1 if request[1] == 1 else int.from_bytes(request[3:7], "big") + 1
        iip = InvokeIdAndPriority(invoke_id_of(request), True, True)
        return GetResponseWithDataBlock(False, number, block, iip).encode()

    link = ScriptedLink(endless)
    limit = 20_000

    async def scenario() -> None:
        client = associated_client(link, response_timeout=0.5, max_block_transfer_octets=limit)
        with pytest.raises(DecodeError, match="block transfer"):
            await client.get(SERIAL)

    run(scenario())
    # Refused as soon as the limit is passed, not after "whatever the meter cares to send".
    assert len(link.requests) == limit // (len(block) + BLOCK_OVERHEAD) + 1


@pytest.mark.parametrize("numbers", [(1, 1), (1, 3), (2,)])
def test_block_numbers_repeated_or_jumping_are_decode_errors(numbers: tuple[int, ...]) -> None:
    script = iter(numbers)

    def blocks(request: bytes) -> bytes:
        iip = InvokeIdAndPriority(invoke_id_of(request), True, True)
        return GetResponseWithDataBlock(False, next(script), b"\x09\x01A", iip).encode()

    async def scenario() -> None:
        with pytest.raises(DecodeError, match="block"):
            await associated_client(ScriptedLink(blocks)).get(SERIAL)

    run(scenario())


# ------------------------------------------------------------------------------------ lying answers


def test_get_with_list_answer_to_a_get_normal_is_a_decode_error() -> None:
    """An empty list answer to a single GET used to raise IndexError."""

    def empty_list(request: bytes) -> bytes:
        return GetResponseWithList((), InvokeIdAndPriority(invoke_id_of(request), True, True)).encode()

    async def scenario() -> None:
        with pytest.raises(DecodeError, match="get-response-with-list"):
            await associated_client(ScriptedLink(empty_list)).get(SERIAL)

    run(scenario())


def test_get_normal_answer_to_a_get_with_list_is_a_decode_error() -> None:
    def normal(request: bytes) -> bytes:
        iip = InvokeIdAndPriority(invoke_id_of(request), True, True)
        return GetResponseNormal(Data.octet_string(b"x"), iip).encode()

    async def scenario() -> None:
        with pytest.raises(DecodeError):
            await associated_client(ScriptedLink(normal)).get_with_list([SERIAL, VOLTAGE])

    run(scenario())


def test_response_with_another_invoke_id_is_a_decode_error() -> None:
    def wrong_id(request: bytes) -> bytes:
        iip = InvokeIdAndPriority((invoke_id_of(request) + 1) & 0x0F, True, True)
        return GetResponseNormal(Data.octet_string(b"x"), iip).encode()

    async def scenario() -> None:
        with pytest.raises(DecodeError, match="invoke id"):
            await associated_client(ScriptedLink(wrong_id)).get(SERIAL)

    run(scenario())


def test_exception_response_to_every_request_is_a_service_or_association_error() -> None:
    refusal = ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.SERVICE_NOT_SUPPORTED)

    async def scenario() -> None:
        link = ScriptedLink(lambda _request: refusal.encode())
        client = DlmsClient(link, ClientSettings())
        with pytest.raises(AssociationError):
            await client.associate()
        client = associated_client(link)
        with pytest.raises(ServiceError):
            await client.get(SERIAL)
        with pytest.raises(ServiceError):
            await client.set(SERIAL, Data.octet_string(b"x"))
        with pytest.raises(ServiceError):
            await client.action((70, "0-0:96.3.10.255", 1))
        with pytest.raises(AssociationError):
            await client.release()

    run(scenario())


# ------------------------------------------------------------------------------------ babbling meter


def test_pushes_forever_instead_of_the_response_end_at_the_response_timeout() -> None:
    """Each push restarted the wait, so a meter pushing every 20 ms kept get() waiting for ever."""
    push = DataNotification(0x40000000, Data.octet_string(b"tick")).encode()

    async def next_push() -> bytes:
        await asyncio.sleep(0.02)
        return push

    link = ScriptedLink(lambda _request: push, receive=next_push)

    async def scenario() -> None:
        client = associated_client(link, response_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(LinkTimeout, match="notification"):
            await client.get(SERIAL)
        assert time.monotonic() - started < 1.0
        assert not client.session.associated

    run(scenario())


# ------------------------------------------------------------------------------------ hanging links


def test_link_open_slower_than_connect_timeout_is_link_timeout() -> None:
    """asyncio's bare TimeoutError escaped from associate() when open() outlasted connect_timeout."""

    async def scenario() -> None:
        client = DlmsClient(ScriptedLink(lambda r: r, open_delay=5.0), ClientSettings(connect_timeout=0.1))
        with pytest.raises(LinkTimeout, match="open"):
            await client.associate()

    run(scenario())


def test_link_close_slower_than_connect_timeout_is_link_timeout() -> None:
    async def scenario() -> None:
        link = ScriptedLink(lambda r: r)
        client = DlmsClient(link, ClientSettings(connect_timeout=0.1))
        link.open_delay = 5.0
        with pytest.raises(LinkTimeout, match="close"):
            await client.release()

    run(scenario())


# --------------------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("transport", ["hdlc", "wrapper"])
def test_concurrent_requests_on_one_client_are_serialised(transport: str) -> None:
    """Two coroutines sharing one DlmsClient: both get their own answer (no invoke-id mix-up)."""

    async def scenario() -> None:
        async with DlmsSimulator(transport=transport) as sim:
            if transport == "hdlc":
                link: Any = hdlc_tcp_link(sim.host, sim.port, frame_timeout=0.5, max_retries=1)
            else:
                link = tcp_wrapper_link(sim.host, sim.port)
            async with DlmsClient(link, ClientSettings(response_timeout=2.0)) as client:
                results = await asyncio.gather(*(client.get(SERIAL) for _ in range(6)))
                assert {r.to_python() for r in results} == {sim.meter(1).serial}
                values = await asyncio.gather(client.read_register(VOLTAGE[1]), client.get(SERIAL))
                assert values[1].to_python() == sim.meter(1).serial

    run(scenario())


def test_every_error_of_a_scripted_garbage_meter_is_a_dlms_error() -> None:
    """Random octets as every answer: DlmsError subclasses only."""
    import random

    rng = random.Random(7)

    def garbage(_request: bytes) -> bytes:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))

    async def scenario() -> None:
        client = associated_client(ScriptedLink(garbage))
        for _ in range(200):
            with contextlib.suppress(DlmsError):
                await client.get(SERIAL)
            client.session.associated = True

    run(scenario())


def test_decode_of_an_unknown_apdu_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_apdu(b"\xff\x00")


def test_link_error_marks_the_session_unassociated() -> None:
    def broken(_request: bytes) -> bytes:
        raise LinkError("meter went away")

    async def scenario() -> None:
        client = associated_client(ScriptedLink(broken))
        with pytest.raises(LinkError):
            await client.get(SERIAL)
        with pytest.raises(AssociationError):
            await client.get(SERIAL)

    run(scenario())


# ------------------------------------------------------------------------------- out-of-step answers


@asynccontextmanager
async def duplicating_proxy(target_port: int, duplicate: int) -> AsyncIterator[int]:
    """A wrapper proxy in front of the simulator that sends the meter's ``duplicate``-th answer twice."""
    tasks: list[asyncio.Task[None]] = []
    answers = [0]  # over all connections: only one answer is ever duplicated

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dup: int | None) -> None:
        decoder = WrapperStreamDecoder()
        while data := await reader.read(4096):
            for pdu in decoder.feed(data):
                if dup is None:
                    writer.write(pdu.encode())
                    continue
                answers[0] += 1
                writer.write(pdu.encode() * (2 if answers[0] == dup else 1))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        meter_reader, meter_writer = await asyncio.open_connection("127.0.0.1", target_port)
        tasks.append(asyncio.create_task(pump(reader, meter_writer, None)))
        with contextlib.suppress(ConnectionError):
            await pump(meter_reader, writer, duplicate)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for task in tasks:
            task.cancel()
        server.close()


def test_a_duplicated_answer_does_not_leave_the_client_out_of_step_for_ever() -> None:
    """The duplicate answered the next request (wrong invoke id), the next answer the one after... for
    ever, and even a new association got a stale get-response instead of its AARE."""

    async def scenario() -> None:
        async with DlmsSimulator(transport="wrapper") as sim, duplicating_proxy(sim.port, 2) as port:
            client = DlmsClient(tcp_wrapper_link("127.0.0.1", port), ClientSettings(response_timeout=1.0))
            await client.associate()
            serial = sim.meter(1).serial
            assert (await client.get(SERIAL)).to_python() == serial  # answer 2, sent twice
            with pytest.raises(DecodeError, match="invoke id"):
                await client.get(SERIAL)  # gets the duplicate
            await client.associate()  # what the meter driver does before each read
            assert (await client.get(SERIAL)).to_python() == serial
            await client.release()

    run(scenario())


def test_block_transfer_of_empty_blocks_that_never_ends_is_refused() -> None:
    """Empty blocks never grow the reassembly, so a size limit alone let get() loop ~2^32 times."""

    def empty_blocks(request: bytes) -> bytes:
        number = 1 if request[1] == 1 else int.from_bytes(request[3:7], "big") + 1
        iip = InvokeIdAndPriority(invoke_id_of(request), True, True)
        return GetResponseWithDataBlock(False, number, b"", iip).encode()

    link = ScriptedLink(empty_blocks)

    async def scenario() -> None:
        client = associated_client(link, max_block_transfer_octets=20_000)
        with pytest.raises(DecodeError, match="block transfer"):
            await client.get(SERIAL)

    run(scenario())
    assert len(link.requests) == 20_000 // BLOCK_OVERHEAD + 1


def test_pushes_kept_by_a_long_lived_client_are_bounded() -> None:
    """Nothing drains session.notifications; a pushing meter used to grow it for the life of the client."""
    pushes = [DataNotification(0x40000000, Data.octet_string(str(n).encode())).encode() for n in range(600)]
    feed = iter(pushes)

    async def next_apdu() -> bytes:
        return next(feed, b"")

    def respond(request: bytes) -> bytes:
        return next(feed)

    link = ScriptedLink(respond, receive=next_apdu)

    async def scenario() -> None:
        client = associated_client(link)
        with pytest.raises(DecodeError):  # the b"" after the last push is no APDU
            await client.get(SERIAL)
        kept = client.session.notifications
        assert 0 < len(kept) < len(pushes)
        assert kept[-1].body.value == b"599"  # the newest are kept, the oldest dropped

    run(scenario())
