"""One VMRS read cycle of N DLMS meters on a simulated 9600-baud HDLC bus, through the real gateway.

Part 1 (wire): the DLMS simulator serves N meters over HDLC; between the gateway and the simulator sits a
proxy that plays the RS-485 wire: one direction at a time (half duplex) and ``bytes * 10 / baud`` seconds per
chunk (8N1). It counts every octet, so the wire-time lower bound of a cycle is ``octets * 10 / baud``.
Printed: cycle time / lower bound (how much the protocol exchange and the gateway add on top of the wire),
first cycle (with HDLC + association setup) and a steady cycle, and the same cycle read one GET per key.

Part 2 (footprint): 500 meters, simulator in a child process (its CPU is not counted), no pacing:
gateway CPU seconds per meter read (normalise, plausibility, events, outbox write included) and peak RSS.

    python bench/gateway_cycle.py [--meters 8] [--baud 9600] [--fleet 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from villageami.gateway.app import Gateway
from villageami.gateway.config import GatewayConfig, ReadClass, keys_for, parse_config
from villageami.sim.dlms_model import DEFAULT_OBJECT_SET, SimMeter, load_object_set
from villageami.sim.dlms_server import DlmsSimulator

PROFILE = "villageami-sim-dlms-1p"
CYCLE = {ReadClass.INSTANTANEOUS, ReadClass.STATUS, ReadClass.CLOCK}


class WireProxy:
    """A half-duplex, baud-paced, octet-counting TCP relay standing in for an RS-485 segment."""

    def __init__(self, target_port: int, baud: int) -> None:
        self.target_port = target_port
        self.baud = baud
        self.octets = 0
        self._wire = asyncio.Lock()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(4096):
            async with self._wire:  # one talker at a time on a two-wire bus
                await asyncio.sleep(len(chunk) * 10 / self.baud)
                self.octets += len(chunk)
            writer.write(chunk)
            await writer.drain()


def gateway_config(workdir: Path, urls: list[str], timeout_s: float) -> GatewayConfig:
    data: dict[str, Any] = {
        "feederId": "bench",
        "gatewayId": "bench-gw",
        "broker": {"url": "mqtt://127.0.0.1:1"},
        "meters": [{"serial": f"SIM-{i:04d}", "url": url, "profile": PROFILE} for i, url in enumerate(urls)],
        "schedules": {"readTimeoutS": timeout_s},
        "outbox": {"path": str(workdir / "outbox.db")},
        "commands": {"path": str(workdir / "commands.db")},
        "metrics": {"enabled": False},
    }
    return parse_config(data, "bench", workdir)


def cycle_keys() -> list[str]:
    keys: list[str] = []
    for rc in sorted(CYCLE):
        keys.extend(keys_for(rc))
    return list(dict.fromkeys(keys))


async def wire_part(meters: int, baud: int) -> None:
    addresses = list(range(17, 17 + meters))
    sim = DlmsSimulator(
        {a: SimMeter(load_object_set(DEFAULT_OBJECT_SET)) for a in addresses}, transport="hdlc"
    )
    await sim.start()
    proxy = WireProxy(sim.port, baud)
    await proxy.start()
    urls = [
        f"dlms+hdlc+tcp://127.0.0.1:{proxy.port}?client=16&server=1&physical={a}&timeout=30"
        for a in addresses
    ]
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(gateway_config(Path(tmp), urls, 60.0), base_dir=Path(tmp))
        pollers = list(gateway.pollers.values())
        figures: dict[str, tuple[float, int]] = {}
        for label in ("first cycle (link + association)", "steady cycle"):
            proxy.octets = 0
            started = time.perf_counter()
            await gateway.scheduler.run_cycle("bus", pollers, CYCLE, concurrent=False)
            figures[label] = (time.perf_counter() - started, proxy.octets)
        ok = gateway.metrics.value(
            "villageami_meter_reads_total", {"meter": pollers[0].serial, "outcome": "ok"}
        )
        keys = [k for k in cycle_keys() if k in pollers[0].supported(cycle_keys())]
        proxy.octets = 0
        started = time.perf_counter()
        for poller in pollers:  # same association, one GET per key
            for key in keys:
                await poller.read([key], 60.0)
        figures["one GET per key (steady)"] = (time.perf_counter() - started, proxy.octets)
        for poller in pollers:
            await poller.reset()
        gateway.outbox.close()
        gateway.journal.close()
    await proxy.stop()
    await sim.stop()

    print(f"## wire: {meters} DLMS meters, one HDLC bus at {baud} baud, {len(keys)} VMRS keys per meter")
    print(f"reads ok on the first meter: {ok:.0f} of 2 cycles")
    for label, (seconds, octets) in figures.items():
        bound = octets * 10 / baud
        print(
            f"{label:36s} {seconds:7.2f} s  {octets:6d} octets  wire bound {bound:6.2f} s  "
            f"ratio {seconds / bound:5.2f}  per meter {seconds / meters:5.2f} s"
        )
    steady, per_key = figures["steady cycle"], figures["one GET per key (steady)"]
    time_ratio, octet_ratio = per_key[0] / steady[0], per_key[1] / steady[1]
    print(f"one GET per key vs the gateway's cycle: {time_ratio:.2f}x time, {octet_ratio:.2f}x octets")


SIM_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from villageami.sim.dlms_model import DEFAULT_OBJECT_SET, SimMeter, load_object_set
    from villageami.sim.dlms_server import DlmsSimulator

    async def main() -> None:
        n = int(sys.argv[1])
        spec = load_object_set(DEFAULT_OBJECT_SET)
        sim = DlmsSimulator({a: SimMeter(spec) for a in range(17, 17 + n)}, transport="hdlc")
        await sim.start()
        print(sim.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await sim.stop()

    asyncio.run(main())
    """
)


def start_simulator(fleet: int) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", SIM_CHILD, str(fleet)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


async def footprint_part(fleet: int, port: int) -> None:
    urls = [
        f"dlms+hdlc+tcp://127.0.0.1:{port}?client=16&server=1&physical={a}" for a in range(17, 17 + fleet)
    ]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(gateway_config(Path(tmp), urls, 30.0), base_dir=Path(tmp))
        pollers = list(gateway.pollers.values())
        await gateway.scheduler.run_cycle("warm", pollers, CYCLE, concurrent=False)
        cpu, wall = time.process_time(), time.perf_counter()
        await gateway.scheduler.run_cycle("fleet", pollers, CYCLE, concurrent=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        reads = sum(
            gateway.metrics.value("villageami_meter_reads_total", {"meter": p.serial, "outcome": "ok"})
            for p in pollers
        )
        depth = gateway.outbox.depth()
        for poller in pollers:
            await poller.reset()
        gateway.outbox.close()
        gateway.journal.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"## footprint: {fleet} DLMS meters (simulator in a child process, no wire pacing)")
    print(f"successful reads over 2 cycles: {reads:.0f} of {2 * fleet}; outbox holds {depth} messages")
    print(f"gateway CPU per meter read (steady cycle): {cpu / fleet * 1000:.2f} ms; cycle wall {wall:.2f} s")
    peak, before = rss / 1024, rss_before / 1024
    print(f"peak RSS of the gateway process: {peak:.1f} MiB (before building the gateway: {before:.1f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=8)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--fleet", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(wire_part(args.meters, args.baud))
    print()
    child, port = start_simulator(args.fleet)
    try:
        asyncio.run(footprint_part(args.fleet, port))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


if __name__ == "__main__":
    main()
