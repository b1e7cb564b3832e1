"""DLMS simulator: object model and load model, then end to end with villageami's own client over the
wrapper, HDLC on TCP and HDLC on a pty, including fault injection and several meters on one bus."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from villageami.dlms.apdu import ActionResult, DataAccessResult
from villageami.dlms.axdr import Data, DataType, ln_from_str
from villageami.dlms.client import Authentication, ClientSettings, DlmsClient
from villageami.dlms.errors import AuthenticationFailure, LinkError, LinkTimeout
from villageami.dlms.link import ApduLink
from villageami.dlms.transport import hdlc_serial_link, hdlc_tcp_link, tcp_wrapper_link
from villageami.sim.dlms_app import SecurityPolicy
from villageami.sim.dlms_model import (
    CONNECTED,
    DISCONNECTED,
    ObjectSetError,
    SimMeter,
    load_object_set,
)
from villageami.sim.dlms_server import DlmsSimulator, FaultMode, SimulatorError

SPEC = load_object_set()
ENERGY = ln_from_str("1.0.1.8.0.255")
STATUS = ln_from_str("0.0.96.5.0.255")
DISCONNECT = ln_from_str("0.0.96.3.10.255")
FIXED_NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _meter(**kwargs: Any) -> tuple[SimMeter, FakeClock]:
    clock = FakeClock()
    meter = SimMeter(SPEC, monotonic=clock, wallclock=lambda: FIXED_NOW, **kwargs)
    return meter, clock


# ------------------------------------------------------------------------------------ model


def test_energy_accumulates_from_load_and_stops_when_disconnected() -> None:
    meter, clock = _meter()
    meter.set_load(1200.0)
    clock.now += 1800  # half an hour at 1.2 kW = 600 Wh
    assert meter.get(3, ENERGY, 2) == Data(DataType.DOUBLE_LONG_UNSIGNED, 600)
    assert meter.action(70, DISCONNECT, 1, Data(DataType.INTEGER, 0)) is ActionResult.SUCCESS
    clock.now += 3600
    assert meter.get(3, ENERGY, 2) == Data(DataType.DOUBLE_LONG_UNSIGNED, 600)
    assert meter.get(70, DISCONNECT, 2) == Data(DataType.BOOLEAN, False)
    assert meter.get(70, DISCONNECT, 3) == Data(DataType.ENUM, DISCONNECTED)
    assert meter.get(3, ln_from_str("1.0.1.7.0.255"), 2) == Data(DataType.DOUBLE_LONG, 0)
    assert meter.action(70, DISCONNECT, 2, Data(DataType.INTEGER, 0)) is ActionResult.SUCCESS
    clock.now += 60
    assert meter.get(3, ENERGY, 2) == Data(DataType.DOUBLE_LONG_UNSIGNED, 620)


def test_daily_load_profile_is_deterministic_and_positive() -> None:
    a, _ = _meter(serial="A1")
    b, _ = _meter(serial="A1")
    assert a.power_w() == b.power_w() > 0


def test_scaler_unit_and_scaled_values() -> None:
    meter, _ = _meter()
    voltage = ln_from_str("1.0.32.7.0.255")
    assert meter.get(3, voltage, 2) == Data(DataType.LONG_UNSIGNED, 2300)  # 230.0 V, scaler -1
    assert meter.get(3, voltage, 3) == Data.structure([Data(DataType.INTEGER, -1), Data(DataType.ENUM, 35)])


def test_tamper_and_relay_bits_in_status_word() -> None:
    meter, _ = _meter()
    bits = SPEC.status_bits
    meter.set_tamper("cover_open")
    meter.disconnect()
    word = meter.get(1, STATUS, 2)
    assert word == Data(
        DataType.DOUBLE_LONG_UNSIGNED, (1 << bits["cover_open"]) | (1 << bits["relay_disconnected"])
    )
    meter.set_tamper("cover_open", False)
    meter.reconnect()
    assert meter.get(1, STATUS, 2) == Data(DataType.DOUBLE_LONG_UNSIGNED, 0)
    with pytest.raises(Exception, match="unknown tamper flag"):
        meter.set_tamper("no_such_flag")


def test_credit_exhaustion_disconnects_and_blocks_reconnect() -> None:
    meter, clock = _meter()
    assert SPEC.credit is not None
    meter.set_load(SPEC.credit.initial_kwh * 1000)  # exactly one hour of credit
    clock.now += 3601
    meter.tick()
    assert meter.state.control_state == DISCONNECTED
    assert meter.action(70, DISCONNECT, 2, Data(DataType.INTEGER, 0)) is ActionResult.TEMPORARY_FAILURE
    meter.add_credit(5)
    assert meter.action(70, DISCONNECT, 2, Data(DataType.INTEGER, 0)) is ActionResult.SUCCESS
    assert meter.state.control_state == CONNECTED


def test_set_clock_and_access_errors() -> None:
    meter, _ = _meter()
    clock_ln = ln_from_str("0.0.1.0.0.255")
    target = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert meter.set(8, clock_ln, 2, Data.date_time(target)) is DataAccessResult.SUCCESS
    assert meter.get(8, clock_ln, 2).as_date_time().to_datetime() == target
    assert (
        meter.set(3, ENERGY, 2, Data(DataType.DOUBLE_LONG_UNSIGNED, 1)) is DataAccessResult.READ_WRITE_DENIED
    )
    assert meter.get(3, ln_from_str("9.9.9.9.9.9"), 2) is DataAccessResult.OBJECT_UNDEFINED
    assert meter.get(1, ENERGY, 2) is DataAccessResult.OBJECT_CLASS_INCONSISTENT


def test_bad_object_set_names_the_problem(tmp_path: Any) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: x\nobjects:\n  - {ln: 1.0.1.8.0.255, class: register, type: int99}\n")
    with pytest.raises(ObjectSetError, match="unknown data type"):
        load_object_set(path)
    with pytest.raises(ObjectSetError, match="neither a file nor a bundled set"):
        load_object_set("no-such-set")


# -------------------------------------------------------------------------------- end to end

LinkFactory = Callable[[DlmsSimulator], ApduLink]


def _link(kind: str, **kwargs: Any) -> LinkFactory:
    def make(sim: DlmsSimulator) -> ApduLink:
        if kind == "wrapper":
            return tcp_wrapper_link("127.0.0.1", sim.port, client=kwargs.get("client", 16))
        if kind == "hdlc":
            return hdlc_tcp_link("127.0.0.1", sim.port, frame_timeout=0.3, max_retries=1, **kwargs)
        assert sim.pty_path is not None
        return hdlc_serial_link(sim.pty_path, frame_timeout=0.3, max_retries=1, **kwargs)

    return make


TRANSPORTS = ["wrapper", "hdlc", "pty"]


def _simulator(kind: str, meters: dict[int, SimMeter] | None = None, **kwargs: Any) -> DlmsSimulator:
    return DlmsSimulator(
        meters, transport="wrapper" if kind == "wrapper" else "hdlc", pty=kind == "pty", **kwargs
    )


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_read_disconnect_reconnect_end_to_end(kind: str) -> None:
    meter, clock = _meter()
    meter.set_load(600.0)

    async def scenario() -> None:
        async with _simulator(kind, {1: meter}) as sim:
            settings = ClientSettings(response_timeout=2.0, max_pdu_size=200)
            async with DlmsClient(_link(kind)(sim), settings) as client:
                before = await client.read_register("1-0:1.8.0.255")
                clock.now += 3600
                after = await client.read_register("1-0:1.8.0.255")
                assert after.value - before.value == pytest.approx(600)
                scaler_unit = await client.get((3, "1-0:1.8.0.255", 3))
                assert scaler_unit.to_python() == [0, 30]
                serial, ldn = await client.get_with_list([(1, "0-0:96.1.1.255", 2), (1, "0-0:42.0.0.255", 2)])
                assert serial == Data(DataType.VISIBLE_STRING, meter.serial)
                assert ldn == Data(DataType.OCTET_STRING, meter.logical_device_name.encode())
                assert (await client.read_clock()).to_datetime() == FIXED_NOW
                await client.remote_disconnect()
                assert (await client.get((70, "0-0:96.3.10.255", 2))).value is False
                assert (await client.get((70, "0-0:96.3.10.255", 3))).value == DISCONNECTED
                clock.now += 3600
                assert (await client.read_register("1-0:1.8.0.255")).value == after.value
                await client.remote_reconnect()
                assert (await client.get((70, "0-0:96.3.10.255", 2))).value is True
                # The object list (~700 octets) exceeds the 200-octet PDU: block transfer.
                object_list = await client.get((15, "0-0:40.0.0.255", 2))
                assert len(object_list) == len(SPEC.objects)

    run(scenario())


@pytest.mark.parametrize("kind", ["wrapper", "hdlc"])
def test_lls_association(kind: str) -> None:
    async def scenario() -> None:
        async with _simulator(kind, policy=SecurityPolicy(lls_password=b"secret12")) as sim:
            good = ClientSettings(client_sap=17, authentication=Authentication.LOW, password=b"secret12")
            async with DlmsClient(_link(kind, client=17)(sim), good) as client:
                assert (await client.read_register("1-0:32.7.0.255")).value == pytest.approx(230.0)
            bad = ClientSettings(client_sap=17, authentication=Authentication.LOW, password=b"wrong")
            client = DlmsClient(_link(kind, client=17)(sim), bad)
            with pytest.raises(AuthenticationFailure):
                await client.associate()
            await client.link.close()

    run(scenario())


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("fault", [FaultMode.NO_ANSWER, FaultMode.GARBAGE, FaultMode.TRUNCATED])
def test_fault_modes_give_link_errors_within_the_bound(kind: str, fault: FaultMode) -> None:
    async def scenario() -> None:
        async with _simulator(kind) as sim:
            client = DlmsClient(_link(kind)(sim), ClientSettings(response_timeout=0.6))
            await client.associate()
            sim.fault = fault
            started = time.monotonic()
            with pytest.raises(LinkError) as caught:
                await client.read_register("1-0:1.8.0.255")
            assert time.monotonic() - started < 2.0
            if fault is not FaultMode.GARBAGE or kind != "wrapper":
                # Only a garbled wrapper header is detectable; everything else is silence to the client.
                assert isinstance(caught.value, LinkTimeout)
            await client.link.close()

    run(scenario())


def test_several_meters_on_one_hdlc_bus() -> None:
    meters = {17: _meter(serial="BUS00017")[0], 18: _meter(serial="BUS00018")[0]}

    async def scenario() -> None:
        async with _simulator("pty", meters) as sim:
            for physical, meter in meters.items():
                link = _link("pty", physical=physical)(sim)
                async with DlmsClient(link, ClientSettings(response_timeout=2.0)) as client:
                    serial = await client.get((1, "0-0:96.1.1.255", 2))
                    assert serial.value == meter.serial
            # An address nobody has: silence, so LinkTimeout.
            link = _link("pty", physical=19)(sim)
            with pytest.raises(LinkTimeout):
                await link.open()

    run(scenario())


def test_baud_pacing_and_response_delay_slow_the_answer() -> None:
    async def scenario() -> None:
        async with _simulator("hdlc", baud=9600, response_delay=0.05) as sim:
            link = _link("hdlc")(sim)
            started = time.monotonic()
            await link.open()  # SNRM -> UA: one paced frame (UA with parameters, 33 octets incl. flags)
            elapsed = time.monotonic() - started
            assert elapsed >= 0.05 + 20 * 10 / 9600
            await link.close()

    run(scenario())


def test_simulator_rejects_bad_configuration() -> None:
    with pytest.raises(SimulatorError, match="pty carries HDLC only"):
        DlmsSimulator(pty=True, transport="wrapper")
    with pytest.raises(SimulatorError, match="no simulated meter at address 9"):
        DlmsSimulator().meter(9)


@pytest.mark.parametrize("kind", ["wrapper", "hdlc"])
def test_hls_gmac_association_with_ciphered_apdus(kind: str) -> None:
    policy = SecurityPolicy()

    def settings(authentication_key: bytes) -> ClientSettings:
        return ClientSettings(
            client_sap=1,
            authentication=Authentication.HLS_GMAC,
            system_title=b"VAMCLI01",
            encryption_key=policy.encryption_key,
            authentication_key=authentication_key,
            response_timeout=2.0,
        )

    async def scenario() -> None:
        async with _simulator(kind, policy=policy) as sim:
            counter_before = policy.invocation_counter
            async with DlmsClient(_link(kind, client=1)(sim), settings(policy.authentication_key)) as client:
                assert (await client.read_register("1-0:32.7.0.255")).value == pytest.approx(230.0)
                await client.remote_disconnect()
                assert not sim.meter().output_state
            assert policy.invocation_counter > counter_before  # the server's counter only grows
            client = DlmsClient(_link(kind, client=1)(sim), settings(bytes(16)))
            with pytest.raises(AuthenticationFailure):
                await client.associate()
            await client.link.close()

    run(scenario())


def test_pty_without_a_reader_drops_answers_instead_of_stalling() -> None:
    from villageami.dlms.hdlc import HdlcFrame, client_address, server_address

    snrm = HdlcFrame(server_address(1), client_address(16), 0x93).encode()

    async def scenario() -> None:
        async with _simulator("pty") as sim:
            assert sim.pty_path is not None
            fd = os.open(sim.pty_path, os.O_RDWR | os.O_NOCTTY)
            try:
                for _ in range(40):  # ~40 x 25 UA frames: more than the pty buffer holds
                    os.write(fd, snrm * 25)
                    await asyncio.sleep(0.005)
                for _ in range(200):
                    if sim.dropped_octets:
                        break
                    await asyncio.sleep(0.01)
                assert sim.dropped_octets > 0
            finally:
                os.close(fd)

    run(scenario())
