"""Read scheduling: one loop per serial bus, TCP meters concurrently with a bound.

A bus is a shared wire: its meters are read one after another, each read bounded by ``readTimeoutS``, so a
dead meter costs at most that much and its neighbours are still read. After n failed reads in a row a meter
is tried only every 2^(n-1)-th cycle (at most every 8th) so a dead meter does not eat the bus. Buses are
independent asyncio tasks, so one bus never waits for another.

For each meter read: driver -> ``meters.normalise`` -> plausibility -> telemetry + edge-detected events into
the outbox. An unreachable meter publishes its last known registers as ``comms_lost`` (original ``readAt``)
and a ``meter_comms_lost`` event; the first good read after that raises ``meter_comms_restored``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

from villageami.contract.envelope import EventState, EventType, Quality, Severity
from villageami.gateway.config import GatewayConfig, MeterConfig, ReadClass, keys_for
from villageami.gateway.events import EventDetector
from villageami.gateway.messages import DetectedEvent
from villageami.gateway.plausibility import PlausibilityChecker
from villageami.meters.driver import KeyRead, MeterDriver, MeterError
from villageami.meters.normalise import VmrsReading, comms_lost, normalise_all
from villageami.meters.profile import Profile

log = logging.getLogger("villageami.gateway.scheduler")

MAX_SKIP_CYCLES = 8


class ReadSink(Protocol):
    """Where a meter read goes (the gateway app: outbox, metrics, local rules)."""

    def telemetry(self, serial: str, readings: Sequence[VmrsReading], ts: datetime) -> None: ...

    def events(self, events: Iterable[DetectedEvent]) -> None: ...

    def read_done(self, serial: str, ok: bool, readings: Sequence[VmrsReading], seconds: float) -> None: ...


@dataclass(slots=True)
class MeterPoller:
    """One meter: its driver, profile, the lock it shares with its bus, and what it last read."""

    config: MeterConfig
    driver: MeterDriver
    profile: Profile | None
    lock: asyncio.Lock
    bus: str | None = None
    last: dict[str, VmrsReading] = field(default_factory=dict)
    failures: int = 0
    skip_cycles: int = 0
    decreased: set[str] = field(default_factory=set)
    connected: bool = False

    @property
    def serial(self) -> str:
        return self.config.serial

    def supported(self, keys: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(keys))
        if self.profile is None:
            return wanted
        mapped = set(self.profile.registers)
        return [k for k in wanted if k in mapped]

    async def read(self, keys: Sequence[str], timeout: float) -> dict[str, KeyRead]:
        """Connect if needed and read; the whole exchange is bounded by ``timeout``."""

        async def exchange() -> dict[str, KeyRead]:
            if not self.connected:
                await self.driver.connect()
                self.connected = True
            return await self.driver.read(keys)

        return await asyncio.wait_for(exchange(), timeout)

    async def reset(self, timeout: float = 2.0) -> None:
        """Drop the link after a failure so the next read starts clean."""
        self.connected = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.driver.close(), timeout)


def billing_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The instant (UTC) of the billing snapshot of local ``day``: wall time ``at`` in ``zone``.

    A wall time that occurs twice (clocks set back) is taken at its first occurrence. One that does not
    exist (clocks set forward past it, e.g. midnight in Africa/Cairo on the last Friday of April) is taken
    at the first valid instant after it: the moment of the jump.
    """
    wall = datetime.combine(day, at)
    earliest = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earliest.astimezone(zone).replace(tzinfo=None) == wall:
        return earliest
    # In a gap, fold=1 applies the offset after the jump and fold=0 the one before, so the jump lies
    # between the two readings. Bisect (on whole seconds, as tz database transitions are) for the first
    # instant whose local wall time is not before ``wall``.
    low, high = sorted((wall.replace(tzinfo=zone, fold=1).astimezone(UTC), earliest))
    low = low.replace(microsecond=0)
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


