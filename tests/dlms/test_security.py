"""Security suite 0: Green Book ciphering vectors, HLS-GMAC, security context counters and replay."""

from __future__ import annotations

from typing import Any as Keys  # the green_book_keys fixture (tests/dlms/conftest.py)

import pytest
from hypothesis import given
from hypothesis import strategies as st

from villageami.dlms.apdu import ApduTag, CipheredApdu, GeneralGloCiphering, decode_apdu
from villageami.dlms.errors import CipheringError
from villageami.dlms.security import (
    SecurityContext,
    SecurityControl,
    decrypt,
    encrypt,
    gmac_tag,
    hls_gmac_response,
    verify_hls_gmac_response,
)

GET_CLOCK = bytes.fromhex("c0010000080000010000ff0200")


def test_green_book_get_clock_example(green_book_keys: Keys) -> None:
    # Green Book ciphering example (corpus vector 39): SC 0x30, IC 0x01234567.
    ciphered = encrypt(
        GET_CLOCK,
        security_control=0x30,
        system_title=green_book_keys.client_system_title,
        invocation_counter=0x01234567,
        encryption_key=green_book_keys.encryption_key,
        authentication_key=green_book_keys.authentication_key,
    )
    assert ciphered.hex() == "411312ff935a47566827c467bc7d825c3be4a77c3fcc056b6b"


def test_green_book_hls_gmac_example(green_book_keys: Keys) -> None:
    # f(StoC) from the Green Book HLS example (corpus vector 28).
    tag = gmac_tag(
        b"P6wRJ21F",
        system_title=bytes.fromhex("4d4d4d0000000001"),
        invocation_counter=1,
        encryption_key=green_book_keys.encryption_key,
        authentication_key=green_book_keys.authentication_key,
    )
    assert tag.hex() == "1a52fe7dd3e72748973c1e28"


@pytest.mark.parametrize("security_control", [0x00, 0x10, 0x20, 0x30])
@given(plaintext=st.binary(min_size=1, max_size=100), counter=st.integers(0, 2**32 - 1))
def test_encrypt_decrypt_round_trip(security_control: int, plaintext: bytes, counter: int) -> None:
    kwargs = {
        "security_control": security_control,
        "system_title": b"ABCDEFGH",
        "invocation_counter": counter,
        "encryption_key": bytes(range(16)),
        "authentication_key": bytes(range(16, 32)),
    }
    ciphered = encrypt(plaintext, **kwargs)  # type: ignore[arg-type]
    assert decrypt(ciphered, **kwargs) == plaintext  # type: ignore[arg-type]
    if security_control & 0x20:
        assert plaintext not in ciphered or len(plaintext) < 4
    if security_control == 0x10:
        assert ciphered[: len(plaintext)] == plaintext and len(ciphered) == len(plaintext) + 12


def test_encryption_only_matches_gcm_ciphertext() -> None:
    kwargs = {
        "system_title": b"ABCDEFGH",
        "invocation_counter": 7,
        "encryption_key": bytes(range(16)),
        "authentication_key": bytes(16),
    }
    both = encrypt(GET_CLOCK, security_control=0x30, **kwargs)  # type: ignore[arg-type]
    only = encrypt(GET_CLOCK, security_control=0x20, **kwargs)  # type: ignore[arg-type]
    assert only == both[:-12]


@pytest.mark.parametrize("what", ["key", "tag", "counter", "title"])
def test_tampering_is_detected(what: str, green_book_keys: Keys) -> None:
    kwargs = {
        "security_control": 0x30,
        "system_title": green_book_keys.client_system_title,
        "invocation_counter": 5,
        "encryption_key": green_book_keys.encryption_key,
        "authentication_key": green_book_keys.authentication_key,
    }
    ciphered = encrypt(GET_CLOCK, **kwargs)  # type: ignore[arg-type]
    if what == "key":
        kwargs["encryption_key"] = bytes(16)
    elif what == "tag":
        ciphered = ciphered[:-1] + bytes([ciphered[-1] ^ 1])
    elif what == "counter":
        kwargs["invocation_counter"] = 6
    else:
        kwargs["system_title"] = b"XXXXXXXX"
    with pytest.raises(CipheringError, match="does not verify"):
        decrypt(ciphered, **kwargs)  # type: ignore[arg-type]


def test_bad_parameters_name_the_problem() -> None:
    with pytest.raises(CipheringError, match="16 octets"):
        encrypt(b"x", security_control=0x30, system_title=b"ABCDEFGH", invocation_counter=0,
                encryption_key=b"short", authentication_key=bytes(16))  # fmt: skip
    with pytest.raises(CipheringError, match="system title must be 8 octets"):
        encrypt(b"x", security_control=0x30, system_title=b"ABC", invocation_counter=0,
                encryption_key=bytes(16), authentication_key=bytes(16))  # fmt: skip
    with pytest.raises(CipheringError, match="security suite 1"):
        encrypt(b"x", security_control=0x31, system_title=b"ABCDEFGH", invocation_counter=0,
                encryption_key=bytes(16), authentication_key=bytes(16))  # fmt: skip
    with pytest.raises(CipheringError, match="shorter than the GCM tag"):
        decrypt(b"abc", security_control=0x30, system_title=b"ABCDEFGH", invocation_counter=0,
                encryption_key=bytes(16), authentication_key=bytes(16))  # fmt: skip


