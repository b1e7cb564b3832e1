"""Interop: gurux-dlms's client (test-only, GPL-2.0) against villageami's DLMS simulator.

Gurux generates every request and parses every reply; the test only moves bytes over the socket.
"""

from __future__ import annotations

import datetime as dt

import pytest
from gurux_dlms.enums import Authentication, ObjectType
from gurux_dlms.objects import (
    GXDLMSClock,
    GXDLMSData,
    GXDLMSDisconnectControl,
    GXDLMSRegister,
)
from gurux_peer import GuruxSocketClient, simulator_thread

from villageami.sim.dlms_app import SecurityPolicy
from villageami.sim.dlms_model import SimMeter, load_object_set
from villageami.sim.dlms_server import DlmsSimulator

FIXED_NOW = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _simulator(transport: str, **kwargs: object) -> tuple[DlmsSimulator, SimMeter, FakeClock]:
    clock = FakeClock()
    meter = SimMeter(load_object_set(), monotonic=clock, wallclock=lambda: FIXED_NOW)
    meter.set_load(1000.0)
    return DlmsSimulator({1: meter}, transport=transport, **kwargs), meter, clock  # type: ignore[arg-type]


KEYS = (bytes(range(16)), bytes(range(0xD0, 0xE0)))  # the simulator's default suite-0 test keys
SECURITY = {
    "none": {"client_address": 16},
    "lls": {"client_address": 17, "authentication": Authentication.LOW, "password": b"12345678"},
    "hls-gmac": {"client_address": 1, "authentication": Authentication.HIGH_GMAC, "keys": KEYS},
}


@pytest.mark.parametrize("security", SECURITY)
@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
def test_gurux_client_reads_and_switches_simulated_meter(transport: str, security: str) -> None:
    sim, meter, clock = _simulator(transport, policy=SecurityPolicy(lls_password=b"12345678"))
    with simulator_thread(sim):
        client = GuruxSocketClient(sim.port, hdlc=transport == "hdlc", **SECURITY[security])  # type: ignore[arg-type]
        try:
            client.connect()
            energy = GXDLMSRegister("1.0.1.8.0.255")
            client.read(energy, 3)
            assert (energy.scaler, int(energy.unit)) == (1.0, 30)  # gurux keeps 10**scaler
            clock.now += 3600
            client.read(energy, 2)
            assert energy.value == 1000  # 1 kW for an hour

            voltage = GXDLMSRegister("1.0.32.7.0.255")
            serial = GXDLMSData("0.0.96.1.1.255")
            values = client.read_list([(voltage, 2), (voltage, 3), (serial, 2), (energy, 2)])
            assert values[0] == 2300 and list(values[1]) == [-1, 35]
            assert serial.value == meter.serial

            clock_object = GXDLMSClock("0.0.1.0.0.255")
            client.read(clock_object, 2)
            assert clock_object.time.value == FIXED_NOW

            switch = GXDLMSDisconnectControl("0.0.96.3.10.255")
            client.exchange(switch.remoteDisconnect(client.client))
            client.read(switch, 2)
            assert switch.outputState is False
            assert not meter.output_state
            client.exchange(switch.remoteReconnect(client.client))
            client.read(switch, 2)
            assert switch.outputState is True
            client.release()
        finally:
            client.close()


def test_gurux_client_reads_object_list_with_block_transfer() -> None:
    sim, _meter, _clock = _simulator("wrapper")
    with simulator_thread(sim):
        client = GuruxSocketClient(sim.port, hdlc=False)
        try:
            client.client.setMaxReceivePDUSize(128)  # forces GET-response-with-datablock
            client.connect()
            reply = client.exchange(client.client.getObjectsRequest())
            objects = client.client.parseObjects(reply.data, True)
            found = {(int(o.objectType), o.logicalName) for o in objects}
            assert (int(ObjectType.REGISTER), "1.0.1.8.0.255") in found
            assert (int(ObjectType.DISCONNECT_CONTROL), "0.0.96.3.10.255") in found
            assert len(objects) == len(load_object_set().objects)
        finally:
            client.close()


@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
def test_gurux_client_wrong_secrets_are_refused(transport: str) -> None:
    sim, _meter, _clock = _simulator(transport, policy=SecurityPolicy(lls_password=b"12345678"))
    with simulator_thread(sim):
        wrong_key = GuruxSocketClient(
            sim.port,
            hdlc=transport == "hdlc",
            client_address=1,
            authentication=Authentication.HIGH_GMAC,
            keys=(KEYS[0], bytes(16)),
        )
        try:
            with pytest.raises(Exception, match="Authentication failure"):
                wrong_key.connect()
        finally:
            wrong_key.close()
        wrong = GuruxSocketClient(
            sim.port,
            hdlc=transport == "hdlc",
            client_address=17,
            authentication=Authentication.LOW,
            password=b"wrong",
        )
        try:
            with pytest.raises(Exception, match="Authentication failure"):
                wrong.connect()
        finally:
            wrong.close()
