"""IEC 62056-21 simulator: meter state machine, model, pty transport and the CLI sub-command."""

from __future__ import annotations

import asyncio
import os
import select
from datetime import UTC, datetime

import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from villageami.meters.iec62056_21 import (
    BREAK,
    AckOptionSelect,
    CommandMessage,
    DataMessage,
    DataSet,
    DataValue,
    IdentificationMessage,
    RequestMessage,
    find_data_set,
)
from villageami.sim import iec21_server
from villageami.sim.iec21_server import Iec21Simulator, MeterModel, ModeCServer, PtyServer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def model(clock: Clock | None = None) -> MeterModel:
    return MeterModel(
        serial="77000001",
        load_w=1000.0,
        voltage_v=230.0,
        energy_kwh=10.0,
        clock=clock or Clock(),
        wall_clock=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def _sign_on(meter: ModeCServer, address: str = "") -> bytes:
    return b"".join(s.data for s in meter.receive_data(RequestMessage(address).encode()))


def test_readout_session() -> None:
    meter = ModeCServer(model(), baud_char="4")
    ident = IdentificationMessage.decode(_sign_on(meter))
    assert (ident.manufacturer, ident.baud_char) == ("VAm", "4")
    (sent,) = meter.receive_data(AckOptionSelect("4").encode())
    assert sent.baud_rate == 4800 and sent.client_baud_rate == 4800 and sent.readable
    readout = DataMessage.decode(sent.data)
    values = {ds.address: (ds.value, ds.unit) for ds in readout.data_sets}
    assert values["C.1.0"] == ("77000001", None)
    assert values["1.8.0"] == ("000010.000", "kWh")
    assert values["32.7.0"] == ("230.0", "V")
    assert values["1.7.0"] == ("01.000", "kW")
    assert values["31.7.0"] == ("004.35", "A")  # 1000 W / 230 V
    assert values["14.7.0"] == ("50.00", "Hz")
    assert values["0.9.1"] == ("030405", None) and values["0.9.2"] == ("260102", None)
    assert meter.baud_rate == 300  # back to idle for the next sign-on


def test_ignoring_meter_sends_at_300_while_client_switched() -> None:
    meter = ModeCServer(model(), baud_char="5", ignore_baud_switch=True)
    _sign_on(meter)
    (sent,) = meter.receive_data(AckOptionSelect("5").encode())
    assert (sent.baud_rate, sent.client_baud_rate, sent.readable) == (300, 9600, False)


def test_rejects_rate_above_offer_and_other_addresses() -> None:
    meter = ModeCServer(model(), baud_char="3", device_address="42")
    assert _sign_on(meter, "41") == b""
    assert _sign_on(meter, "42").startswith(b"/VAm3")
    assert meter.receive_data(AckOptionSelect("5").encode()) == []  # 9600 > offered 2400: back to idle
    assert _sign_on(meter).startswith(b"/VAm3")  # "/?!" addresses any meter


def test_byte_at_a_time_and_noise() -> None:
    meter = ModeCServer(model())
    out = b""
    for byte in b"\x7f\x00garbage/?!\r\n":
        out += b"".join(s.data for s in meter.receive_data(bytes([byte])))
    assert out.startswith(b"/VAm5")


def test_programming_mode_p0_r1_b0() -> None:
    meter = ModeCServer(model(), password="secret")
    _sign_on(meter)
    (p0,) = meter.receive_data(AckOptionSelect("5", "1").encode())
    operand = CommandMessage.decode(p0.data)
    assert (operand.command, operand.command_type) == ("P", "0")
    assert operand.data_set is not None and operand.data_set.value == "77000001"
    wrong = CommandMessage("P", "1", DataSet("", (DataValue("nope"),))).encode()
    assert meter.receive_data(wrong)[0].data == b"\x15"
    right = CommandMessage("P", "1", DataSet("", (DataValue("secret"),))).encode()
    assert meter.receive_data(right)[0].data == b"\x06"
    (answer,) = meter.receive_data(CommandMessage("R", "1", DataSet("32.7.0", (DataValue(""),))).encode())
    decoded = DataMessage.decode(answer.data)
    assert not decoded.readout and decoded.data_sets[0].value == "230.0"
    (missing,) = meter.receive_data(CommandMessage("R", "1", DataSet("9.9.9", (DataValue(""),))).encode())
    assert DataMessage.decode(missing.data).data_sets[0].value == "ERROR"
    assert meter.receive_data(b"\x01R1\x02x()\x03\x00")[0].data == b"\x15"  # bad BCC -> NAK
    assert meter.receive_data(BREAK.encode()) == []
    assert _sign_on(meter).startswith(b"/VAm5")


def test_model_energy_accumulates_from_load() -> None:
    clock = Clock()
    meter_model = model(clock)
    first = find_data_set(meter_model.data_sets(), "1.8.0")
    clock.now += 1800.0  # half an hour at 1 kW
    second = find_data_set(meter_model.data_sets(), "1.8.0")
    assert first is not None and second is not None
    assert second.values[0].as_decimal() - first.values[0].as_decimal() == 0.5


def test_simulator_response_delay_and_stop() -> None:
    async def scenario() -> None:
        sim = Iec21Simulator(model(), iec21_server.SimulatorOptions(response_delay=0.05))
        await sim.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(b"/?!\r\n")
        line = await asyncio.wait_for(reader.readline(), 2.0)
        assert line == b"/VAm5SIM-C1\r\n"
        await sim.stop()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # connection closed by stop()
        writer.close()

    asyncio.run(scenario())


def test_pty_serves_a_session() -> None:
    async def scenario() -> None:
        sim = Iec21Simulator(model())
        pty = PtyServer(sim)
        pty.start()
        fd = os.open(pty.name, os.O_RDWR | os.O_NOCTTY)
        try:
            # Parity bit set on every byte, as a 7E1 sender would put it on an 8-bit line.
            os.write(fd, bytes(b | 0x80 for b in b"/?!\r\n"))
            received = b""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0
            while not received.endswith(b"\r\n") and loop.time() < deadline:
                await asyncio.sleep(0.01)
                if select.select([fd], [], [], 0)[0]:
                    received += os.read(fd, 100)
            assert received == b"/VAm5SIM-C1\r\n"
        finally:
            os.close(fd)
            pty.stop()

    asyncio.run(scenario())


def test_cli_registers_iec21() -> None:
    app = typer.Typer()
    sim_app = typer.Typer()
    iec21_server.register(sim_app)
    app.add_typer(sim_app, name="sim")
    result = CliRunner().invoke(app, ["sim", "iec21", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--pty", "--ignore-baud-switch", "--baud-char", "--response-delay"):
        assert option in result.output
    bad = CliRunner().invoke(app, ["sim", "iec21", "--baud-char", "9"])
    assert bad.exit_code != 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_fuzz_meter_state_machine_never_raises(chunks: list[bytes]) -> None:
    meter = ModeCServer(model())
    for chunk in [RequestMessage().encode(), *chunks]:
        for sent in meter.receive_data(chunk):
            assert sent.data