def test_security_control_bits() -> None:
    assert SecurityControl.from_byte(0x30) == SecurityControl(0, True, True, False, False)
    assert SecurityControl(0, True, False).to_byte() == 0x10
    assert SecurityControl.from_byte(0xC0).to_byte() == 0xC0


def test_hls_gmac_exchange_both_ways(green_book_keys: Keys) -> None:
    keys = {
        "encryption_key": green_book_keys.encryption_key,
        "authentication_key": green_book_keys.authentication_key,
    }
    challenge = b"K56iVagY"
    answer = hls_gmac_response(challenge, system_title=b"SERVER01", invocation_counter=77, **keys)
    assert answer[0] == 0x10 and int.from_bytes(answer[1:5], "big") == 77 and len(answer) == 17
    assert verify_hls_gmac_response(answer, challenge, system_title=b"SERVER01", **keys) == 77
    with pytest.raises(CipheringError, match="does not verify"):
        verify_hls_gmac_response(answer, b"other123", system_title=b"SERVER01", **keys)
    with pytest.raises(CipheringError, match="is not SC"):
        verify_hls_gmac_response(answer[:-1], challenge, system_title=b"SERVER01", **keys)


def _pair(green_book_keys: Keys) -> tuple[SecurityContext, SecurityContext]:
    client = SecurityContext(
        system_title=green_book_keys.client_system_title,
        encryption_key=green_book_keys.encryption_key,
        authentication_key=green_book_keys.authentication_key,
        invocation_counter=0x01234567,
        dedicated_key=bytes(range(16)),
        peer_system_title=green_book_keys.server_system_title,
    )
    server = SecurityContext(
        system_title=green_book_keys.server_system_title,
        encryption_key=green_book_keys.encryption_key,
        authentication_key=green_book_keys.authentication_key,
        dedicated_key=bytes(range(16)),
        peer_system_title=green_book_keys.client_system_title,
    )
    return client, server


def test_context_protects_with_glo_tags_and_counts(green_book_keys: Keys) -> None:
    client, server = _pair(green_book_keys)
    wire = client.protect(GET_CLOCK)
    assert wire.hex() == "c81e30012345674113" + "12ff935a47566827c467bc7d825c3be4a77c3fcc056b6b"
    assert client.invocation_counter == 0x01234568
    apdu = decode_apdu(wire)
    assert isinstance(apdu, CipheredApdu) and apdu.tag == ApduTag.GLO_GET_REQUEST
    assert server.unprotect(apdu) == GET_CLOCK
    assert server.peer_invocation_counter == 0x01234567


def test_context_rejects_replayed_counter(green_book_keys: Keys) -> None:
    client, server = _pair(green_book_keys)
    first = decode_apdu(client.protect(GET_CLOCK))
    second = decode_apdu(client.protect(GET_CLOCK))
    assert isinstance(first, CipheredApdu) and isinstance(second, CipheredApdu)
    server.unprotect(second)
    with pytest.raises(CipheringError, match="replayed or stale invocation counter"):
        server.unprotect(first)
    with pytest.raises(CipheringError, match="replayed"):
        server.unprotect(second)


def test_context_dedicated_and_general(green_book_keys: Keys) -> None:
    client, server = _pair(green_book_keys)
    dedicated = decode_apdu(client.protect(GET_CLOCK, dedicated=True))
    assert isinstance(dedicated, CipheredApdu) and dedicated.tag == ApduTag.DED_GET_REQUEST
    assert server.unprotect(dedicated) == GET_CLOCK
    general = decode_apdu(client.protect(GET_CLOCK, general=True))
    assert (
        isinstance(general, GeneralGloCiphering)
        and general.system_title == green_book_keys.client_system_title
    )
    server.peer_system_title = None  # general-glo-ciphering carries its own title
    assert server.unprotect(general) == GET_CLOCK


def test_context_refuses_unknown_tag_and_missing_title(green_book_keys: Keys) -> None:
    client, server = _pair(green_book_keys)
    with pytest.raises(CipheringError, match="no ciphered form"):
        client.protect(b"\x0f\x00")
    apdu = decode_apdu(client.protect(GET_CLOCK))
    assert isinstance(apdu, CipheredApdu)
    server.peer_system_title = None
    with pytest.raises(CipheringError, match="peer system title is unknown"):
        server.unprotect(apdu)
