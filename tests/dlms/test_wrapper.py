"""IEC 62056-47 wrapper: corpus vectors, stream splitting, rejects, fuzz."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from villageami.dlms.errors import DecodeError
from villageami.dlms.wrapper import WrapperPdu, WrapperStreamDecoder, decode_wrapper

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def _vectors() -> list[dict[str, object]]:
    lines = (CORPUS / "dlms" / "dlms-frames.jsonl").read_text().splitlines()
    return [v for v in map(json.loads, lines) if v["kind"] == "wrapper"]


VECTORS = _vectors()


def test_corpus_has_wrapper_vectors() -> None:
    assert len(VECTORS) == 7


SINGLE = [v for v in VECTORS if "wrapper" in v["expect"]]
REJECTS = [v for v in VECTORS if v["expect"].get("reject")]


@pytest.mark.parametrize("vector", SINGLE, ids=lambda v: v["hex"][:24])
def test_corpus_single_pdu_decodes(vector: dict) -> None:
    pdu = decode_wrapper(bytes.fromhex(vector["hex"]))
    want = vector["expect"]["wrapper"]
    assert (pdu.version, pdu.source_wport, pdu.destination_wport, pdu.length) == (
        want["version"],
        want["source_wport"],
        want["destination_wport"],
        want["length"],
    )
    if "payload_hex" in vector["expect"]:
        assert pdu.payload.hex() == vector["expect"]["payload_hex"]
    assert pdu.encode().hex() == vector["hex"]


def test_corpus_two_pdus_in_one_read() -> None:
    (vector,) = [v for v in VECTORS if "frames" in v["expect"]]
    decoder = WrapperStreamDecoder()
    pdus = decoder.feed(bytes.fromhex(vector["hex"]))
    frames = vector["expect"]["frames"]
    assert [p.payload.hex() for p in pdus] == [f["payload_hex"] for f in vector["expect"]["frames"]]
    assert [p.source_wport for p in pdus] == [f["wrapper"]["source_wport"] for f in frames]


@pytest.mark.parametrize("vector", REJECTS, ids=lambda v: v["hex"][:24])
def test_corpus_rejects(vector: dict) -> None:
    # The gosem client (wPort 1) talks to server wPort 3, with at most 4095 octets per PDU.
    with pytest.raises(DecodeError):
        decode_wrapper(bytes.fromhex(vector["hex"]), expect_source=3, expect_destination=1, max_length=0xFFF)
    decoder = WrapperStreamDecoder(expect_source=3, expect_destination=1, max_length=0xFFF)
    with pytest.raises(DecodeError):
        decoder.feed(bytes.fromhex(vector["hex"]))


def test_partial_reads_reassemble() -> None:
    wire = WrapperPdu(16, 1, bytes(range(40))).encode() + WrapperPdu(16, 1, b"\xc0\x01").encode()
    decoder = WrapperStreamDecoder()
    got: list[WrapperPdu] = []
    for octet in wire:
        got += decoder.feed(bytes([octet]))
    assert [p.payload for p in got] == [bytes(range(40)), b"\xc0\x01"]
    assert decoder.buffered == 0


def test_length_mismatch_rejected() -> None:
    with pytest.raises(DecodeError, match="length field says 3"):
        decode_wrapper(bytes.fromhex("0001001000010003aabb"))
    with pytest.raises(DecodeError, match="shorter than its 8-octet header"):
        decode_wrapper(b"\x00\x01")


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_round_trip(source: int, destination: int, payload: bytes) -> None:
    pdu = WrapperPdu(source, destination, payload)
    assert decode_wrapper(pdu.encode()) == pdu


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_fuzz_stream_decoder_raises_only_decode_error(chunks: list[bytes]) -> None:
    decoder = WrapperStreamDecoder(max_length=64)
    for chunk in chunks:
        with contextlib.suppress(DecodeError):
            decoder.feed(chunk)


@settings(max_examples=300)
@given(st.binary(max_size=60), st.integers(0, 59), st.integers(0, 255))
def test_fuzz_mutated_pdu(payload: bytes, position: int, value: int) -> None:
    wire = bytearray(WrapperPdu(16, 1, payload).encode())
    wire[position % len(wire)] = value
    with contextlib.suppress(DecodeError):
        decode_wrapper(bytes(wire))
