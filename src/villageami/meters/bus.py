"""The bus arbiter: who may talk on which line, when.

* Meters on one serial port (an RS-485 segment) share the wire: the arbiter runs one transaction at a time
  per port (an asyncio lock) and keeps the line quiet for ``inter_frame_gap`` seconds after each one, so the
  next frame never runs into a late answer.
* A meter that does not answer raises ``MeterUnreachable`` after its own timeout; the arbiter backs it off
  (exponential, capped) so the next poll cycles skip it quickly, and the port stays open for the others.
* TCP meters have their own sockets, so they are polled concurrently, at most ``tcp_concurrency`` at a time.

The arbiter counts transactions in flight per port and remembers the largest number it saw
(``max_in_flight``): on a serial port it must never exceed 1, and tests check that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from villageami.meters.driver import MeterUnreachable

__all__ = ["BackoffState", "BusArbiter", "MeterBackingOff"]

T = TypeVar("T")


class MeterBackingOff(MeterUnreachable):
    """The meter failed recently and is not polled again until its back-off delay has passed."""


@dataclass(slots=True)
class BackoffState:
    failures: int = 0
    retry_at: float = 0.0
    delay: float = 0.0


class BusArbiter:
    """Serialises serial ports, bounds TCP concurrency, backs off dead meters."""

    def __init__(
        self,
        *,
        inter_frame_gap: float = 0.005,
        tcp_concurrency: int = 16,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tcp_concurrency < 1:
            raise ValueError("tcp_concurrency must be at least 1")
        self.inter_frame_gap = inter_frame_gap
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.clock = clock
        self._port_locks: dict[str, asyncio.Lock] = {}
        self._tcp = asyncio.Semaphore(tcp_concurrency)
        self.tcp_concurrency = tcp_concurrency
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.transactions: dict[str, int] = {}
        self._backoff: dict[str, BackoffState] = {}

    # -- transactions --

    @asynccontextmanager
    async def transaction(self, port: str | None) -> AsyncIterator[None]:
        """Hold the line for one request/response. ``port`` None means TCP (bounded concurrency only)."""
        lane = port if port is not None else "tcp"
        if port is None:
            async with self._tcp:
                with self._count(lane):
                    yield
            return
        lock = self._port_locks.setdefault(port, asyncio.Lock())
        async with lock:
            try:
                with self._count(lane):
                    yield
            finally:
                if self.inter_frame_gap > 0:
                    await asyncio.sleep(self.inter_frame_gap)

    def guard(self, port: str | None) -> Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]:
        """A wrapper that runs one transaction under :meth:`transaction` (what drivers take as ``guard``)."""

        async def run(op: Callable[[], Awaitable[T]]) -> T:
            async with self.transaction(port):
                return await op()

        return run

    class _Counter:
        def __init__(self, arbiter: BusArbiter, lane: str) -> None:
            self.arbiter, self.lane = arbiter, lane

        def __enter__(self) -> None:
            a = self.arbiter
            a._in_flight[self.lane] = a._in_flight.get(self.lane, 0) + 1
            a.transactions[self.lane] = a.transactions.get(self.lane, 0) + 1
            a.max_in_flight[self.lane] = max(a.max_in_flight.get(self.lane, 0), a._in_flight[self.lane])

        def __exit__(self, *exc: object) -> None:
            self.arbiter._in_flight[self.lane] -= 1

    def _count(self, lane: str) -> BusArbiter._Counter:
        return BusArbiter._Counter(self, lane)

    # -- back-off --

    def backoff(self, meter_id: str) -> BackoffState:
        return self._backoff.setdefault(meter_id, BackoffState())

    def ensure_ready(self, meter_id: str) -> None:
        """Raise MeterBackingOff while the meter is in its back-off window."""
        state = self._backoff.get(meter_id)
        if state is not None and state.failures and self.clock() < state.retry_at:
            wait = state.retry_at - self.clock()
            raise MeterBackingOff(
                f"meter {meter_id}: {state.failures} failed polls, backing off for {wait:.1f} s more"
            )

    def record_success(self, meter_id: str) -> None:
        self._backoff.pop(meter_id, None)

    def record_failure(self, meter_id: str) -> float:
        """Count a failed poll; returns the back-off delay now in force."""
        state = self.backoff(meter_id)
        state.failures += 1
        state.delay = min(self.backoff_max, self.backoff_initial * 2 ** (state.failures - 1))
        state.retry_at = self.clock() + state.delay
        return state.delay

    async def poll(self, meter_id: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run one whole poll of a meter (its transactions go through :meth:`guard`), with back-off."""
        self.ensure_ready(meter_id)
        try:
            result = await op()
        except MeterUnreachable:
            self.record_failure(meter_id)
            raise
        self.record_success(meter_id)
        return result
