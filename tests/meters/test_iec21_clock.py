"""IEC 62056-21 meter clock (VMRS 0.0.0) from the time (0.9.1) and date (0.9.2) data sets, the profile form
that maps it, ``villageami read`` against the simulator, and the bus guard on a shared serial port."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, ParamSpec

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.contract.envelope import Quality
from villageami.contract.validation import validate_message
from villageami.meters.bus import BusArbiter
from villageami.meters.driver import MeterError
from villageami.meters.factory import open_driver
from villageami.meters.iec21_driver import Iec21Clock, Iec21Driver
from villageami.meters.iec62056_21 import (
    ETX,
    DataSet,
    Iec21DecodeError,
    combine_readout_clock,
    parse_data_block,
    parse_readout_date,
    parse_readout_time,
)
from villageami.meters.normalise import normalise
from villageami.meters.profile import (
    ProfileError,
    load_profile,
    parse_profile,
    profile_json_schema,
)
from villageami.sim.iec21_server import Iec21Simulator, MeterModel, ModeCServer

CLOCK = "0.0.0"
ENERGY = "1.8.0"
GENERIC = "iec21-generic-mode-c"
P = ParamSpec("P")
PROFILES = Path(__file__).parents[2] / "src" / "villageami" / "meters" / "profiles"


def run_async(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test body in a fresh event loop (parametrized arguments and fixtures pass through)."""

    @functools.wraps(test)
    def runner(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return runner


# --- sans-IO parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13:23:08", time(13, 23, 8)),
        ("132308", time(13, 23, 8)),
        ("13:23", time(13, 23)),
        ("0705", time(7, 5)),
        ("13 : 23 : 08", time(13, 23, 8)),  # padded, as some readouts print it
        ("00:00:00", time(0, 0)),
        ("23:59:59", time(23, 59, 59)),
    ],
)
def test_readout_time_formats(text: str, expected: time) -> None:
    assert parse_readout_time(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17-11-03", date(2017, 11, 3)),
        ("171103", date(2017, 11, 3)),
        ("2017-11-03", date(2017, 11, 3)),
        ("20171103", date(2017, 11, 3)),
        ("17 - 11 - 03", date(2017, 11, 3)),
        ("24-02-29", date(2024, 2, 29)),
    ],
)
def test_readout_date_formats(text: str, expected: date) -> None:
    assert parse_readout_date(text) == expected


@pytest.mark.parametrize(
    "text", ["", "132", "13:2308", "1323:08", "25:00:00", "12:60:00", "12:00:60", "noon", "13.23.08"]
)
def test_bad_time_is_a_decode_error_naming_the_input(text: str) -> None:
    with pytest.raises(Iec21DecodeError, match=f"time {text!r}"):
        parse_readout_time(text)


@pytest.mark.parametrize("text", ["", "17-1103", "17/11-03", "171332", "23-02-29", "1711031", "yy-mm-dd"])
def test_bad_date_is_a_decode_error_naming_the_input(text: str) -> None:
    with pytest.raises(Iec21DecodeError, match=f"date {text!r}"):
        parse_readout_date(text)


def test_combine_with_and_without_offset() -> None:
    assert combine_readout_clock("13:23:08", "17-11-03") == datetime(2017, 11, 3, 13, 23, 8)
    with_offset = combine_readout_clock("132308", "171103", timedelta(hours=3))
    assert with_offset == datetime(2017, 11, 3, 10, 23, 8, tzinfo=UTC)
    assert with_offset.utcoffset() == timedelta(hours=3)
    west = combine_readout_clock("0130", "260101", timedelta(hours=-1))
    assert west == datetime(2026, 1, 1, 2, 30, tzinfo=UTC)


# --- driver: readouts with the clock split over two data sets ----------------------------------------------


class ReadoutModel(MeterModel):
    """A meter whose readout is exactly the given data lines."""

    def __init__(self, lines: str) -> None:
        super().__init__()
        block = parse_data_block(lines + "\r\n!\r\n")
        assert block.complete and not block.garbage
        self.lines = list(block.data_sets)

    def data_sets(self) -> list[DataSet]:
        return list(self.lines)


