"""HDLC (IEC 62056-46): frame codec, corpus vectors, stream decoder, state machines over a lossy peer."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from villageami.dlms.errors import DecodeError, LinkError, LinkTimeout
from villageami.dlms.hdlc import (
    ApduReceived,
    FrameKind,
    HdlcAddress,
    HdlcClientConnection,
    HdlcFrame,
    HdlcParameters,
    HdlcServerConnection,
    HdlcStreamDecoder,
    LinkConnected,
    LinkDisconnected,
    LinkState,
    client_address,
    control_octet,
    crc16_x25,
    decode_frame,
    server_address,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
VECTORS = [
    v
    for v in map(json.loads, (CORPUS / "dlms" / "dlms-frames.jsonl").read_text().splitlines())
    if v["kind"] == "hdlc"
]
BY_PREFIX = {v["hex"][:12]: v for v in VECTORS}


def _vector(prefix: str) -> dict:
    return BY_PREFIX[prefix]


# ------------------------------------------------------------------------------------------ CRC/codec


def test_crc16_x25_check_value() -> None:
    # The catalogue check value of CRC-16/X-25 over "123456789".
    assert crc16_x25(b"123456789") == 0x906E


def test_corpus_has_hdlc_vectors() -> None:
    assert len(VECTORS) == 9


def test_corpus_snrm() -> None:
    v = _vector("7ea008022321")
    frame = decode_frame(bytes.fromhex(v["hex"]))
    assert frame.kind is FrameKind.SNRM and frame.poll_final
    assert frame.destination == HdlcAddress(1, 17, 2)
    assert frame.destination.encode().hex() == v["expect"]["destination"]["bytes"]
    assert frame.source == client_address(16)
    assert frame.information == b""
    assert frame.encode().hex() == v["hex"]


def test_corpus_ua_parameters() -> None:
    v = _vector("7ea01f210223")
    frame = decode_frame(bytes.fromhex(v["hex"]))
    assert frame.kind is FrameKind.UA and frame.control == 0x73
    assert frame.destination == client_address(16)
    assert frame.source == server_address(1, 17)
    params = HdlcParameters.decode(frame.information)
    want = v["expect"]["information"]["parameters"]
    assert params == HdlcParameters(
        want["max_info_field_length_transmit"],
        want["max_info_field_length_receive"],
        want["window_size_transmit"],
        want["window_size_receive"],
    )
    assert params.encode() == frame.information
    assert frame.encode().hex() == v["hex"]


@pytest.mark.parametrize(
    ("prefix", "llc", "send_seq", "recv_seq"),
    [("7ea02c022321", "e6e600", 0, 0), ("7ea038210223", "e6e700", 0, 1)],
)
def test_corpus_information_frames(prefix: str, llc: str, send_seq: int, recv_seq: int) -> None:
    v = _vector(prefix)
    frame = decode_frame(bytes.fromhex(v["hex"]))
    assert frame.kind is FrameKind.I and frame.poll_final
    assert (frame.send_seq, frame.recv_seq) == (send_seq, recv_seq)
    assert frame.information[:3].hex() == llc
    if "payload_hex" in v["expect"]:
        assert frame.information[3:].hex() == v["expect"]["payload_hex"]
    assert frame.encode().hex() == v["hex"]


def test_corpus_segmented_length_7e() -> None:
    v = _vector("7ea87e210396")
    wire = bytes.fromhex(v["hex"])
    frame = decode_frame(wire)
    assert frame.segmented
    assert (frame.send_seq, frame.recv_seq, frame.poll_final) == (3, 4, True)
    # source_asserts: (logical, physical, length)
    assert frame.destination == HdlcAddress(16, None, 1)
    assert frame.source == HdlcAddress(1, None, 1)
    assert frame.encode() == wire
    # The stream decoder must not take the length octet 0x7E for a closing/opening flag.
    assert HdlcStreamDecoder().feed(wire) == [frame]


def test_corpus_ui_push_with_four_octet_source() -> None:
    v = _vector("7ea243410883")
    frame = decode_frame(bytes.fromhex(v["hex"]))
    assert frame.kind is FrameKind.UI
    assert frame.destination == HdlcAddress(32, None, 1)
    assert frame.source == HdlcAddress(4, 65, 2)
    assert frame.information[:3].hex() == v["expect"]["llc"]
    assert len(frame.encode()) - 2 == 0x243


def test_corpus_flag_inside_information() -> None:
    v = _vector("7ea027010201")
    frames = HdlcStreamDecoder().feed(bytes.fromhex(v["hex"]))
    assert [f.information.hex() for f in frames] == [v["expect"]["payload_hex"]]


def test_corpus_empty_information() -> None:
    v = _vector("7ea008010201")
    frame = decode_frame(bytes.fromhex(v["hex"]))
    assert frame.information == b"" and frame.control == int(v["expect"]["control"], 16)


def test_corpus_leading_garbage() -> None:
    v = _vector("0600001fc7ce")
    decoder = HdlcStreamDecoder()
    frames = decoder.feed(bytes.fromhex(v["hex"]))
    assert len(frames) == v["expect"]["frames"]
    assert frames[0].information.hex() == v["expect"]["payload_hex"]
    assert decoder.skipped_octets == len(bytes.fromhex(v["expect"]["leading_garbage_hex"]))


def test_decode_frame_rejects() -> None:
    good = bytearray(bytes.fromhex(_vector("7ea02c022321")["hex"]))
    bad_fcs = bytearray(good)
    bad_fcs[-3] ^= 1
    with pytest.raises(DecodeError, match="FCS"):
        decode_frame(bytes(bad_fcs))
    with pytest.raises(DecodeError, match="length field"):
        decode_frame(bytes(good[:-4]) + b"\x7e")
    with pytest.raises(DecodeError, match="format type"):
        decode_frame(bytes.fromhex("7eb00802232193bd647e"))


addresses = st.one_of(
    st.builds(HdlcAddress, st.integers(0, 0x7F), st.none(), st.just(1)),
    st.builds(HdlcAddress, st.integers(0, 0x7F), st.integers(0, 0x7F), st.just(2)),
    st.builds(HdlcAddress, st.integers(0, 0x3FFF), st.integers(0, 0x3FFF), st.just(4)),
)
controls = st.sampled_from([*range(0, 256, 2), 0x01, 0x11, 0x05, 0x93, 0x53, 0x73, 0x1F, 0x13, 0x03])


@given(addresses, addresses, controls, st.binary(max_size=200), st.booleans())
def test_frame_round_trip(dest: HdlcAddress, src: HdlcAddress, control: int, info: bytes, seg: bool) -> None:
    frame = HdlcFrame(dest, src, control, info, seg)
    wire = frame.encode()
    assert decode_frame(wire) == frame
    assert HdlcStreamDecoder().feed(b"\x00\x7e\xa0" + wire + wire[1:]) == [frame, frame]


def test_control_octets() -> None:
    assert control_octet(FrameKind.SNRM) == 0x93
    assert control_octet(FrameKind.I, send_seq=3, recv_seq=4) == 0x96
    assert control_octet(FrameKind.RR, recv_seq=2) == 0x51
    assert control_octet(FrameKind.UA) == 0x73


def test_server_address_sizes() -> None:
    assert server_address(1).encode() == b"\x03"
    assert server_address(1, 17).encode().hex() == "0223"
    four = server_address(1, 0x1234)
    assert four.length == 4
    assert decode_frame(HdlcFrame(four, client_address(16), 0x93).encode()).destination == four


# --------------------------------------------------------------------------------- Stream decoder


def test_stream_decoder_echo_and_junk_between_frames() -> None:
    a = HdlcFrame(server_address(1), client_address(16), 0x93).encode()
    b = HdlcFrame(client_address(16), server_address(1), 0x73, HdlcParameters().encode()).encode()
    junk = b"\x7e\xa0\xff\x00\x7e\x7e\x12" + a[:5]  # false flags, a truncated frame
    decoder = HdlcStreamDecoder()
    got = []
    for octet in junk + a + b[1:]:  # b shares a's closing flag
        got += decoder.feed(bytes([octet]))
    assert [f.kind for f in got] == [FrameKind.SNRM, FrameKind.UA]


def test_false_flag_with_large_length_does_not_stall() -> None:
    # 7E A7 FF announces a 2047-octet frame; its HCS fails, so the real frame behind it is found at once.
    real = HdlcFrame(client_address(16), server_address(1), 0x10, b"\xe6\xe7\x00\x01").encode()
    junk = bytes.fromhex("7ea7ff0203100000")
    assert HdlcStreamDecoder().feed(junk + real) == [decode_frame(real)]


@settings(max_examples=400)
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_fuzz_stream_decoder_random(chunks: list[bytes]) -> None:
    decoder = HdlcStreamDecoder()
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            assert decode_frame(frame.encode()) == frame


@settings(max_examples=400)
@given(st.binary(min_size=1, max_size=80), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255))))
def test_fuzz_mutated_frames(info: bytes, mutations: list[tuple[int, int]]) -> None:
    wire = bytearray(HdlcFrame(server_address(1, 17), client_address(16), 0x10, info).encode())
    for position, value in mutations:
        wire[position % len(wire)] = value
    HdlcStreamDecoder().feed(bytes(wire))
    with contextlib.suppress(DecodeError):
        decode_frame(bytes(wire))
    with contextlib.suppress(DecodeError):
        HdlcParameters.decode(bytes(wire[1:]))


# ------------------------------------------------------------------------------ State machines


class LossyWire:
    """Runs a client against an in-memory server, dropping chosen frames in either direction."""

    def __init__(self, client: HdlcClientConnection, server: HdlcServerConnection, drop: set[int]) -> None:
        self.client, self.server = client, server
        self.drop = drop  # indexes (in order of transmission, both directions) of frames to lose
        self.sent = 0
        self.log: list[str] = []

    def _deliver(self, data: bytes, to_server: bool) -> list[object]:
        events: list[object] = []
        for frame in HdlcStreamDecoder().feed(data):
            index = self.sent
            self.sent += 1
            lost = index in self.drop
            self.log.append(("lost " if lost else "") + ("C>S " if to_server else "S>C ") + frame.describe())
            if lost:
                continue
            if to_server:
                events += self.server.receive_data(frame.encode())
            else:
                events += self.client.receive_data(frame.encode())
        return events

    def run(self, first: bytes, respond: bool = True) -> list[object]:
        """Send ``first`` from the client, pump both ways until the client has an answer event."""
        outgoing = first
        for _ in range(400):
            for event in self._deliver(outgoing, True):
                if isinstance(event, ApduReceived) and respond:
                    self.server.send_apdu(event.source, b"\xc4" + event.apdu[::-1] * 3)
            client_events = self._deliver(self.server.data_to_send(), False)
            if client_events:
                return client_events
            outgoing = self.client.data_to_send()
            if not outgoing:
                outgoing = self.client.on_timeout()  # nothing came: the caller's read timed out
        raise AssertionError("no answer: " + "; ".join(self.log))


def _pair(
    client_max: int = 128, server_max: int = 512, retries: int = 3
) -> tuple[HdlcClientConnection, HdlcServerConnection]:
    client = HdlcClientConnection(
        client_address(16),
        server_address(1, 17),
        HdlcParameters(client_max, client_max),
        max_retries=retries,
    )
    server = HdlcServerConnection(server_address(1, 17), HdlcParameters(server_max, server_max))
    return client, server


def test_connect_negotiates_smaller_sizes() -> None:
    client, server = _pair(client_max=200, server_max=64)
    (event,) = LossyWire(client, server, set()).run(client.connect())
    assert event == LinkConnected(64, 64, 1, 1)
    assert client.state is LinkState.CONNECTED
    assert server.is_connected(client_address(16))


@pytest.mark.parametrize("length", [1, 60, 61, 62, 500, 1500])
def test_segmentation_both_ways(length: int) -> None:
    client, server = _pair(client_max=64, server_max=64)
    wire = LossyWire(client, server, set())
    wire.run(client.connect())
    apdu = bytes(random.Random(length).randrange(256) for _ in range(length))
    (event,) = wire.run(client.send_apdu(apdu))
    assert isinstance(event, ApduReceived)
    assert event.apdu == b"\xc4" + apdu[::-1] * 3
    segmented_frames = [line for line in wire.log if " seg " in line]
    expected_request_segments = -(-(length + 3) // 64) - 1
    expected_response_segments = -(-(3 * length + 1 + 3) // 64) - 1
    assert len(segmented_frames) == expected_request_segments + expected_response_segments


@pytest.mark.parametrize("lost", range(12))
def test_any_single_lost_frame_is_recovered(lost: int) -> None:
    client, server = _pair(client_max=32, server_max=32)
    wire = LossyWire(client, server, set())
    wire.run(client.connect())
    wire.sent = 0
    wire.drop = {lost}
    apdu = bytes(range(70))  # 3 request segments, 7 response segments
    for _ in range(2):  # and the link keeps working afterwards
        (event,) = wire.run(client.send_apdu(apdu))
        assert isinstance(event, ApduReceived) and event.apdu == b"\xc4" + apdu[::-1] * 3, wire.log


def test_lost_snrm_is_retried() -> None:
    client, server = _pair()
    (event,) = LossyWire(client, server, {0}).run(client.connect())
    assert isinstance(event, LinkConnected)


def test_dead_server_raises_link_timeout_after_retries() -> None:
    client, server = _pair(retries=2)
    wire = LossyWire(client, server, set(range(100)))
    with pytest.raises(LinkTimeout, match="after 2 retries"):
        wire.run(client.connect())
    assert wire.sent == 3  # first try + 2 retries


def test_disconnect_ua_and_dm() -> None:
    client, server = _pair()
    wire = LossyWire(client, server, set())
    wire.run(client.connect())
    assert wire.run(client.disconnect()) == [LinkDisconnected("UA")]
    assert client.state is LinkState.DISCONNECTED
    assert wire.run(client.disconnect()) == [LinkDisconnected("DM")]


def test_i_frame_before_snrm_gets_dm_and_send_requires_connection() -> None:
    client, server = _pair()
    with pytest.raises(LinkError, match="not connected"):
        client.send_apdu(b"\x01")
    stray = HdlcFrame(server_address(1, 17), client_address(16), 0x10, b"\xe6\xe6\x00\x01").encode()
    server.receive_data(stray)
    assert decode_frame(server.data_to_send()).kind is FrameKind.DM


def test_client_ignores_echo_and_other_stations() -> None:
    client, server = _pair()
    snrm = client.connect()
    other = HdlcFrame(client_address(16), server_address(2, 17), 0x73).encode()
    assert client.receive_data(snrm + other) == []  # own echo, then a UA from another server
    assert client.frames_ignored == 2
    server.receive_data(snrm)
    assert isinstance(client.receive_data(server.data_to_send())[0], LinkConnected)


def test_two_servers_on_one_bus_answer_only_their_address() -> None:
    one = HdlcServerConnection(server_address(1, 17))
    two = HdlcServerConnection(server_address(1, 18))
    snrm = HdlcFrame(server_address(1, 18), client_address(16), 0x93).encode()
    assert one.receive_data(snrm) == [] and one.data_to_send() == b""
    two.receive_data(snrm)
    assert decode_frame(two.data_to_send()).kind is FrameKind.UA
