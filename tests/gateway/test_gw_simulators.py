"""The gateway with real drivers (meters.factory) against the Modbus simulator, one unit dead."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gw_fakes import config_data
from test_gw_reads import ALL, events, messages

from villageami.gateway.app import Gateway
from villageami.gateway.config import parse_config
from villageami.meters.profile import load_profile
from villageami.sim.dlms_model import CONNECTED, DISCONNECTED
from villageami.sim.dlms_server import DlmsSimulator
from villageami.sim.modbus_server import ModbusSimulator


def test_modbus_simulator_units_through_the_real_factory(tmp_path: Path) -> None:
    async def scenario() -> Gateway:
        async with ModbusSimulator(load_profile("eastron-sdm630"), units=(1, 2, 3)) as sim:
            meters = [
                {"serial": f"SDM-{u}", "url": f"modbus+tcp://127.0.0.1:{sim.port}?unit={u}&timeout=0.3",
                 "profile": "eastron-sdm630"}
                for u in (1, 2, 3)
            ]  # fmt: skip
            data = config_data(tmp_path, meters)
            data["buses"] = []
            gateway = Gateway(parse_config(data, "test", tmp_path), base_dir=tmp_path)
            pollers = list(gateway.pollers.values())
            assert {p.bus for p in pollers} == {f"127.0.0.1:{sim.port}"}, "one TCP gateway = one shared wire"
            await gateway.scheduler.run_cycle("sim", pollers, ALL, concurrent=False)
            sim.dead.add(2)
            await gateway.scheduler.run_cycle("sim", pollers, ALL, concurrent=False)
            for poller in pollers:
                await poller.reset()
            return gateway

    gateway = asyncio.run(scenario())
    telemetry = messages(gateway, "/telemetry")  # every message passes contract validation
    assert [t["meterSerial"] for t in telemetry[:3]] == ["SDM-1", "SDM-2", "SDM-3"]
    first = {r["obis"]: r for r in telemetry[0]["registers"]}
    assert first["1.8.0"]["unit"] == "kWh" and first["1.8.0"]["quality"] == "good"
    assert 180 <= first["32.7.0"]["value"] <= 270
    second_cycle = {t["meterSerial"]: t for t in telemetry[3:]}
    assert {r["quality"] for r in second_cycle["SDM-2"]["registers"]} == {"comms_lost"}
    assert {r["quality"] for r in second_cycle["SDM-3"]["registers"]} == {"good"}, "neighbour still read"
    assert [e["state"] for e in events(gateway, "meter_comms_lost")] == ["raised"]


def test_disconnect_and_reconnect_on_the_dlms_simulator_confirmed_by_read_back(tmp_path: Path) -> None:
    from test_gw_control import command

    async def scenario() -> Gateway:
        sim = DlmsSimulator(transport="hdlc")
        await sim.start()
        try:
            meters = [{"serial": "DLMS-1", "url": sim.url, "profile": "villageami-sim-dlms-1p"}]
            data = config_data(tmp_path, meters)
            data["buses"] = []
            gateway = Gateway(parse_config(data, "test", tmp_path), base_dir=tmp_path)
            for ctype, relay in (("disconnect", DISCONNECTED), ("reconnect", CONNECTED)):
                topic, payload, _ = command(gateway, ctype, serial="DLMS-1")
                gateway.control.handle_message(topic, payload)
                await gateway.control.wait_idle()
                assert sim.meter().state.control_state == relay, f"the simulated relay after {ctype}"
            for poller in gateway.pollers.values():
                await poller.reset()
            return gateway
        finally:
            await sim.stop()

    gateway = asyncio.run(scenario())
    finals = [m for m in messages(gateway, "/command/result") if m["status"] not in ("accepted", "executing")]
    assert [(f["status"], f["registers"][0]["value"]) for f in finals] == [
        ("succeeded", "disconnected"),
        ("succeeded", "connected"),
    ]
