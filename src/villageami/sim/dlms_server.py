"""`villageami sim dlms`: a DLMS/COSEM meter simulator, and its in-process async API for tests.

Serves one or more simulated logical devices (:class:`~villageami.sim.dlms_model.SimMeter`) over

- the IEC 62056-47 wrapper on TCP (the destination wPort picks the meter),
- HDLC on TCP, or HDLC on a pseudo-terminal (``--pty``) standing in for an RS-485 bus; several meters share
  the bus, each answering its own HDLC address (upper 1, lower = the meter's address).

Fault injection (no answer, garbage, truncated frame), a response delay and baud-rate pacing (ptys do not
throttle, so each write sleeps ``len * 10 / baud``) model slow and broken field conditions.

In-process use::

    sim = DlmsSimulator(transport="hdlc")
    await sim.start()           # sim.port (TCP) or sim.pty_path (pty)
    sim.meter().disconnect()    # or set_tamper / set_load / add_credit
    sim.fault = FaultMode.NO_ANSWER
    await sim.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import typer

from villageami.dlms.errors import DecodeError, DlmsError
from villageami.dlms.hdlc import (
    ApduReceived,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
    HdlcServerConnection,
    HdlcStreamDecoder,
    LinkConnected,
    LinkDisconnected,
    server_address,
)
from villageami.dlms.wrapper import WrapperPdu, WrapperStreamDecoder
from villageami.errors import VillageAmiError
from villageami.sim.dlms_app import AssociationSession, SecurityPolicy
from villageami.sim.dlms_model import DEFAULT_OBJECT_SET, SimMeter, load_object_set

Transport = Literal["wrapper", "hdlc"]


class FaultMode(enum.Enum):
    NONE = "none"
    NO_ANSWER = "no-answer"  # the meter stays silent
    GARBAGE = "garbage"  # random octets instead of the answer
    TRUNCATED = "truncated"  # the first half of the answer only


class SimulatorError(VillageAmiError):
    """The simulator cannot start as configured."""


@dataclass(slots=True)
class _Output:
    """Shared write path: applies the fault mode, the response delay and baud pacing."""

    write: Callable[[bytes], None]
    simulator: DlmsSimulator

    async def send(self, data: bytes) -> None:
        if not data:
            return
        sim = self.simulator
        fault = sim.fault
        if sim.response_delay > 0:
            await asyncio.sleep(sim.response_delay)
        if fault is FaultMode.NO_ANSWER:
            sim.suppressed_writes += 1
            return
        if fault is FaultMode.GARBAGE:
            data = sim.random.randbytes(max(4, len(data)))
        elif fault is FaultMode.TRUNCATED:
            data = data[: max(1, len(data) // 2)]
        if sim.baud:
            await asyncio.sleep(len(data) * 10 / sim.baud)
        self.write(data)


@dataclass(slots=True)
class _HdlcBus:
    """HDLC servers for every simulated meter on one line (a TCP connection or the pty)."""

    simulator: DlmsSimulator
    output: _Output
    decoder: HdlcStreamDecoder = field(default_factory=HdlcStreamDecoder)
    servers: dict[int, HdlcServerConnection] = field(default_factory=dict)
    sessions: dict[tuple[int, int], AssociationSession] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sim = self.simulator
        for key in sim.meters:
            sim_address = sim.hdlc_address(key)
            self.servers[key] = HdlcServerConnection(sim_address, sim.hdlc_parameters)

    async def feed(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            await self._dispatch(frame)

    async def _dispatch(self, frame: HdlcFrame) -> None:
        for key, server in self.servers.items():
            if not server.accepts(frame.destination):
                continue
            for event in server.receive_frame(frame):
                session_key = (key, frame.source.logical)
                if isinstance(event, LinkConnected | LinkDisconnected):
                    self.sessions.pop(session_key, None)
                elif isinstance(event, ApduReceived):
                    session = self.sessions.get(session_key)
                    if session is None:
                        session = self.simulator.new_session(key, frame.source.logical)
                        self.sessions[session_key] = session
                    server.send_apdu(event.source, session.handle(event.apdu))
            await self.output.send(server.data_to_send())


class DlmsSimulator:
    """Simulated DLMS meters behind one listener. ``meters`` maps an address to a meter: the HDLC lower
    (physical) address under upper address 1, or the wrapper wPort. With a single meter, HDLC accepts any
    lower address and a one-octet server address."""

    def __init__(
        self,
        meters: dict[int, SimMeter] | None = None,
        *,
        transport: Transport = "wrapper",
        host: str = "127.0.0.1",
        port: int = 0,
        pty: bool = False,
        baud: int | None = None,
        response_delay: float = 0.0,
        fault: FaultMode = FaultMode.NONE,
        policy: SecurityPolicy | None = None,
        hdlc_parameters: HdlcParameters | None = None,
        seed: int = 0,
    ) -> None:
        if meters is None:
            meters = {1: SimMeter(load_object_set(DEFAULT_OBJECT_SET))}
        if not meters:
            raise SimulatorError("the DLMS simulator needs at least one meter")
        if pty and transport != "hdlc":
            raise SimulatorError("a pty carries HDLC only; use transport='hdlc' with pty=True")
        self.meters = meters
        self.transport: Transport = transport
        self.host, self.port = host, port
        self.use_pty = pty
        self.baud = baud
        self.response_delay = response_delay
        self.fault = fault
        self.policy = policy or SecurityPolicy()
        self.hdlc_parameters = hdlc_parameters or HdlcParameters(max_info_transmit=128, max_info_receive=128)
        self.random = random.Random(seed)
        self.pty_path: str | None = None
        self.suppressed_writes = 0
        self.dropped_octets = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._pty_fds: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------------------ public API

    def meter(self, address: int | None = None) -> SimMeter:
        """The meter at ``address`` (default: the first)."""
        if address is None:
            return next(iter(self.meters.values()))
        try:
            return self.meters[address]
        except KeyError:
            raise SimulatorError(
                f"no simulated meter at address {address}; have {sorted(self.meters)}"
            ) from None

    def hdlc_address(self, key: int) -> HdlcAddress:
        if len(self.meters) == 1:
            return server_address(1)  # accepts any lower address
        return server_address(1, key)

    def new_session(self, key: int, client_sap: int) -> AssociationSession:
        return AssociationSession(self.meters[key], client_sap, self.policy)

    @property
    def url(self) -> str:
        """A client URL for the first meter (URL forms: villageami.meters.url)."""
        return self.url_for(next(iter(self.meters)))

    def url_for(self, address: int) -> str:
        """A client URL for the meter at ``address``: its wPort, or its HDLC lower address on a shared bus."""
        self.meter(address)
        if self.transport == "wrapper":
            return f"dlms+tcp://{self.host}:{self.port}?client=16&server={address}"
        physical = f"&physical={address}" if len(self.meters) > 1 else ""
        if self.pty_path:
            return f"dlms+hdlc://{self.pty_path}?baud={self.baud or 9600}&client=16&server=1{physical}"
        return f"dlms+hdlc+tcp://{self.host}:{self.port}?client=16&server=1{physical}"

    async def start(self) -> None:
        if self.use_pty:
            self._start_pty()
            return
        handler = self._serve_wrapper if self.transport == "wrapper" else self._serve_hdlc_tcp
        try:
            self._server = await asyncio.start_server(handler, self.host, self.port)
        except OSError as exc:
            raise SimulatorError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Close the connections rather than cancelling their handlers: asyncio's stream server logs
            # a cancelled handler as an error, and a closed transport ends each handler's read loop.
            for writer in list(self._writers):
                writer.close()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self._pty_fds is not None:
            master, slave = self._pty_fds
            asyncio.get_running_loop().remove_reader(master)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty_fds = None

    async def __aenter__(self) -> DlmsSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------- TCP serving

    def _track(self, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)

    async def _serve_wrapper(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(writer)
        self.connections += 1
        output = _Output(writer.write, self)
        decoder = WrapperStreamDecoder()
        sessions: dict[tuple[int, int], AssociationSession] = {}
        try:
            while data := await reader.read(4096):
                for pdu in decoder.feed(data):
                    meter_key = pdu.destination_wport
                    if meter_key not in self.meters:
                        continue  # a meter does not answer a wPort it does not have
                    key = (meter_key, pdu.source_wport)
                    session = sessions.get(key)
                    if session is None:
                        session = sessions[key] = self.new_session(meter_key, pdu.source_wport)
                    answer = session.handle(pdu.payload)
                    await output.send(WrapperPdu(pdu.destination_wport, pdu.source_wport, answer).encode())
                    await writer.drain()
        except (DecodeError, ConnectionError):
            pass  # a bad header or a vanished client ends the connection, as on a real meter
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_hdlc_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(writer)
        self.connections += 1
        bus = _HdlcBus(self, _Output(writer.write, self))
        try:
            while data := await reader.read(4096):
                await bus.feed(data)
                await writer.drain()
        except (DlmsError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    # ------------------------------------------------------------------------------- pty serving

    def _start_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def on_readable() -> None:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                queue.put_nowait(data)

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(master, view)
                except (BlockingIOError, OSError):
                    # Nobody is reading the line and its buffer is full: the rest is lost, as on a bus
                    # with no listener. Never spin here, it would stall the event loop.
                    self.dropped_octets += len(view)
                    return
                view = view[written:]

        bus = _HdlcBus(self, _Output(write, self))

        async def pump() -> None:
            while True:
                data = await queue.get()
                with contextlib.suppress(DlmsError):
                    await bus.feed(data)

        loop = asyncio.get_running_loop()
        loop.add_reader(master, on_readable)
        task = loop.create_task(pump())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# ----------------------------------------------------------------------------------------- CLI


def register(sim_app: typer.Typer) -> None:
    """Add this simulator's sub-command to `villageami sim`."""

    @sim_app.command("dlms")
    def dlms(
        transport: str = typer.Option("wrapper", help="wrapper (DLMS/TCP) or hdlc"),
        host: str = typer.Option("127.0.0.1", help="address to listen on"),
        port: int = typer.Option(4059, min=0, max=65535, help="TCP port (0 = any free port)"),
        pty: bool = typer.Option(False, "--pty", help="serve HDLC on a new pseudo-terminal; prints its path"),
        meters: int = typer.Option(1, help="number of meters (HDLC lower addresses / wPorts 1..N)"),
        object_set: str = typer.Option(DEFAULT_OBJECT_SET, help="bundled object set name or YAML/JSON path"),
        serial_prefix: str = typer.Option("SIM", help="serials are PREFIX + 8 digits"),
        baud: int = typer.Option(0, help="pace writes to this baud rate (0 = no pacing)"),
        delay: float = typer.Option(0.0, help="response delay in seconds"),
        fault: Annotated[str, typer.Option(help="none, no-answer, garbage or truncated")] = "none",
        tamper: Annotated[list[str] | None, typer.Option(help="set a tamper flag (repeatable)")] = None,
        time_scale: float = typer.Option(1.0, help="simulated seconds per real second for energy"),
        lls_password: str = typer.Option("00000000", help="LLS password for client SAP 17"),
    ) -> None:
        """Run a DLMS/COSEM meter simulator until interrupted."""
        if transport not in ("wrapper", "hdlc"):
            raise typer.BadParameter(f"transport {transport!r} is not 'wrapper' or 'hdlc'")
        try:
            fault_mode = FaultMode(fault)
        except ValueError:
            raise typer.BadParameter(
                f"fault {fault!r} is not one of {[m.value for m in FaultMode]}"
            ) from None
        spec = load_object_set(object_set)
        sim_meters = {
            n: SimMeter(spec, serial=f"{serial_prefix}{n:08d}", time_scale=time_scale)
            for n in range(1, meters + 1)
        }
        for meter in sim_meters.values():
            for flag in tamper or []:
                meter.set_tamper(flag)
        sim = DlmsSimulator(
            sim_meters,
            transport="hdlc" if pty else transport,  # type: ignore[arg-type]
            host=host,
            port=port,
            pty=pty,
            baud=baud or None,
            response_delay=delay,
            fault=fault_mode,
            policy=SecurityPolicy(lls_password=lls_password.encode()),
        )

        async def run() -> None:
            await sim.start()
            typer.echo(f"DLMS simulator: {len(sim_meters)} meter(s), {spec.model}")
            if sim.pty_path:
                typer.echo(f"pty: {sim.pty_path}")
            for address, meter in sim_meters.items():
                typer.echo(f"meter {meter.serial}: {sim.url_for(address)}")
            try:
                await asyncio.Event().wait()
            finally:
                await sim.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
