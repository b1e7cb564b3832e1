"""Decoders fed random and mutated input raise only DecodeError (CipheringError for bad tags)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from villageami.dlms.apdu import CipheredApdu, GeneralGloCiphering, decode_apdu, strip_llc
from villageami.dlms.axdr import decode_data
from villageami.dlms.errors import CipheringError, DecodeError
from villageami.dlms.security import SecurityContext
from villageami.dlms.translator import TranslatorKeys, translate

CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "corpus" / "dlms" / "dlms-frames.jsonl"
SEEDS = [
    strip_llc(bytes.fromhex(v["hex"]))
    for v in map(json.loads, CORPUS_FILE.read_text().splitlines())
    if v["kind"] in ("apdu", "axdr")
]


def _decode_everything(data: bytes) -> None:
    for decoder in (decode_apdu, decode_data):
        with contextlib.suppress(DecodeError):
            decoder(data)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _decode_everything(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "truncate":
            del data[position:]
        elif not data:
            data.append(draw(st.integers(0, 255)))
        elif action == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF]))
        elif action == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        else:
            del data[position]
    return bytes(data)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_corpus_vectors(data: bytes) -> None:
    _decode_everything(data)


@pytest.mark.parametrize("seed", SEEDS[:40])
def test_every_truncation_of_seeds(seed: bytes) -> None:
    for end in range(len(seed)):
        _decode_everything(seed[:end])


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_deciphering_garbage_raises_ciphering_error(body: bytes, security_control: int, counter: int) -> None:
    context = SecurityContext(
        system_title=b"CLIENT01",
        encryption_key=bytes(16),
        authentication_key=bytes(16),
        peer_system_title=b"SERVER01",
    )
    for apdu in (
        CipheredApdu(0xCC, security_control, counter, body),
        GeneralGloCiphering(b"SERVER01", security_control, counter, body),
    ):
        try:
            plaintext = context.unprotect(apdu)
        except CipheringError:
            continue
        context.peer_invocation_counter = None
        with contextlib.suppress(DecodeError):
            decode_apdu(plaintext)


FRAME_SEEDS = [
    bytes.fromhex(v["hex"])
    for v in map(json.loads, CORPUS_FILE.read_text().splitlines())
    if v["kind"] in ("hdlc", "wrapper")
]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FRAME_SEEDS + SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=600, deadline=None)
@given(st.one_of(mutated_frames(), st.binary(max_size=120)))
def test_translator_raises_only_decode_error(data: bytes) -> None:
    keys = TranslatorKeys(encryption_key=bytes(16), authentication_key=bytes(16), system_title=bytes(8))
    with contextlib.suppress(DecodeError):
        json.dumps(translate(data, keys))
