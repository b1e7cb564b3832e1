"""IEC 62056-21 driver: the mode C client state machine, the driver over TCP against the simulator, and the
baud-switch fallback over an in-memory line that loses characters when the two ends' rates differ."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from villageami.meters.driver import MeterAction, MeterError, MeterUnreachable
from villageami.meters.iec21_driver import (
    Iec21Driver,
    SerialByteTransport,
    TcpByteTransport,
    transport_for_url,
    value_of,
)
from villageami.meters.iec62056_21 import (
    AckOptionSelect,
    ClientState,
    DataMessage,
    DataSet,
    DataValue,
    IdentificationMessage,
    Iec21DecodeError,
    Iec21Timeout,
    ModeCClient,
    ReadoutComplete,
    RequestMessage,
    SendBytes,
    SwitchBaudRate,
    choose_baud_char,
)
from villageami.sim.iec21_server import Iec21Simulator, MeterModel, ModeCServer, SimulatorOptions

MAPPING = {
    "1.0.1.8.0.255": "1.8.0",
    "1.0.32.7.0.255": "32.7.0",
    "1.0.14.7.0.255": "14.7.0",
    "0.0.96.1.1.255": "0.0.0",
    "serial": "C.1.0",
    "1.0.2.8.0.255": "2.8.0",  # not in the simulator's readout
}


def run_async(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test body in a fresh event loop (the project has no asyncio pytest plugin)."""

    @functools.wraps(test)
    def runner() -> None:
        asyncio.run(test())

    return runner


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_model() -> MeterModel:
    return MeterModel(
        serial="00412345",
        load_w=720.0,
        voltage_v=229.5,
        energy_kwh=100.0,
        clock=FakeClock(),
        wall_clock=lambda: datetime(2026, 11, 23, 12, 34, 56, tzinfo=UTC),
    )


# --- sans-IO client ----------------------------------------------------------------------------------------


def test_client_happy_path_switches_to_offered_rate() -> None:
    client = ModeCClient()
    assert client.start() == [SwitchBaudRate(300), SendBytes(b"/?!\r\n")]
    actions = client.receive_data(b"/?!\r\n/ABC5meter\r\n")  # echo of our request, then the identification
    assert actions == [SendBytes(b"\x06050\r\n"), SwitchBaudRate(9600)]
    assert client.state is ClientState.AWAIT_READOUT
    readout = DataMessage((DataSet("1.8.0", (DataValue("1.5", "kWh"),)),)).encode()
    assert client.receive_data(readout[:7]) == []
    (done,) = client.receive_data(readout[7:])
    assert isinstance(done, ReadoutComplete)
    assert done.baud_rate == 9600 and done.data_sets[0].value == "1.5"
    assert client.state is ClientState.DONE


def test_client_caps_rate_and_rejects_bad_bcc() -> None:
    assert choose_baud_char("6", 4800) == "4"
    assert choose_baud_char("A", 19200) == "0"  # mode B letter: stay at 300 in mode C
    client = ModeCClient(max_baud_rate=2400)
    client.start()
    assert client.receive_data(b"/XYZ6m\r\n")[0] == SendBytes(b"\x06030\r\n")
    with pytest.raises(Iec21DecodeError, match="BCC"):
        client.receive_data(b"\x021.8.0(1)\r\n!\r\n\x03\x00")
    assert client.state is ClientState.FAILED


def test_client_fallback_then_timeout() -> None:
    client = ModeCClient("12345")
    client.start()
    client.receive_data(b"/ABC5meter\r\n")
    # Silence at 9600: back to 300, sign on again, and this time propose "0".
    assert client.timed_out() == [SwitchBaudRate(300), SendBytes(b"/?12345!\r\n")]
    assert client.fallback_used and client.stay_at_300
    # Tail of the readout the meter sent at 300 arrives first; a '/' in it must not confuse us.
    actions = client.receive_data(b"1.8.0(1/2)\r\n!\r\n\x03X/ABC5meter\r\n")
    assert actions == [SendBytes(b"\x06000\r\n")]
    with pytest.raises(Iec21Timeout, match="no readout from the meter at 300 baud"):
        client.timed_out()