class MeterLine:
    """An in-memory line to one simulated meter (no UART: every rate reads)."""

    def __init__(self, meter: ModeCServer) -> None:
        self.meter = meter
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def open(self) -> None:
        return None

    async def write(self, data: bytes) -> None:
        for sent in self.meter.receive_data(data):
            self.inbox.put_nowait(sent.data)

    async def read_some(self, timeout: float) -> bytes:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def set_baud_rate(self, baud_rate: int) -> None:
        return None

    async def close(self) -> None:
        return None


def clock_driver(lines: str, clock: Iec21Clock | None = None) -> Iec21Driver:
    meter = ModeCServer(ReadoutModel(lines), baud_char="0")
    mapping: dict[str, str | Iec21Clock] = {ENERGY: "1.8.0", CLOCK: clock or Iec21Clock("0.9.1", "0.9.2")}
    return Iec21Driver(MeterLine(meter), mapping, reply_timeout=1.0, turnaround_delay=0)


# Readouts as mode C meters print them (F.F error register, meter number, clock, energy): the separated form
# (hh:mm:ss, yy-mm-dd) seen on Landis+Gyr ZMD-class meters and the compact form (hhmmss, yymmdd).
SEPARATED = "F.F(00000000)\r\n0.0.0(95316176)\r\n0.9.1(13:23:08)\r\n0.9.2(17-11-03)\r\n1.8.0(000101.96*kWh)"
COMPACT = "F.F(00)\r\nC.1.0(18438636)\r\n0.9.1(132308)\r\n0.9.2(171103)\r\n1.8.0(000219.252*kWh)"
PREFIXED = "0-0:0.9.1(132308)\r\n0-0:0.9.2(171103)\r\n1-0:1.8.0(000219.252*kWh)"


@pytest.mark.parametrize("lines", [SEPARATED, COMPACT, PREFIXED], ids=["separated", "compact", "prefixed"])
@run_async
async def test_clock_without_offset_is_naive_and_normalises_suspect(lines: str) -> None:
    reads = await clock_driver(lines).read([CLOCK, ENERGY])
    clock = reads[CLOCK]
    assert clock.ok and clock.value == "2017-11-03T13:23:08"
    assert clock.source == "iec21:0.9.1+0.9.2"
    assert "0.9.1(" in str(clock.raw) and "0.9.2(" in str(clock.raw)
    entry = normalise(clock)
    assert entry.value == "2017-11-03T13:23:08Z" and entry.quality is Quality.SUSPECT
    assert entry.reason is not None and "no UTC offset" in entry.reason
    assert reads[ENERGY].ok


@run_async
async def test_clock_with_profile_offset_normalises_good() -> None:
    driver = clock_driver(SEPARATED, Iec21Clock("0.9.1", "0.9.2", timedelta(hours=3)))
    clock = (await driver.read([CLOCK]))[CLOCK]
    assert clock.value == "2017-11-03T13:23:08+03:00"
    entry = normalise(clock)
    assert entry.value == "2017-11-03T13:23:08+03:00" and entry.quality is Quality.GOOD


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ("0.9.1(25:61:00)\r\n0.9.2(17-11-03)", "time '25:61:00'"),
        ("0.9.1(13:23:08)\r\n0.9.2(17-13-03)", "date '17-13-03'"),
        ("0.9.1(13:23:08)\r\n0.9.2()", "date ''"),
        ("0.9.1(13:23:08)", "'0.9.2' not in the meter's readout"),
        ("1.7.0(00.450*kW)", "'0.9.1' and '0.9.2' not in the meter's readout"),
    ],
    ids=["bad-time", "bad-month", "empty-date", "no-date", "no-clock"],
)
@run_async
async def test_malformed_clock_is_a_per_key_error_naming_the_data_sets(lines: str, problem: str) -> None:
    reads = await clock_driver(lines + "\r\n1.8.0(000101.96*kWh)").read([CLOCK, ENERGY])
    clock = reads[CLOCK]
    assert clock.value is None and clock.error is not None
    assert "'0.9.1' (time) and '0.9.2' (date)" in clock.error and problem in clock.error
    assert reads[ENERGY].ok and reads[ENERGY].value == 101.96  # the other keys are unaffected
    with pytest.raises(ValueError, match=r"0\.0\.0: clock data sets"):
        normalise(clock)


