"""The bus arbiter: one transaction at a time per serial port, back-off for dead meters, bounded TCP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from villageami.meters.bus import BusArbiter, MeterBackingOff
from villageami.meters.driver import MeterUnreachable
from villageami.meters.factory import SerialPorts, open_driver
from villageami.meters.profile import load_profile
from villageami.sim.modbus_server import ModbusSimulator

T = TypeVar("T")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(factory(), 30))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def pty_pair() -> AsyncIterator[tuple[str, str]]:
    """Two tty device paths joined like a null-modem cable (two os.openpty pairs, masters cross-copied)."""
    loop = asyncio.get_running_loop()
    master_a, slave_a = os.openpty()
    master_b, slave_b = os.openpty()
    for fd in (slave_a, slave_b):
        tty.setraw(fd)

    def pump(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        if data:
            os.write(dst, data)

    loop.add_reader(master_a, pump, master_a, master_b)
    loop.add_reader(master_b, pump, master_b, master_a)
    try:
        yield os.ttyname(slave_a), os.ttyname(slave_b)
    finally:
        loop.remove_reader(master_a)
        loop.remove_reader(master_b)
        for fd in (master_a, slave_a, master_b, slave_b):
            os.close(fd)


def test_serial_bus_with_a_dead_meter_keeps_reading_the_others() -> None:
    profile = load_profile("eastron-sdm120")
    clock = FakeClock()
    arbiter = BusArbiter(inter_frame_gap=0.002, backoff_initial=10, backoff_max=40, clock=clock)
    keys = ["1.8.0", "1.7.0", "32.7.0"]

    async def main() -> None:
        async with pty_pair() as (client_end, meter_end):
            sim = ModbusSimulator(profile, units=[1, 2, 4], serial=meter_end, baud=9600)
            sim.dead.add(4)  # unit 4 is on the bus but never answers; unit 3 does not exist at all
            await sim.start()
            ports = SerialPorts()
            try:
                drivers = {
                    unit: open_driver(
                        f"modbus+rtu://{client_end}?unit={unit}&timeout=0.3",
                        profile,
                        arbiter=arbiter,
                        ports=ports,
                    )
                    for unit in (1, 2, 3, 4)
                }

                async def poll(unit: int) -> object:
                    driver = drivers[unit]
                    try:
                        return await arbiter.poll(f"u{unit}", lambda: driver.read(keys))
                    except MeterUnreachable as err:
                        return err

                results = await asyncio.gather(*(poll(u) for u in drivers))
                outcome = dict(zip(drivers, results, strict=True))
                for unit in (1, 2):
                    reads = outcome[unit]
                    assert isinstance(reads, dict), reads
                    assert all(r.ok for r in reads.values())
                    assert reads["1.7.0"].value == pytest.approx(sim.values(unit)["1.7.0"])
                for unit in (3, 4):
                    assert isinstance(outcome[unit], MeterUnreachable)
                    assert not isinstance(outcome[unit], MeterBackingOff)
                # never two transactions on the wire at once; every read went through the lock
                assert arbiter.max_in_flight[client_end] == 1
                first_cycle = arbiter.transactions[client_end]
                assert (
                    first_cycle == 2 * 3 + 2
                )  # units 1, 2: three requests each (0, 12, 72); units 3, 4: one each

                # next cycle: the dead meters are backed off without touching the wire, the others answer
                clock.now += 5
                results = await asyncio.gather(*(poll(u) for u in drivers))
                again = dict(zip(drivers, results, strict=True))
                assert isinstance(again[1], dict) and isinstance(again[2], dict)
                assert isinstance(again[3], MeterBackingOff) and isinstance(again[4], MeterBackingOff)
                assert arbiter.transactions[client_end] == first_cycle + 6

                # after the back-off window the dead meter is tried again, and backs off twice as long
                clock.now += 6
                assert isinstance(await poll(4), MeterUnreachable)
                assert arbiter.backoff("u4").delay == 20
                sim.dead.discard(4)  # the meter comes back
                clock.now += 21
                assert isinstance(await poll(4), dict)
                assert arbiter.backoff("u4").failures == 0
                assert arbiter.max_in_flight[client_end] == 1
            finally:
                await ports.close()
                await sim.stop()

    run(main)


def test_transactions_on_one_port_never_interleave_and_keep_the_gap() -> None:
    arbiter = BusArbiter(inter_frame_gap=0.01)
    spans: list[tuple[str, float, float]] = []

    async def transaction(name: str, hold: float) -> None:
        async with arbiter.transaction("/dev/ttyFAKE"):
            start = asyncio.get_running_loop().time()
            await asyncio.sleep(hold)
            spans.append((name, start, asyncio.get_running_loop().time()))

    async def main() -> None:
        await asyncio.gather(*(transaction(f"t{i}", 0.002 * (i % 3)) for i in range(12)))

    run(main)
    spans.sort(key=lambda s: s[1])
    for (_, _, end), (_, start, _) in itertools.pairwise(spans):
        assert start >= end + 0.009  # previous end plus the inter-frame gap (loop clock granularity)
    assert arbiter.max_in_flight["/dev/ttyFAKE"] == 1
    assert arbiter.transactions["/dev/ttyFAKE"] == 12


def test_ports_are_independent_and_tcp_is_bounded() -> None:
    arbiter = BusArbiter(inter_frame_gap=0, tcp_concurrency=3)
    running = {"tcp": 0, "max": 0}

    async def tcp_op() -> int:
        running["tcp"] += 1
        running["max"] = max(running["max"], running["tcp"])
        await asyncio.sleep(0.01)
        running["tcp"] -= 1
        return 1

    async def main() -> None:
        guard = arbiter.guard(None)
        results = await asyncio.gather(*(guard(tcp_op) for _ in range(10)))
        assert sum(results) == 10
        # two serial ports may be busy at the same time
        both = asyncio.Event()
        entered: list[str] = []

        async def hold(port: str) -> None:
            async with arbiter.transaction(port):
                entered.append(port)
                if len(entered) == 2:
                    both.set()
                await asyncio.wait_for(both.wait(), 2)

        await asyncio.gather(hold("/dev/ttyA"), hold("/dev/ttyB"))

    run(main)
    assert running["max"] == 3
    assert arbiter.max_in_flight["tcp"] == 3


def test_backoff_is_exponential_and_capped() -> None:
    clock = FakeClock()
    arbiter = BusArbiter(backoff_initial=1, backoff_max=8, clock=clock)
    delays = [arbiter.record_failure("m") for _ in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]
    with pytest.raises(MeterBackingOff, match="6 failed polls"):
        arbiter.ensure_ready("m")
    clock.now += 8
    arbiter.ensure_ready("m")
    arbiter.record_success("m")
    assert arbiter.backoff("m").failures == 0
    with pytest.raises(ValueError):
        BusArbiter(tcp_concurrency=0)
