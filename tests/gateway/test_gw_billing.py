"""Daily billing snapshot at a local wall time (G16: "billing snapshot daily at local midnight").

The expected instants below are written out by hand from the tz database's published transitions, not
computed with the code under test:

* Africa/Nairobi: EAT, UTC+3 all year.
* Africa/Cairo 2024: EET (+2) -> EEST (+3) at local midnight of Fri 26 April (00:00 does not exist that day;
  the clocks read 01:00), and back at local midnight of 1 November (23:00-23:59 on 31 October happen twice).
* Europe/Berlin 2024: CET -> CEST at 01:00 UTC on 31 March (02:00-02:59 local do not exist), back at 01:00 UTC
  on 27 October (02:00-02:59 local happen twice).
* Africa/Casablanca 2024 (Ramadan): +01 -> +00 at 02:00 UTC on 10 March (02:00-02:59 local twice), +00 ->
  +01 at 02:00 UTC on 14 April (02:00-02:59 local do not exist).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gw_fakes import FakeMeter, config_data, make_config, meter_entry

from villageami.gateway import scheduler as scheduler_module
from villageami.gateway.config import ConfigError, GatewayConfig, ReadClass, keys_for, parse_config
from villageami.gateway.events import EventDetector
from villageami.gateway.messages import DetectedEvent
from villageami.gateway.plausibility import PlausibilityChecker, Thresholds
from villageami.gateway.scheduler import MeterPoller, Schedule, Scheduler
from villageami.meters.normalise import VmrsReading

NEVER = 10 * 365 * 86400.0  # interval reads out of the way: only billing matters here


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def config_for(tmp_path: Path, timezone: str | None, billing_at: str) -> GatewayConfig:
    schedules: dict[str, Any] = {
        "instantaneousS": NEVER,
        "statusS": NEVER,
        "clockS": NEVER,
        "billingAt": billing_at,
    }
    if timezone is not None:
        schedules["timezone"] = timezone
    return make_config(tmp_path, [meter_entry("M1")], schedules=schedules)


def billing_fires(config: GatewayConfig, start: datetime, end: datetime) -> list[datetime]:
    """Drive a Schedule the way the read loop does, with a fake clock ticking every minute."""
    schedule = Schedule.from_config(config, start)
    mono, now, fired = 0.0, start, []
    while now <= end:
        due = schedule.due(mono, now)
        if ReadClass.BILLING in due:
            fired.append(now)
        schedule.mark(due, mono, now)
        now += timedelta(minutes=1)
        mono += 60.0
    return fired


CASES = [
    pytest.param(
        None, "00:00:00", utc(2024, 3, 8, 12), utc(2024, 3, 11, 12),
        [utc(2024, 3, 9, 0), utc(2024, 3, 10, 0), utc(2024, 3, 11, 0)],
        id="default-utc",
    ),
    pytest.param(
        "Africa/Nairobi", "00:00:00", utc(2024, 3, 8, 12), utc(2024, 3, 11, 12),
        [utc(2024, 3, 8, 21), utc(2024, 3, 9, 21), utc(2024, 3, 10, 21)],
        id="nairobi-midnight",
    ),
    pytest.param(
        "Africa/Cairo", "00:00:00", utc(2024, 4, 24, 12), utc(2024, 4, 27, 12),
        # 25 Apr 00:00 EET; 26 Apr has no midnight: first valid instant is 01:00 EEST; 27 Apr 00:00 EEST.
        [utc(2024, 4, 24, 22), utc(2024, 4, 25, 22), utc(2024, 4, 26, 21)],
        id="cairo-midnight-spring-gap",
    ),
    pytest.param(
        "Africa/Cairo", "00:00:00", utc(2024, 10, 29, 12), utc(2024, 11, 2, 12),
        # 30 and 31 Oct 00:00 EEST; 1 and 2 Nov 00:00 EET: a 25-hour billing day, one snapshot each.
        [utc(2024, 10, 29, 21), utc(2024, 10, 30, 21), utc(2024, 10, 31, 22), utc(2024, 11, 1, 22)],
        id="cairo-midnight-autumn",
    ),
    pytest.param(
        "Europe/Berlin", "02:30:00", utc(2024, 3, 29, 12), utc(2024, 4, 1, 12),
        # 31 Mar 02:30 does not exist: taken at 03:00 CEST, the instant of the jump.
        [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)],
        id="berlin-spring-gap",
    ),
    pytest.param(
        "Europe/Berlin", "02:30:00", utc(2024, 10, 25, 12), utc(2024, 10, 28, 12),
        # 27 Oct 02:30 happens twice (00:30 and 01:30 UTC): taken once, at the first.
        [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)],
        id="berlin-autumn-repeat",
    ),
    pytest.param(
        "Africa/Casablanca", "02:30:00", utc(2024, 3, 8, 12), utc(2024, 3, 11, 12),
        [utc(2024, 3, 9, 1, 30), utc(2024, 3, 10, 1, 30), utc(2024, 3, 11, 2, 30)],
        id="casablanca-ramadan-start-repeat",
    ),
    pytest.param(
        "Africa/Casablanca", "02:30:00", utc(2024, 4, 12, 12), utc(2024, 4, 15, 12),
        [utc(2024, 4, 13, 2, 30), utc(2024, 4, 14, 2), utc(2024, 4, 15, 1, 30)],
        id="casablanca-ramadan-end-gap",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("timezone", "billing_at", "start", "end", "expected"), CASES)
def test_billing_fires_once_per_local_day_at_the_local_time(
    tmp_path: Path,
    timezone: str | None,
    billing_at: str,
    start: datetime,
    end: datetime,
    expected: list[datetime],
) -> None:
    config = config_for(tmp_path, timezone, billing_at)
    assert billing_fires(config, start, end) == expected


@pytest.mark.parametrize(("timezone", "billing_at", "start", "end", "expected"), CASES)
def test_sleep_for_wakes_exactly_at_the_next_snapshot(
    tmp_path: Path,
    timezone: str | None,
    billing_at: str,
    start: datetime,
    end: datetime,
    expected: list[datetime],
) -> None:
    config = config_for(tmp_path, timezone, billing_at)
    schedule = Schedule.from_config(config, start)
    schedule.mark(schedule.due(0.0, start), 0.0, start)
    now = start
    for instant in expected:
        assert schedule.sleep_for(0.0, now) == (instant - now).total_seconds()
        one_second_early = instant - timedelta(seconds=1)
        assert ReadClass.BILLING not in schedule.due(0.0, one_second_early)
        assert ReadClass.BILLING in schedule.due(0.0, instant)
        schedule.mark({ReadClass.BILLING}, 0.0, instant)
        assert ReadClass.BILLING not in schedule.due(0.0, instant)
        now = instant


def test_a_snapshot_missed_while_down_is_not_taken_late(tmp_path: Path) -> None:
    config = config_for(tmp_path, "Africa/Nairobi", "00:00:00")
    # Started 00:01 EAT: that midnight has passed, the next one is the first snapshot.
    assert billing_fires(config, utc(2024, 3, 8, 21, 1), utc(2024, 3, 9, 22)) == [utc(2024, 3, 9, 21)]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "africa/nairobi", "EAT", "../etc/passwd", ""])
def test_unknown_timezone_is_a_config_error_naming_the_zone(tmp_path: Path, zone: str) -> None:
    data = config_data(tmp_path, [meter_entry("M1")], schedules={"timezone": zone})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "site.yaml", tmp_path, check_urls=False)
    issues = caught.value.issues
    assert [i.path for i in issues] == ["schedules.timezone"]
    assert f"unknown IANA time zone {zone!r}" in issues[0].message
    assert "site.yaml" in str(caught.value)


def test_billing_at_with_an_offset_is_refused(tmp_path: Path) -> None:
    data = config_data(tmp_path, [meter_entry("M1")], schedules={"billingAt": "00:00:00+03:00"})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "site.yaml", tmp_path, check_urls=False)
    assert [i.path for i in caught.value.issues] == ["schedules.billingAt"]
    assert "timezone" in caught.value.issues[0].message


class _AsyncioWithFakeSleep:
    """Stands in for the scheduler module's ``asyncio``: everything real except ``sleep``."""

    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


