"""Sequential register reads per second: villageami's DLMS client against villageami's simulator.

Each read is ``DlmsClient.read_register("1-0:1.8.0.255")``. The simulator negotiates multiple-references,
so every read is one request/response exchange (a GET-with-list of value and scaler_unit). Links:

(a) IEC 62056-47 wrapper over TCP, (b) HDLC over TCP, (c) HDLC over a pty (the simulator's pty mode) with
no pacing, (d) the same pty paced at 9600 baud 8N1. For (d) the simulator sleeps ``len * 10 / baud`` before
each write (its own pacing) and this script does the same for the client's writes, so both directions pay
for their bits. A pty itself does not throttle. The 9600-baud figure is also shown against its wire-time
bound: 9600 / (10 * octets of request and response frames per read).

Everything runs in one process on one event loop (simulator and client), on port 0. Run:
``python bench/dlms_link.py`` (about 20 s).
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

from villageami.dlms.client import ClientSettings, DlmsClient
from villageami.dlms.link import ApduLink
from villageami.dlms.transport import (
    HdlcLink,
    SerialByteStream,
    TcpByteStream,
    WrapperLink,
    hdlc_serial_link,
    hdlc_tcp_link,
    tcp_wrapper_link,
)
from villageami.sim.dlms_server import DlmsSimulator

REGISTER = "1-0:1.8.0.255"
BAUD = 9600


class _Counted:
    """Counts the octets a byte stream writes and reads; optionally paces its writes to a baud rate."""

    def __init__(self, stream: TcpByteStream | SerialByteStream, baud: int | None = None) -> None:
        self.written = 0
        self.read = 0
        raw_write, raw_read = stream.write, stream.read

        async def write(data: bytes) -> None:
            if baud:
                await asyncio.sleep(len(data) * 10 / baud)  # 8N1: 10 bit times per octet
            self.written += len(data)
            await raw_write(data)

        async def read(timeout: float) -> bytes:
            data = await raw_read(timeout)
            self.read += len(data)
            return data

        stream.write = write  # type: ignore[method-assign]
        stream.read = read  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    reads_per_second: float
    octets_per_read: float


async def _measure(
    name: str,
    sim: DlmsSimulator,
    make_link: Callable[[DlmsSimulator], ApduLink],
    seconds: float,
    baud: int | None,
) -> Result:
    await sim.start()
    try:
        link = make_link(sim)
        assert isinstance(link, WrapperLink | HdlcLink)
        counter = _Counted(link.stream, baud)
        async with DlmsClient(link, ClientSettings(response_timeout=5.0)) as meter:
            for _ in range(3):  # warm-up: caches, first-use imports
                await meter.read_register(REGISTER)
            before = counter.written + counter.read
            reads = 0
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                await meter.read_register(REGISTER)
                reads += 1
            octets = counter.written + counter.read - before
    finally:
        await sim.stop()
    return Result(name, reads / elapsed, octets / reads)


def _pty_link(sim: DlmsSimulator) -> ApduLink:
    assert sim.pty_path is not None
    return hdlc_serial_link(sim.pty_path, baud=sim.baud or BAUD)


async def run() -> list[Result]:
    return [
        await _measure(
            "(a) wrapper over TCP",
            DlmsSimulator(transport="wrapper"),
            lambda sim: tcp_wrapper_link(sim.host, sim.port),
            3.0,
            None,
        ),
        await _measure(
            "(b) HDLC over TCP",
            DlmsSimulator(transport="hdlc"),
            lambda sim: hdlc_tcp_link(sim.host, sim.port),
            3.0,
            None,
        ),
        await _measure(
            "(c) HDLC over pty, unpaced", DlmsSimulator(transport="hdlc", pty=True), _pty_link, 3.0, None
        ),
        await _measure(
            f"(d) HDLC over pty, {BAUD} baud",
            DlmsSimulator(transport="hdlc", pty=True, baud=BAUD),
            _pty_link,
            6.0,
            BAUD,
        ),
    ]


def main() -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {load:.2f}")  # fmt: skip
    print(f"workload: sequential read_register({REGISTER!r}), one GET-with-list exchange each, "
          "client and simulator on one event loop")  # fmt: skip
    results = asyncio.run(run())
    for result in results:
        print(f"{result.name:30} {result.reads_per_second:9,.1f} reads/s   "
              f"{result.octets_per_read:5.0f} octets on the wire per read")  # fmt: skip
    paced = results[-1]
    bound = BAUD / (10 * paced.octets_per_read)
    measured = paced.reads_per_second
    print(f"wire-time bound at {BAUD} baud: {BAUD} / (10 x {paced.octets_per_read:.0f} octets) "
          f"= {bound:.1f} reads/s; measured {measured:.1f} reads/s "
          f"= {measured / bound:.2f} of the bound")  # fmt: skip
    unpaced = results[2]
    print(f"ratios: wrapper / HDLC-TCP {results[0].reads_per_second / results[1].reads_per_second:.2f}x, "
          f"HDLC-TCP / HDLC-pty {results[1].reads_per_second / unpaced.reads_per_second:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