def test_client_timeout_waiting_for_identification() -> None:
    client = ModeCClient()
    client.start()
    with pytest.raises(Iec21Timeout, match="identification"):
        client.timed_out()


# --- in-memory line with baud rates ------------------------------------------------------------------------


class BaudLine:
    """Client transport wired to a ModeCServer. Characters sent at a rate the receiver is not set to are
    lost (a UART at 9600 cannot read 300-baud characters), which is what breaks meters that ignore the switch.
    """

    def __init__(self, meter: ModeCServer) -> None:
        self.meter = meter
        self.baud_rate = 300
        # (bytes, rate they were sent at); the rate is compared when the client reads them, i.e. after the
        # client has switched, as on a real line where the meter answers some 200 ms later.
        self.inbox: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
        self.dropped = 0
        self.rates: list[int] = []
        self.opened = False

    async def open(self) -> None:
        self.opened = True

    async def write(self, data: bytes) -> None:
        if self.baud_rate != self.meter.baud_rate:
            self.dropped += len(data)
            return
        for sent in self.meter.receive_data(data):
            self.inbox.put_nowait((sent.data, sent.baud_rate))

    async def read_some(self, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data, rate = await asyncio.wait_for(self.inbox.get(), max(0.0, deadline - loop.time()))
            if rate == self.baud_rate:
                return data
            self.dropped += len(data)

    async def set_baud_rate(self, baud_rate: int) -> None:
        self.rates.append(baud_rate)
        self.baud_rate = baud_rate

    async def close(self) -> None:
        self.opened = False


def _driver(transport: object, **kwargs: float) -> Iec21Driver:
    return Iec21Driver(
        transport,  # type: ignore[arg-type]
        MAPPING,
        reply_timeout=kwargs.get("reply_timeout", 0.2),
        read_timeout=kwargs.get("read_timeout", 5.0),
        turnaround_delay=0,
    )


@run_async
async def test_in_memory_read_at_switched_rate() -> None:
    meter = ModeCServer(make_model(), baud_char="5")
    line = BaudLine(meter)
    driver = _driver(line)
    reads = await driver.read(["1.0.1.8.0.255"])
    assert reads["1.0.1.8.0.255"].value == 100.0
    assert line.rates == [300, 9600]
    assert driver.last_baud_rate == 9600 and not driver.stay_at_300
    assert line.dropped == 0


@run_async
async def test_in_memory_fallback_when_meter_ignores_switch() -> None:
    meter = ModeCServer(make_model(), baud_char="5", ignore_baud_switch=True)
    line = BaudLine(meter)
    driver = _driver(line)
    reads = await driver.read(["1.0.1.8.0.255", "1.0.32.7.0.255"])
    assert reads["1.0.1.8.0.255"].value == 100.0
    assert reads["1.0.32.7.0.255"].value == 229.5 and reads["1.0.32.7.0.255"].unit == "V"
    assert line.dropped > 0  # the first readout, sent at 300 while we listened at 9600, was lost
    assert line.rates == [300, 9600, 300]
    assert driver.stay_at_300 and driver.last_baud_rate == 300
    # Next session goes straight to 300 baud: no switch, nothing lost.
    line.rates.clear()
    dropped = line.dropped
    await driver.read(["1.0.1.8.0.255"])
    assert line.rates == [300]
    assert line.dropped == dropped


@run_async
async def test_empty_and_odd_values() -> None:
    class OddModel(MeterModel):
        def data_sets(self) -> list[DataSet]:
            return [DataSet("0.0.0", (DataValue(""),)), DataSet("1.8.0", (DataValue("5"),))]

    meter = ModeCServer(OddModel(), baud_char="0")
    driver = _driver(BaudLine(meter))
    reads = await driver.read(["0.0.96.1.1.255", "1.0.1.8.0.255"])
    empty = reads["0.0.96.1.1.255"]
    assert empty.value is None and empty.error is not None and "empty" in empty.error
    assert reads["1.0.1.8.0.255"].value == "5" and reads["1.0.1.8.0.255"].ok


@run_async
async def test_in_memory_silent_meter_is_unreachable() -> None:
    class Silent(BaudLine):
        async def write(self, data: bytes) -> None:
            return None

    driver = _driver(Silent(ModeCServer(make_model())))
    with pytest.raises(MeterUnreachable, match="no identification"):
        await driver.read(["1.0.1.8.0.255"])


# --- driver over TCP against the simulator ----------------------------------------------------------------


@run_async
async def test_driver_reads_keys_from_simulator() -> None:
    async with Iec21Simulator(make_model()) as sim:
        driver = _driver(TcpByteTransport("127.0.0.1", sim.port))
        async with driver:
            reads = await driver.read([*list(MAPPING), "unmapped"])
        assert reads["1.0.1.8.0.255"].value == 100.0
        assert reads["1.0.1.8.0.255"].unit == "kWh"
        assert reads["1.0.1.8.0.255"].source == "iec21:1.8.0"
        assert reads["1.0.32.7.0.255"].value == 229.5
        assert reads["1.0.14.7.0.255"].value == 50.0 and reads["1.0.14.7.0.255"].unit == "Hz"
        # Serial numbers keep their leading zeros.
        assert reads["0.0.96.1.1.255"].value == "00412345"
        assert reads["serial"].value == "00412345" and reads["serial"].unit is None
        missing = reads["1.0.2.8.0.255"]
        assert missing.value is None and missing.error is not None and "2.8.0" in missing.error
        assert reads["unmapped"].error is not None and "no IEC 62056-21 data set" in reads["unmapped"].error
        assert reads["1.0.1.8.0.255"].raw == "1.8.0(000100.000*kWh)"
        assert driver.last_identification == "VAm5SIM-C1"
        assert sim.sessions == 1


@run_async
async def test_energy_accumulates_between_reads() -> None:
    model = make_model()
    clock = model.clock
    assert isinstance(clock, FakeClock)
    async with Iec21Simulator(model) as sim:
        driver = _driver(TcpByteTransport("127.0.0.1", sim.port))
        first = (await driver.read(["1.0.1.8.0.255"]))["1.0.1.8.0.255"].value
        await driver.close()
        clock.now += 3600.0  # one hour at 720 W
        second = (await driver.read(["1.0.1.8.0.255"]))["1.0.1.8.0.255"].value
        await driver.close()
    assert isinstance(first, float) and isinstance(second, float)
    assert second - first == pytest.approx(0.72, abs=0.001)


@run_async
async def test_tcp_fallback_with_simulator_ignoring_switch() -> None:
    options = SimulatorOptions(baud_char="6", ignore_baud_switch=True)
    async with Iec21Simulator(make_model(), options) as sim:
        driver = _driver(TcpByteTransport("127.0.0.1", sim.port))
        reads = await driver.read(["1.0.1.8.0.255"])
        await driver.close()
    assert reads["1.0.1.8.0.255"].value == 100.0
    assert driver.stay_at_300 and driver.last_baud_rate == 300


@run_async
async def test_dead_simulator_is_unreachable_within_timeout() -> None:
    sim = Iec21Simulator(make_model())
    await sim.start()
    port = sim.port
    await sim.stop()
    driver = _driver(TcpByteTransport("127.0.0.1", port, connect_timeout=1.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(MeterUnreachable, match="not reachable"):
        await driver.read(["1.0.1.8.0.255"])
    assert loop.time() - started < 2.0


@run_async
async def test_connected_but_mute_peer_is_unreachable_within_timeout() -> None:
    # A TCP server that accepts and never answers: the meter behind the serial server is dead.
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        driver = _driver(TcpByteTransport("127.0.0.1", port), reply_timeout=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(MeterUnreachable, match="no identification"):
            await driver.read(["1.0.1.8.0.255"])
        assert loop.time() - started < 1.5
        await driver.close()
    finally:
        server.close()


@run_async
async def test_read_timeout_bounds_a_trickling_meter() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        for _ in range(100):  # noise forever, never a whole identification line
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.02)

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        driver = _driver(TcpByteTransport("127.0.0.1", port), read_timeout=0.3)
        with pytest.raises(MeterUnreachable, match="not complete within"):
            await driver.read(["1.0.1.8.0.255"])
        await driver.close()
    finally:
        server.close()


@run_async
async def test_act_is_not_supported() -> None:
    driver = _driver(BaudLine(ModeCServer(make_model())))
    with pytest.raises(MeterError, match="not supported by IEC 62056-21 readout"):
        await driver.act(MeterAction.DISCONNECT)


def test_bad_mapping_is_rejected() -> None:
    with pytest.raises(MeterError, match="mapping for key 'k'"):
        Iec21Driver(BaudLine(ModeCServer(make_model())), {"k": "1-0:"})


def test_value_of() -> None:
    assert value_of(DataSet("a", (DataValue("0012.50", "kWh"),))) == 12.5
    assert value_of(DataSet("a", (DataValue("000001.2963"),))) == pytest.approx(1.2963)
    assert value_of(DataSet("a", (DataValue("0002"),))) == "0002"
    assert value_of(DataSet("a", (DataValue(""),))) is None
    assert value_of(DataSet("a", (DataValue("4B38", "x"),))) == "4B38"


# --- transports ---------------------------------------------------------------------------------------------


def test_transport_for_url() -> None:
    tcp = transport_for_url("iec21+tcp://127.0.0.1:2101")
    assert isinstance(tcp, TcpByteTransport) and tcp.port == 2101
    serial = transport_for_url("iec21:///dev/ttyUSB0")
    assert (
        isinstance(serial, SerialByteTransport) and serial.port == "/dev/ttyUSB0" and serial.framing == "7E1"
    )
    pty = transport_for_url("iec21:///dev/pts/4?framing=8n1")
    assert isinstance(pty, SerialByteTransport) and pty.framing == "8N1"
    for bad in ("iec21+tcp://host", "modbus://x:1", "iec21:"):
        with pytest.raises(MeterError):
            transport_for_url(bad)


@run_async
async def test_serial_transport_on_pyserial_loop() -> None:
    transport = SerialByteTransport("loop://", framing="7E1")
    await transport.open()
    try:
        request = RequestMessage().encode()
        await transport.write(request)
        assert await transport.read_some(1.0) == request
        await transport.set_baud_rate(9600)
        assert transport.baud_rate == 9600
        with pytest.raises(TimeoutError):
            await transport.read_some(0.1)
    finally:
        await transport.close()


@run_async
async def test_serial_transport_missing_port_is_unreachable() -> None:
    with pytest.raises(MeterUnreachable, match="cannot open serial port"):
        await SerialByteTransport("/dev/does-not-exist-iec21").open()


def test_identification_and_option_select_over_socketpair() -> None:
    # Plain sockets, no asyncio: the sans-IO pieces compose with any I/O.
    meter = ModeCServer(make_model(), baud_char="3")
    client = ModeCClient()
    a, b = socket.socketpair()
    with a, b:
        for action in client.start():
            if isinstance(action, SendBytes):
                a.sendall(action.data)
        for sent in meter.receive_data(b.recv(100)):
            b.sendall(sent.data)
        actions = client.receive_data(a.recv(100))
        assert actions[0] == SendBytes(AckOptionSelect("3").encode())
        assert IdentificationMessage.decode(b"/VAm3SIM-C1\r\n") == client.identification


@run_async
async def test_driver_over_simulator_pty_8n1() -> None:
    # Ptys reject 7E1 on this kernel, so the simulator's pty is 8N1 carrying 7-bit ASCII.
    from villageami.sim.iec21_server import PtyServer

    pty = PtyServer(Iec21Simulator(make_model()))
    pty.start()
    try:
        driver = _driver(transport_for_url(f"iec21://{pty.name}?framing=8N1"), reply_timeout=1.0)
        async with driver:
            reads = await driver.read(["1.0.1.8.0.255", "serial"])
        assert reads["1.0.1.8.0.255"].value == 100.0
        assert reads["serial"].value == "00412345"
        assert driver.last_baud_rate == 9600
    finally:
        pty.stop()
