"""IEC 62056-21 mode C meter simulator: ``villageami sim iec21``.

A small meter model (energy accumulating from a load, voltage, current, power, frequency, serial number,
clock) answers mode C sessions: sign-on, identification, option select, data readout; programming mode
(option select Y=1) answers P0 and serves R1 reads until a B0 break.

Transports:

* TCP (default): what an optical head behind a serial server looks like. There is no UART, so the baud
  rate is only the negotiated character. ``--ignore-baud-switch`` models the broken meter that offers a
  faster rate and then stays at 300 baud: a reader that switched would see only line noise, which the
  simulator sends as NUL bytes (what a UART at the higher rate makes of 300-baud characters), so a client
  must time out and fall back to 300 baud.
* ``--pty``: a pseudo-terminal in raw 8N1 mode. Linux ptys reject 7E1 (CS7|PARENB gives EINVAL on this
  kernel), so the pty carries the protocol's 7-bit ASCII in 8-bit characters; open it as 8N1
  (``iec21:///dev/pts/N?framing=8N1``). Incoming bytes are masked to 7 bits, so a client sending the
  parity bit set still works. Baud rate changes on a pty are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import typer

from villageami.meters.iec62056_21 import (
    ACK,
    ETX,
    MODE_C_BAUD_RATES,
    SOH,
    AckOptionSelect,
    CommandMessage,
    DataMessage,
    DataSet,
    DataValue,
    IdentificationMessage,
    Iec21DecodeError,
    ProtocolMode,
    RequestMessage,
    find_data_set,
)

NAK_BYTES = bytes([0x15])


@dataclass
class MeterModel:
    """State of the simulated meter. ``clock`` is injectable so tests control time."""

    serial: str = "18438636"
    load_w: float = 450.0
    voltage_v: float = 231.4
    frequency_hz: float = 50.0
    energy_kwh: float = 1234.5
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _last: float | None = field(default=None, init=False, repr=False)

    def advance(self) -> None:
        """Accumulate energy for the time since the last call at the present load."""
        now = self.clock()
        if self._last is not None and now > self._last:
            self.energy_kwh += self.load_w * (now - self._last) / 3_600_000.0
        self._last = now

    def data_sets(self) -> list[DataSet]:
        self.advance()
        current_a = self.load_w / self.voltage_v if self.voltage_v else 0.0
        stamp = self.wall_clock()

        def ds(address: str, value: str, unit: str | None = None) -> DataSet:
            return DataSet(address, (DataValue(value, unit),))

        return [
            ds("F.F", "00000000"),
            ds("C.1.0", self.serial),
            ds("0.0.0", self.serial),
            ds("0.9.1", stamp.strftime("%H%M%S")),
            ds("0.9.2", stamp.strftime("%y%m%d")),
            ds("1.8.0", f"{self.energy_kwh:010.3f}", "kWh"),
            ds("1.7.0", f"{self.load_w / 1000:06.3f}", "kW"),
            ds("32.7.0", f"{self.voltage_v:05.1f}", "V"),
            ds("31.7.0", f"{current_a:06.2f}", "A"),
            ds("14.7.0", f"{self.frequency_hz:05.2f}", "Hz"),
        ]


class ServerState(enum.Enum):
    IDLE = "idle"
    AWAIT_OPTION_SELECT = "await-option-select"
    PROGRAMMING = "programming"


@dataclass(frozen=True, slots=True)
class MeterSends:
    """The meter transmits ``data`` at ``baud_rate`` while the client listens at ``client_baud_rate``.

    When the two differ the client's UART cannot read the characters; each transport models that its way.
    """

    data: bytes
    baud_rate: int
    client_baud_rate: int

    @property
    def readable(self) -> bool:
        return self.baud_rate == self.client_baud_rate


class ModeCServer:
    """Meter side of mode C as a sans-IO state machine: bytes in, ``MeterSends`` out.

    With ``ignore_baud_switch`` the meter acknowledges any rate but keeps sending at 300 baud while the
    client, as the protocol says, has switched to the rate it selected.
    """

    def __init__(
        self,
        model: MeterModel,
        *,
        manufacturer: str = "VAm",
        baud_char: str = "5",
        identification: str = "SIM-C1",
        device_address: str = "",
        ignore_baud_switch: bool = False,
        password: str = "00000000",
    ) -> None:
        self.model = model
        self.identification = IdentificationMessage(manufacturer, baud_char, identification)
        self.device_address = device_address
        self.ignore_baud_switch = ignore_baud_switch
        self.password = password
        self.state = ServerState.IDLE
        self.baud_rate = 300
        self.client_baud_rate = 300
        self.sessions = 0
        self._buffer = bytearray()

    def _send(self, data: bytes) -> MeterSends:
        return MeterSends(data, self.baud_rate, self.client_baud_rate)

    def _idle(self) -> None:
        self.state = ServerState.IDLE
        self.baud_rate = self.client_baud_rate = 300

    def reset(self) -> list[MeterSends]:
        self._idle()
        self._buffer.clear()
        return []

    def receive_data(self, data: bytes) -> list[MeterSends]:
        self._buffer.extend(b & 0x7F for b in data)
        actions: list[MeterSends] = []
        while True:
            step = self._step()
            if step is None:
                break
            actions.extend(step)
        if len(self._buffer) > 4096:  # noise with no message in it
            self._buffer.clear()
        return actions

    def _take_line(self, start: int) -> bytes | None:
        end = self._buffer.find(b"\n", start)
        if end < 0:
            return None
        line = bytes(self._buffer[start : end + 1])
        del self._buffer[: end + 1]
        return line

    def _step(self) -> list[MeterSends] | None:
        # A sign-on request restarts the session from any state (a client that timed out and retries).
        request_at = self._buffer.find(b"/?")
        if self.state is ServerState.IDLE or (request_at >= 0 and self.state is not ServerState.PROGRAMMING):
            if request_at < 0:
                return None
            line = self._take_line(request_at)
            if line is None:
                return None
            self._idle()
            try:
                request = RequestMessage.decode(line)
            except Iec21DecodeError:
                return []
            if request.device_address not in ("", self.device_address):
                return []  # addressed to another meter on the bus: stay silent
            self.state = ServerState.AWAIT_OPTION_SELECT
            return [self._send(self.identification.encode())]
        if self.state is ServerState.AWAIT_OPTION_SELECT:
            ack_at = self._buffer.find(bytes([ACK]))
            if ack_at < 0:
                return None
            line = self._take_line(ack_at)
            if line is None:
                return None
            try:
                option = AckOptionSelect.decode(line)
            except Iec21DecodeError:
                return self.reset()
            return self._option_selected(option)
        return self._programming_step()

    def _option_selected(self, option: AckOptionSelect) -> list[MeterSends]:
        rate = MODE_C_BAUD_RATES.get(option.baud_char)
        offered = MODE_C_BAUD_RATES.get(self.identification.baud_char, 300)
        if rate is None or rate > offered:
            return self.reset()
        # The client switches to the rate it selected right after its option select; a good meter too.
        self.client_baud_rate = rate
        if not self.ignore_baud_switch:
            self.baud_rate = rate
        self.sessions += 1
        if option.mode_char == ProtocolMode.PROGRAMMING:
            self.state = ServerState.PROGRAMMING
            operand = DataSet("", (DataValue(self.model.serial),))
            return [self._send(CommandMessage("P", "0", operand).encode())]
        if option.mode_char != ProtocolMode.DATA_READOUT:
            return self.reset()
        readout = self._send(DataMessage(tuple(self.model.data_sets())).encode())
        self._idle()
        return [readout]

    def _programming_step(self) -> list[MeterSends] | None:
        soh = self._buffer.find(bytes([SOH]))
        if soh < 0:
            return None
        etx = self._buffer.find(bytes([ETX]), soh)
        if etx < 0 or etx + 1 >= len(self._buffer):
            return None
        frame = bytes(self._buffer[soh : etx + 2])
        del self._buffer[: etx + 2]
        try:
            command = CommandMessage.decode(frame)
        except Iec21DecodeError:
            return [self._send(NAK_BYTES)]
        if command.command == "B":
            self._idle()
            return []
        if command.command == "P" and command.data_set is not None:
            ok = command.data_set.value == self.password
            return [self._send(bytes([ACK]) if ok else NAK_BYTES)]
        if command.command == "R" and command.data_set is not None:
            found = find_data_set(self.model.data_sets(), command.data_set.address)
            if found is None:
                found = DataSet("", (DataValue("ERROR"),))
            return [self._send(DataMessage((found,), readout=False).encode())]
        return [self._send(NAK_BYTES)]


@dataclass
class SimulatorOptions:
    manufacturer: str = "VAm"
    baud_char: str = "5"
    identification: str = "SIM-C1"
    device_address: str = ""
    ignore_baud_switch: bool = False
    response_delay: float = 0.0


class Iec21Simulator:
    """The simulator over TCP, in-process: ``await sim.start()``, ``sim.port``, ``await sim.stop()``."""

    def __init__(self, model: MeterModel | None = None, options: SimulatorOptions | None = None) -> None:
        self.model = model or MeterModel()
        self.options = options or SimulatorOptions()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.sessions = 0

    def new_session(self) -> ModeCServer:
        o = self.options
        return ModeCServer(
            self.model,
            manufacturer=o.manufacturer,
            baud_char=o.baud_char,
            identification=o.identification,
            device_address=o.device_address,
            ignore_baud_switch=o.ignore_baud_switch,
        )

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    async def __aenter__(self) -> Iec21Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        meter = self.new_session()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                for sent in meter.receive_data(data):
                    # Rates differ: the client's UART sees break/noise (NULs), not characters.
                    payload = sent.data if sent.readable else bytes(len(sent.data))
                    if self.options.response_delay:
                        await asyncio.sleep(self.options.response_delay)
                    writer.write(payload)
                    await writer.drain()
                self.sessions += meter.sessions
                meter.sessions = 0
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def register(sim_app: typer.Typer) -> None:
    """Add ``villageami sim iec21`` to ``villageami sim``."""

    @sim_app.command("iec21")
    def iec21(
        port: int = typer.Option(2101, min=0, max=65535, help="TCP port to listen on (0 picks a free one)."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        pty: bool = typer.Option(
            False, "--pty", help="Also serve on a pseudo-terminal (raw 8N1, 7-bit ASCII)."
        ),
        baud_char: str = typer.Option("5", help="Baud rate character the meter offers (0=300 ... 6=19200)."),
        ignore_baud_switch: bool = typer.Option(
            False, "--ignore-baud-switch", help="Offer a rate, then keep talking at 300 baud (broken meter)."
        ),
        response_delay: float = typer.Option(0.0, help="Seconds to wait before each answer."),
        serial: str = typer.Option("18438636", help="Meter serial number."),
        load_w: float = typer.Option(450.0, help="Constant load in W; energy accumulates from it."),
    ) -> None:
        """Simulate an IEC 62056-21 mode C meter."""
        if baud_char not in MODE_C_BAUD_RATES:
            raise typer.BadParameter(
                f"baud char must be one of {''.join(MODE_C_BAUD_RATES)}, got {baud_char!r}"
            )
        options = SimulatorOptions(
            baud_char=baud_char, ignore_baud_switch=ignore_baud_switch, response_delay=response_delay
        )
        model = MeterModel(serial=serial, load_w=load_w)
        asyncio.run(_serve(model, options, host, port, pty))


async def _serve(model: MeterModel, options: SimulatorOptions, host: str, port: int, use_pty: bool) -> None:
    simulator = Iec21Simulator(model, options)
    await simulator.start(host, port)
    typer.echo(
        f"IEC 62056-21 mode C simulator on tcp://{host}:{simulator.port} (iec21+tcp://{host}:{simulator.port})"
    )
    pty_server = None
    if use_pty:
        pty_server = PtyServer(simulator)
        pty_server.start()
        typer.echo(f"pty: {pty_server.name} (raw 8N1, 7-bit ASCII; iec21://{pty_server.name}?framing=8N1)")
    try:
        await asyncio.Event().wait()
    finally:
        if pty_server is not None:
            pty_server.stop()
        await simulator.stop()


class PtyServer:
    """Serves one meter session machine on a pty master; the slave's name is what clients open."""

    def __init__(self, simulator: Iec21Simulator) -> None:
        import termios
        import tty

        self.simulator = simulator
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        attrs[2] = (attrs[2] & ~(termios.CSIZE | termios.PARENB | termios.CSTOPB)) | termios.CS8
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.name = os.ttyname(self.slave)
        self.meter = simulator.new_session()

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        for sent in self.meter.receive_data(data):
            # A pty has no baud rate: whatever the meter sends arrives readable.
            os.write(self.master, sent.data)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


__all__ = [
    "Iec21Simulator",
    "MeterModel",
    "MeterSends",
    "ModeCServer",
    "PtyServer",
    "SimulatorOptions",
    "register",
]