@dataclass(slots=True)
class Schedule:
    """Which read classes are due, per loop: intervals on the monotonic clock, billing at a local time.

    ``last_billing`` is the local date (in ``zone``) whose snapshot was last taken.
    """

    intervals: dict[ReadClass, float]
    billing_at: time
    zone: tzinfo = UTC
    last_run: dict[ReadClass, float] = field(default_factory=dict)
    last_billing: date | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig, now: datetime) -> Schedule:
        s = config.schedules
        schedule = cls(
            intervals={
                ReadClass.INSTANTANEOUS: s.instantaneous_s,
                ReadClass.STATUS: s.status_s,
                ReadClass.CLOCK: s.clock_s,
            },
            billing_at=s.billing_at,
            zone=s.zone,
        )
        # The day's snapshot is only taken when its time is crossed while running.
        schedule.last_billing = schedule.billing_day(now)
        return schedule

    def billing_day(self, now: datetime) -> date:
        """The local date of the latest billing instant at or before ``now``."""
        today = now.astimezone(self.zone).date()
        # A jump can move a day's instant past local midnight, so the day before is checked too.
        for day in (today + timedelta(days=1), today, today - timedelta(days=1)):
            if billing_instant(day, self.billing_at, self.zone) <= now:
                return day
        return today - timedelta(days=2)

    def next_billing(self, now: datetime) -> datetime:
        """The first billing instant after ``now``."""
        day = self.billing_day(now) + timedelta(days=1)
        instant = billing_instant(day, self.billing_at, self.zone)
        while instant <= now:  # only when two local days share one instant (a jump over billingAt)
            day += timedelta(days=1)
            instant = billing_instant(day, self.billing_at, self.zone)
        return instant

    def due(self, mono: float, now: datetime) -> set[ReadClass]:
        due = {rc for rc, every in self.intervals.items() if mono - self.last_run.get(rc, -1e18) >= every}
        if not self.last_run:
            due.add(ReadClass.STATIC)  # serial etc. once at start
        if self.last_billing is None or self.billing_day(now) > self.last_billing:
            due.add(ReadClass.BILLING)
        return due

    def mark(self, classes: set[ReadClass], mono: float, now: datetime) -> None:
        for rc in classes:
            if rc in self.intervals or rc is ReadClass.STATIC:
                self.last_run[rc] = mono
            if rc is ReadClass.BILLING:
                self.last_billing = self.billing_day(now)

    def sleep_for(self, mono: float, now: datetime) -> float:
        waits = [self.last_run.get(rc, mono) + every - mono for rc, every in self.intervals.items()]
        if self.last_billing is None or self.billing_day(now) > self.last_billing:
            waits.append(0.0)
        else:
            waits.append((self.next_billing(now) - now).total_seconds())
        return max(0.0, min(waits))