def test_clock_mapping_with_a_bad_address_is_rejected() -> None:
    with pytest.raises(MeterError, match=r"mapping for key '0\.0\.0'"):
        Iec21Driver(MeterLine(ModeCServer(MeterModel())), {CLOCK: Iec21Clock("0.9.1", "1-x:0.9.2")})


# --- profile form ------------------------------------------------------------------------------------------


def generic_document() -> dict[str, Any]:
    document = yaml.safe_load((PROFILES / f"{GENERIC}.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def with_clock_entry(iec21: dict[str, Any], key: str = CLOCK) -> dict[str, Any]:
    document = generic_document()
    document["registers"][key] = {"iec21": iec21, "provenance": document["registers"][CLOCK]["provenance"]}
    return document


def test_generic_profile_maps_the_clock_to_time_and_date() -> None:
    address = load_profile(GENERIC).registers[CLOCK].iec21
    assert address is not None and address.is_clock
    assert (address.time, address.date, address.utc_offset_delta) == ("0.9.1", "0.9.2", None)


@pytest.mark.parametrize(
    ("offset", "delta"),
    [
        ("+03:00", timedelta(hours=3)),
        ("-05:30", timedelta(hours=-5, minutes=-30)),
        ("+14:00", timedelta(hours=14)),
    ],
)
def test_profile_utc_offset(offset: str, delta: timedelta) -> None:
    document = with_clock_entry({"time": "0.9.1", "date": "0.9.2", "utc_offset": offset})
    address = parse_profile(document, "test").registers[CLOCK].iec21
    assert address is not None and address.utc_offset_delta == delta
    jsonschema.validate(document, profile_json_schema())


@pytest.mark.parametrize(
    ("iec21", "key", "message"),
    [
        ({"time": "0.9.1"}, CLOCK, "give data_set, or time and date"),
        ({"date": "0.9.2", "utc_offset": "+03:00"}, CLOCK, "give data_set, or time and date"),
        ({"data_set": "0.9.1", "date": "0.9.2"}, CLOCK, "not both (got date)"),
        ({"time": "0.9.1", "date": "0.9.2", "unit": "s"}, CLOCK, "unit does not apply"),
        ({"time": "0.9.1", "date": "0.9.2", "utc_offset": "+3"}, CLOCK, "pattern"),
        ({"time": "0.9.1", "date": "0.9.2", "utc_offset": "+03:60"}, CLOCK, "pattern"),
        ({"time": "0.9.1", "date": "0.9.2", "utc_offset": "+15:00"}, CLOCK, "outside -14:00..+14:00"),
        ({"time": "0.9.1", "date": "0.9.2"}, "1.8.0", "time + date make a clock"),
    ],
)
def test_profile_rejects_bad_clock_entries(iec21: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(with_clock_entry(iec21, key), "test")
    issues = [str(issue) for issue in caught.value.issues]
    assert any(message in issue and key in issue for issue in issues), issues


def test_schema_rejects_an_offset_without_pattern() -> None:
    document = with_clock_entry({"time": "0.9.1", "date": "0.9.2", "utc_offset": "UTC+3"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, profile_json_schema())


# --- end to end: `villageami read` against the simulator ---------------------------------------------------

SIM_NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
def simulator() -> Iterator[Iec21Simulator]:
    """The IEC simulator on its own loop in a thread (the CLI runs its own asyncio.run)."""
    loop = asyncio.new_event_loop()
    sim = Iec21Simulator(MeterModel(serial="00412345", wall_clock=lambda: SIM_NOW))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(10)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def read_envelope(url: str, profile: str) -> dict[str, Any]:
    result = CliRunner().invoke(build_app(), ["read", url, "--profile", profile])
    assert result.exit_code == 0, result.stderr
    envelope: dict[str, Any] = json.loads(result.stdout)
    assert [str(p) for p in validate_message(envelope, "telemetry") if p.severity == "error"] == []
    return envelope


def test_read_generic_profile_publishes_the_clock(simulator: Iec21Simulator) -> None:
    envelope = read_envelope(f"iec21+tcp://127.0.0.1:{simulator.port}", GENERIC)
    by_key = {r["obis"]: r for r in envelope["registers"]}
    clock = by_key[CLOCK]
    # The simulator prints 05:06:07 / 26-03-04; the generic profile knows no offset.
    assert clock["value"] == "2026-03-04T05:06:07Z" and clock["quality"] == "suspect"
    assert "no UTC offset" in clock["reason"]
    assert envelope["meterSerial"] == "00412345"


def test_read_with_a_site_profile_offset_is_good(simulator: Iec21Simulator, tmp_path: Path) -> None:
    document = generic_document()
    document["registers"][CLOCK]["iec21"]["utc_offset"] = "+03:00"
    site = tmp_path / "site-iec21.yaml"
    site.write_text(yaml.safe_dump(document), encoding="utf-8")
    envelope = read_envelope(f"iec21+tcp://127.0.0.1:{simulator.port}", str(site))
    clock = {r["obis"]: r for r in envelope["registers"]}[CLOCK]
    assert clock["value"] == "2026-03-04T05:06:07+03:00" and clock["quality"] == "good"


# --- bus guard: meters sharing one serial / optical port ---------------------------------------------------


class SharedPort:
    """One serial port with several meters behind it; counts mode C sessions on the wire at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.sessions = 0


class PortHandle(MeterLine):
    """One driver's handle on the shared port. A session runs from the sign-on request to the readout."""

    def __init__(self, port: SharedPort, meter: ModeCServer) -> None:
        super().__init__(meter)
        self.port = port

    async def write(self, data: bytes) -> None:
        if data.startswith(b"/?"):
            self.port.in_flight += 1
            self.port.sessions += 1
            self.port.max_in_flight = max(self.port.max_in_flight, self.port.in_flight)
        await asyncio.sleep(0)  # the line takes time: lets another session start if nothing prevents it
        await super().write(data)

    async def read_some(self, timeout: float) -> bytes:
        await asyncio.sleep(0)
        data = await super().read_some(timeout)
        if bytes([ETX]) in data:
            self.port.in_flight -= 1
        return data


async def read_two_meters_on_one_port(arbiter: BusArbiter | None) -> SharedPort:
    port = SharedPort()
    drivers = []
    for serial in ("11111111", "22222222"):
        driver = open_driver("iec21:///dev/ttyFAKE0", GENERIC, arbiter=arbiter)
        assert isinstance(driver, Iec21Driver)
        driver.transport = PortHandle(port, ModeCServer(MeterModel(serial=serial), baud_char="0"))
        driver.turnaround_delay = 0
        drivers.append(driver)
    results = await asyncio.gather(*(d.read([CLOCK, "0.0.96.1.1.255"]) for d in drivers))
    assert [r["0.0.96.1.1.255"].value for r in results] == ["11111111", "22222222"]
    assert all(r[CLOCK].ok for r in results)
    return port


@run_async
async def test_serial_iec_meters_sharing_a_port_are_never_read_at_once() -> None:
    arbiter = BusArbiter(inter_frame_gap=0)
    port = await read_two_meters_on_one_port(arbiter)
    assert port.sessions == 2 and port.max_in_flight == 1
    assert arbiter.max_in_flight["/dev/ttyFAKE0"] == 1 and arbiter.transactions["/dev/ttyFAKE0"] == 2


@run_async
async def test_without_the_arbiter_the_sessions_overlap() -> None:
    # Control for the test above: the fake port does see overlapping sessions when nothing serialises them.
    port = await read_two_meters_on_one_port(None)
    assert port.sessions == 2 and port.max_in_flight == 2


@run_async
async def test_tcp_iec_meters_take_the_tcp_lane(simulator: Iec21Simulator) -> None:
    arbiter = BusArbiter()
    driver = open_driver(f"iec21+tcp://127.0.0.1:{simulator.port}", GENERIC, arbiter=arbiter)
    assert isinstance(driver, Iec21Driver)
    driver.turnaround_delay = 0
    try:
        reads = await driver.read([CLOCK])
    finally:
        await driver.close()
    assert reads[CLOCK].value == "2026-03-04T05:06:07"
    assert arbiter.transactions == {"tcp": 1}