class _Stop(Exception):
    pass


class _RecordingSink:
    def __init__(self, clock: list[datetime]) -> None:
        self.clock = clock
        self.reads: list[tuple[datetime, set[str]]] = []

    def telemetry(self, serial: str, readings: Sequence[VmrsReading], ts: datetime) -> None:
        self.reads.append((ts, {r.key for r in readings}))

    def events(self, events: Iterable[DetectedEvent]) -> None:
        pass

    def read_done(self, serial: str, ok: bool, readings: Sequence[VmrsReading], seconds: float) -> None:
        pass


def test_read_loop_reads_the_billing_registers_at_local_midnight_across_a_dst_jump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real read loop with a fake wall clock: its sleeps advance the clock by what it asked for."""
    config = config_for(tmp_path, "Africa/Cairo", "00:00:00")
    now = [utc(2024, 4, 24, 12)]
    end = utc(2024, 4, 27, 12)
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)
        if now[0] > end:
            raise _Stop
        await real_sleep(0)

    monkeypatch.setattr(scheduler_module, "asyncio", _AsyncioWithFakeSleep(fake_sleep))
    sink = _RecordingSink(now)
    scheduler = Scheduler(
        config,
        sink,
        plausibility=PlausibilityChecker(Thresholds()),
        detector=EventDetector(),
        clock=lambda: now[0],
    )
    meter = FakeMeter("M1")
    poller = MeterPoller(config.meters[0], meter, None, asyncio.Lock())

    async def scenario() -> None:
        with pytest.raises(_Stop):
            await scheduler.run_loop("bus:bus-a", [poller], concurrent=False)

    asyncio.run(scenario())
    billing_only = set(keys_for(ReadClass.BILLING)) - set(keys_for(ReadClass.INSTANTANEOUS))
    assert billing_only, "the billing class reads registers of its own"
    # Every read answers, so each request in meter.reads made one telemetry message (stamped by the clock).
    assert len(meter.reads) == len(sink.reads)
    asked = [(ts, set(keys)) for (ts, _), keys in zip(sink.reads, meter.reads, strict=True)]
    billing_reads = [ts for ts, keys in asked if billing_only <= keys]
    assert billing_reads == [utc(2024, 4, 24, 22), utc(2024, 4, 25, 22), utc(2024, 4, 26, 21)]
