"""IEC 62056-21 codec: protocol messages from the corpus, data-set parsing, round trips and fuzzing."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from villageami.errors import VillageAmiError
from villageami.meters.iec62056_21 import (
    BREAK,
    AckOptionSelect,
    CommandMessage,
    DataMessage,
    DataSet,
    DataValue,
    IdentificationMessage,
    Iec21DecodeError,
    ReadoutAddress,
    RequestMessage,
    bcc,
    crc16_arc,
    find_data_set,
    format_data_block,
    parse_data_block,
    parse_data_line,
    parse_telegram,
    parse_timestamp,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus" / "iec62056-21"
MESSAGES = [json.loads(line) for line in (CORPUS / "messages.jsonl").read_text().splitlines() if line.strip()]


def _expected_bcc(record: dict[str, Any]) -> int:
    return int(record["expect"]["bcc"].split()[0], 16)


def _check_data_set(data_set: DataSet, expected: dict[str, Any]) -> None:
    assert data_set.address == (expected["address"] or "")
    assert data_set.value == expected["value"]
    if "unit" in expected:
        assert data_set.unit == expected["unit"]


@pytest.mark.parametrize("record", MESSAGES, ids=lambda r: f"{r['test']}")
def test_corpus_message(record: dict[str, Any]) -> None:
    raw = bytes.fromhex(record["hex"])
    expect = record["expect"]
    kind = record["kind"]
    if "reject" in expect:
        with pytest.raises(Iec21DecodeError, match="BCC"):
            DataMessage.decode(raw)
        return
    if kind.startswith(("readout data", "answer data")):
        message = DataMessage.decode(raw)
        assert raw[-1] == _expected_bcc(record) == bcc(raw[1:-1])
        assert len(message.data_sets) == len(expect["data_sets"])
        for data_set, expected in zip(message.data_sets, expect["data_sets"], strict=True):
            _check_data_set(data_set, expected)
        assert message.readout == kind.startswith("readout")
        # Re-encoding gives the same bytes for the one-data-set-per-line forms we emit.
        if kind.startswith("answer") and len(message.data_sets) == 1:
            assert message.encode() == raw
    elif kind.startswith("command"):
        command = CommandMessage.decode(raw)
        assert command.command == expect["command"]
        assert command.command_type == expect["command_type"]
        assert raw[-1] == _expected_bcc(record)
        if expect["data_set"] is None:
            assert command.data_set is None
        else:
            assert command.data_set is not None
            _check_data_set(command.data_set, expect["data_set"])
        assert command.encode() == raw
    elif kind == "request message":
        request = RequestMessage.decode(raw)
        assert request.device_address == (expect["device_address"] or "")
        assert request.encode() == raw
    elif kind == "ack/option select":
        option = AckOptionSelect.decode(raw)
        assert (option.protocol_control, option.baud_char, option.mode_char) == (
            expect["protocol_control"],
            expect["baud_char"],
            expect["mode_char"],
        )
        assert option.encode() == raw
    elif kind == "identification message":
        ident = IdentificationMessage.decode(raw)
        assert ident.manufacturer == expect["manufacturer"]
        assert ident.baud_char == expect["switchover_baudrate_char"]
        # Our documented rule: "\2" is the enhanced-identification escape and is stripped.
        assert expect["identification"] == "2EK280"
        assert ident.identification == "EK280"
        assert ident.enhanced_capabilities == ("2",)
        assert ident.encode() == raw
    else:  # pragma: no cover - a new kind in the corpus must be handled here
        pytest.fail(f"unhandled corpus message kind {kind!r}")


def test_all_message_kinds_covered() -> None:
    assert len(MESSAGES) == 12


def test_break_message_bytes() -> None:
    # SOH B 0 ETX BCC, BCC = 'B' ^ '0' ^ ETX computed by hand: 0x42 ^ 0x30 ^ 0x03 = 0x71.
    assert BREAK.encode() == b"\x01B0\x03\x71"


def test_programming_mode_option_select() -> None:
    assert AckOptionSelect("5", "1").encode() == b"\x06051\r\n"
    assert AckOptionSelect.decode(b"\x06051\r\n").mode_char == "1"


def test_identification_without_escape_and_baud_rate() -> None:
    ident = IdentificationMessage.decode(b"/LGZ52ZMD120APt.G03\r\n")
    assert (ident.manufacturer, ident.baud_char, ident.identification) == ("LGZ", "5", "2ZMD120APt.G03")
    assert ident.baud_rate == 9600
    assert not ident.short_reaction_time
    assert IdentificationMessage.decode(b"/ISk5MT382\r\n").short_reaction_time


@pytest.mark.parametrize(
    "raw",
    [b"", b"/", b"/AB\r\n", b"/1234abc\r\n", b"/ABC5xyz", b"ABC5xyz\r\n", b"/AB5\\\r\n"],
)
def test_identification_rejects(raw: bytes) -> None:
    with pytest.raises(Iec21DecodeError):
        IdentificationMessage.decode(raw)


@pytest.mark.parametrize(
    ("line", "address", "values"),
    [
        ("1.8.0(001234.5*kWh)", "1.8.0", [("001234.5", "kWh")]),
        ("0.9.1(123456)", "0.9.1", [("123456", None)]),
        ("1-0:1.8.0(001234.5*kWh)", "1-0:1.8.0", [("001234.5", "kWh")]),
        ("1-0:1.8.0*255(000001.2963)", "1-0:1.8.0*255", [("000001.2963", None)]),
        ("1.8.0(013925.5*)", "1.8.0", [("013925.5", None)]),
        ("0-0:96.13.0()", "0-0:96.13.0", [("", None)]),
        (
            "1-0:1.6.0(200509134558S)(02.589*kW)",
            "1-0:1.6.0",
            [("200509134558S", None), ("02.589", "kW")],
        ),
        ("0.0(        18438636)", "0.0", [("        18438636", None)]),
    ],
)
def test_parse_data_line(line: str, address: str, values: list[tuple[str, str | None]]) -> None:
    parsed = parse_data_line(line + "\r\n")
    assert parsed.garbage == ""
    assert not parsed.end_marker
    assert len(parsed.data_sets) == 1
    assert parsed.data_sets[0].address == address
    assert [(v.value, v.unit) for v in parsed.data_sets[0].values] == values


def test_two_data_sets_on_one_line_and_garbage() -> None:
    parsed = parse_data_line("3:14(314*kWh)4:15(415*kWh)")
    assert [ds.address for ds in parsed.data_sets] == ["3:14", "4:15"]
    junk = parse_data_line("1.8.0(1*kWh)Y\x02\x01!")
    assert junk.garbage == "Y\x02\x01!" and junk.end_marker
    assert parse_data_line("hello world").data_sets == ()
    assert parse_data_line("hello world").garbage == "hello world"


def test_continuation_line_extends_previous_data_set() -> None:
    block = parse_data_block("0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n(00001.001)\r\n!\r\n")
    assert block.complete
    (gas,) = block.data_sets
    assert [v.value for v in gas.values][-2:] == ["m3", "00001.001"]


def test_readout_address_matching() -> None:
    assert ReadoutAddress.parse("1-0:1.8.0*255").matches(ReadoutAddress.parse("1.8.0"))
    assert ReadoutAddress.parse("1-0:1.8.0.255").matches(ReadoutAddress.parse("1-0:1.8.0"))
    assert ReadoutAddress.parse("32.7").matches(ReadoutAddress.parse("32.7.0"))
    assert not ReadoutAddress.parse("0-1:96.1.0").matches(ReadoutAddress.parse("0-0:96.1.0"))
    assert not ReadoutAddress.parse("1.8.1").matches(ReadoutAddress.parse("1.8.0"))
    assert ReadoutAddress.parse("C.1.0").matches(ReadoutAddress.parse("C.1.0"))
    with pytest.raises(Iec21DecodeError):
        ReadoutAddress.parse("")
    data_sets = parse_data_block("F.F(00)\r\n1-0:1.8.0(5*kWh)\r\n!\r\n").data_sets
    found = find_data_set(data_sets, "1.8.0")
    assert found is not None and found.value == "5"
    assert find_data_set(data_sets, "2.8.0") is None


def test_crc16_arc_check_value() -> None:
    # The standard check value of CRC-16/ARC over "123456789" is 0xBB3D.
    assert crc16_arc(b"123456789") == 0xBB3D


def test_timestamps() -> None:
    assert parse_timestamp("161113205757W") == datetime(2016, 11, 13, 19, 57, 57, tzinfo=UTC)
    summer = parse_timestamp("200512135409S")
    assert summer.utcoffset() == timedelta(hours=2)
    assert parse_timestamp("200512135409") == datetime(2020, 5, 12, 13, 54, 9)
    for bad in ("632525252525W", "2005121354", "abc"):
        with pytest.raises(Iec21DecodeError):
            parse_timestamp(bad)
    assert summer.tzinfo == timezone(timedelta(hours=2))


def test_as_decimal() -> None:
    assert DataValue(" 20000").as_decimal() == Decimal(20000)
    with pytest.raises(Iec21DecodeError, match="not a number"):
        DataValue("4B38").as_decimal()


def test_decode_error_is_villageami_error() -> None:
    assert issubclass(Iec21DecodeError, VillageAmiError)
    with pytest.raises(Iec21DecodeError, match="BCC") as info:
        DataMessage.decode(b"\x021.8.0(1)\r\n!\r\n\x03\x00")
    assert "correct is" in str(info.value)


# --- property-based ----------------------------------------------------------------------------------------

_SAFE = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="()*/!")
_addresses = st.one_of(
    st.just(""),
    st.builds(
        lambda a, b, c, d, e: f"{a}-{b}:{c}.{d}.{e}",
        *(st.integers(0, 255) for _ in range(5)),
    ),
    st.builds(lambda c, d, e: f"{c}.{d}.{e}", st.integers(0, 99), st.integers(0, 99), st.integers(0, 9)),
    st.sampled_from(["C.1.0", "F.F", "0.9.1", "C.1"]),
)
_values = st.builds(
    DataValue,
    st.text(_SAFE, max_size=32),
    st.one_of(st.none(), st.text(_SAFE, min_size=1, max_size=16)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_addresses, st.lists(_values, min_size=1, max_size=4)), min_size=1, max_size=8))
def test_data_set_round_trip(raw_sets: list[tuple[str, list[DataValue]]]) -> None:
    # An empty address only survives round trip as the first line (later ones read as continuation).
    data_sets = [DataSet(address.strip() or "X", tuple(values)) for address, values in raw_sets]
    message = DataMessage(tuple(data_sets))
    decoded = DataMessage.decode(message.encode())
    assert list(decoded.data_sets) == data_sets
    assert parse_data_block(format_data_block(data_sets)).data_sets == tuple(data_sets)


@settings(max_examples=100, deadline=None)
@given(st.text(_SAFE.filter(lambda c: c not in "?\r\n"), max_size=20))
def test_request_round_trip(address: str) -> None:
    assert RequestMessage.decode(RequestMessage(address).encode()).device_address == address


# --- fuzz: parsers raise only Iec21DecodeError -----------------------------------------------------------

_SEED = (CORPUS / "itron-ace3000-modec.txt").read_bytes()
_SEED_D = (CORPUS / "dsmr-v4.2-kaifa.txt").read_bytes()


def _mutate(seed: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(seed)
    for position, value in edits:
        if not data:
            break
        index = position % len(data)
        if value < 256:
            data[index] = value
        elif value < 384:
            del data[index]
        else:
            data.insert(index, value & 0xFF)
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([_SEED, _SEED_D]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 511)), max_size=12),
)
def test_fuzz_mutated_telegrams(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = _mutate(seed, edits)
    for parse in (
        lambda d: parse_telegram(d),
        lambda d: parse_telegram(d, verify_checksum=False),
        DataMessage.decode,
        CommandMessage.decode,
        IdentificationMessage.decode,
        AckOptionSelect.decode,
        RequestMessage.decode,
    ):
        with contextlib.suppress(Iec21DecodeError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    for parse in (parse_telegram, DataMessage.decode, CommandMessage.decode, IdentificationMessage.decode):
        with contextlib.suppress(Iec21DecodeError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6), st.booleans())
def test_fuzz_client_state_machine(chunks: list[bytes], identified: bool) -> None:
    from villageami.meters.iec62056_21 import ModeCClient

    client = ModeCClient()
    client.start()
    if identified:
        client.receive_data(b"/ABC5x\r\n")
    for chunk in chunks:
        try:
            client.receive_data(chunk)
        except Iec21DecodeError:
            break