class Scheduler:
    def __init__(
        self,
        config: GatewayConfig,
        sink: ReadSink,
        *,
        plausibility: PlausibilityChecker,
        detector: EventDetector,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_cycle: Callable[[str, float], None] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.plausibility = plausibility
        self.detector = detector
        self.clock = clock
        self._on_cycle = on_cycle
        self._tcp_limit = asyncio.Semaphore(config.schedules.tcp_concurrency)
        self.cycles: dict[str, int] = {}

    # -- loops -----------------------------------------------------------------------------------------------

    async def run_loop(self, name: str, pollers: Sequence[MeterPoller], *, concurrent: bool) -> None:
        """Read ``pollers`` forever on their schedule: sequentially (a bus) or concurrently (TCP)."""
        schedule = Schedule.from_config(self.config, self.clock())
        while True:
            now, mono = self.clock(), _time.monotonic()
            due = schedule.due(mono, now)
            if due:
                await self.run_cycle(name, pollers, due, concurrent=concurrent)
                schedule.mark(due, mono, now)
            await asyncio.sleep(max(0.01, schedule.sleep_for(_time.monotonic(), self.clock())))

    async def run_cycle(
        self, name: str, pollers: Sequence[MeterPoller], classes: set[ReadClass], *, concurrent: bool
    ) -> None:
        started = _time.monotonic()
        keys: list[str] = []
        for rc in sorted(classes):
            keys.extend(keys_for(rc))
        if concurrent:

            async def bounded(poller: MeterPoller) -> None:
                async with self._tcp_limit:
                    await self.poll_meter(poller, keys)

            await asyncio.gather(*(bounded(p) for p in pollers))
        else:
            for poller in pollers:
                await self.poll_meter(poller, keys)
        self.cycles[name] = self.cycles.get(name, 0) + 1
        if self._on_cycle is not None:
            self._on_cycle(name, _time.monotonic() - started)

    # -- one meter -------------------------------------------------------------------------------------------

    async def poll_meter(self, poller: MeterPoller, keys: Sequence[str], *, force: bool = False) -> bool:
        """Read one meter and publish the outcome. Returns True when the meter answered."""
        if poller.skip_cycles > 0 and not force:
            poller.skip_cycles -= 1
            return False
        wanted = poller.supported(keys)
        if not wanted:
            return True
        async with poller.lock:
            return await self.read_and_publish(poller, wanted)

    async def read_and_publish(self, poller: MeterPoller, keys: Sequence[str]) -> bool:
        """The read itself; the caller holds ``poller.lock``."""
        started = _time.monotonic()
        timeout = self.config.schedules.read_timeout_s
        try:
            reads = await poller.read(keys, timeout)
        except (MeterError, TimeoutError, OSError, ConnectionError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await poller.reset()
            self._failed(poller, keys, reason, _time.monotonic() - started)
            return False
        except Exception as exc:
            # A driver bug (ValueError in a decoder, ...) is this meter's failure, not the loop's: escaping
            # here would abort the cycle and, after the supervisor's restart, starve the meters behind it.
            log.exception("meter driver raised an unexpected error", extra={"meter": poller.serial})
            await poller.reset()
            reason = f"driver error: {type(exc).__name__}: {exc}"
            self._failed(poller, keys, reason, _time.monotonic() - started)
            return False
        self._succeeded(poller, reads, _time.monotonic() - started)
        return True

    def _failed(self, poller: MeterPoller, keys: Sequence[str], reason: str, seconds: float) -> None:
        poller.failures += 1
        poller.skip_cycles = min(2 ** (poller.failures - 1), MAX_SKIP_CYCLES) - 1
        now = self.clock()
        log.warning("meter read failed", extra={"meter": poller.serial, "error": reason})
        lost = [comms_lost(poller.last[k], reason) for k in keys if k in poller.last]
        if lost:
            self.sink.telemetry(poller.serial, lost, now)
        self.sink.events(self.detector.comms_failed(poller.serial, now, reason))
        self.sink.read_done(poller.serial, False, lost, seconds)

    def _succeeded(self, poller: MeterPoller, reads: dict[str, KeyRead], seconds: float) -> None:
        poller.failures = 0
        poller.skip_cycles = 0
        now = self.clock()
        normalised = normalise_all(reads, poller.profile)
        for key, why in normalised.omitted.items():
            log.info("register omitted", extra={"meter": poller.serial, "key": key, "reason": why})
        checks = self.plausibility.check(poller.serial, normalised.readings)
        for reading in checks.readings:
            if reading.quality is not Quality.COMMS_LOST:
                poller.last[reading.key] = reading
        events = self.detector.comms_ok(poller.serial, now)
        events += self.detector.observe(poller.serial, checks.readings, now, checks.clock_drift_s)
        events += self._decreased_events(poller, checks.decreased, checks.readings, now)
        if checks.readings:
            self.sink.telemetry(poller.serial, checks.readings, now)
        self.sink.events(events)
        self.sink.read_done(poller.serial, True, checks.readings, seconds)

    def _decreased_events(
        self,
        poller: MeterPoller,
        decreased: dict[str, tuple[float, float]],
        readings: Sequence[VmrsReading],
        now: datetime,
    ) -> list[DetectedEvent]:
        events: list[DetectedEvent] = []
        read_keys = {r.key for r in readings}
        for key, (before, after) in decreased.items():
            if key in poller.decreased:
                continue
            entry = [r.to_entry() for r in readings if r.key == key]
            detail = {"obis": key, "previous": before, "value": after}
            events.append(
                DetectedEvent(
                    poller.serial,
                    EventType.REGISTER_DECREASED,
                    Severity.HIGH,
                    EventState.RAISED,
                    now,
                    detail,
                    entry,
                )
            )
        # A key that reads plausibly again re-arms its event.
        poller.decreased = {
            k for k in poller.decreased | set(decreased) if k in decreased or k not in read_keys
        }
        return events
