"""DLMS security suite 0 (AES-128-GCM, 12-octet tags): APDU ciphering and HLS-GMAC, sans-IO.

Initialisation vector = sender system title (8 octets) || invocation counter (4 octets, big-endian).
Authenticated data = security control || authentication key [|| plaintext when only authenticated].

``SecurityContext`` holds the keys, our system title, our invocation counter (the caller persists it:
read ``invocation_counter`` after use, pass it back as ``invocation_counter=`` next time) and the highest
counter seen from the peer (replays raise ``CipheringError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from villageami.dlms.apdu import (
    DEDICATED_CIPHERED_TAG,
    GLOBAL_CIPHERED_TAG,
    ApduTag,
    CipheredApdu,
    GeneralGloCiphering,
)
from villageami.dlms.errors import CipheringError

SC_AUTHENTICATION = 0x10
SC_ENCRYPTION = 0x20
SC_BROADCAST_KEY = 0x40
SC_COMPRESSION = 0x80
SC_SUITE_MASK = 0x0F
TAG_LENGTH = 12
MAX_INVOCATION_COUNTER = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class SecurityControl:
    """The security control octet, decomposed."""

    security_suite: int = 0
    authenticated: bool = True
    encrypted: bool = True
    broadcast_key: bool = False
    compressed: bool = False

    def to_byte(self) -> int:
        return (
            (self.security_suite & SC_SUITE_MASK)
            | (SC_AUTHENTICATION if self.authenticated else 0)
            | (SC_ENCRYPTION if self.encrypted else 0)
            | (SC_BROADCAST_KEY if self.broadcast_key else 0)
            | (SC_COMPRESSION if self.compressed else 0)
        )

    @classmethod
    def from_byte(cls, value: int) -> SecurityControl:
        return cls(
            value & SC_SUITE_MASK,
            bool(value & SC_AUTHENTICATION),
            bool(value & SC_ENCRYPTION),
            bool(value & SC_BROADCAST_KEY),
            bool(value & SC_COMPRESSION),
        )


def _check_key(key: bytes, name: str) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != 16:
        raise CipheringError(f"{name} must be 16 octets for security suite 0, got {len(key)}")


def _iv(system_title: bytes, invocation_counter: int) -> bytes:
    if len(system_title) != 8:
        raise CipheringError(f"system title must be 8 octets, got {len(system_title)} ({system_title.hex()})")
    if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
        raise CipheringError(f"invocation counter {invocation_counter} is outside 0..2^32-1")
    return bytes(system_title) + invocation_counter.to_bytes(4, "big")


def _check_suite(security_control: int) -> None:
    if security_control & SC_SUITE_MASK != 0:
        raise CipheringError(f"security suite {security_control & SC_SUITE_MASK} is not supported (only 0)")
    if security_control & SC_COMPRESSION:
        raise CipheringError("compressed ciphered APDUs are not supported")


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    # GCM encrypts with CTR starting at J0 + 1 = IV || 00000002; used alone for encryption-only APDUs.
    cipher = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    return cipher.update(data) + cipher.finalize()


def encrypt(
    plaintext: bytes,
    *,
    security_control: int,
    system_title: bytes,
    invocation_counter: int,
    encryption_key: bytes,
    authentication_key: bytes,
) -> bytes:
    """Cipher ``plaintext``; return ciphertext || tag (or plaintext || tag when only authenticated)."""
    _check_suite(security_control)
    _check_key(encryption_key, "encryption key")
    iv = _iv(system_title, invocation_counter)
    authenticated = bool(security_control & SC_AUTHENTICATION)
    encrypted = bool(security_control & SC_ENCRYPTION)
    if authenticated:
        _check_key(authentication_key, "authentication key")
    if not authenticated and not encrypted:
        return bytes(plaintext)
    if not authenticated:
        return _ctr(encryption_key, iv, plaintext)
    encryptor = Cipher(algorithms.AES(encryption_key), modes.GCM(iv)).encryptor()
    aad = bytes((security_control,)) + authentication_key
    if encrypted:
        encryptor.authenticate_additional_data(aad)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag[:TAG_LENGTH]
    encryptor.authenticate_additional_data(aad + plaintext)
    encryptor.finalize()
    return bytes(plaintext) + encryptor.tag[:TAG_LENGTH]


def decrypt(
    ciphered_text: bytes,
    *,
    security_control: int,
    system_title: bytes,
    invocation_counter: int,
    encryption_key: bytes,
    authentication_key: bytes,
) -> bytes:
    """Reverse of ``encrypt``. A wrong key or a tampered APDU raises CipheringError."""
    _check_suite(security_control)
    _check_key(encryption_key, "encryption key")
    iv = _iv(system_title, invocation_counter)
    authenticated = bool(security_control & SC_AUTHENTICATION)
    encrypted = bool(security_control & SC_ENCRYPTION)
    if not authenticated and not encrypted:
        return bytes(ciphered_text)
    if not authenticated:
        return _ctr(encryption_key, iv, ciphered_text)
    _check_key(authentication_key, "authentication key")
    if len(ciphered_text) < TAG_LENGTH:
        raise CipheringError(f"ciphered text of {len(ciphered_text)} octets is shorter than the GCM tag")
    body, tag = ciphered_text[:-TAG_LENGTH], ciphered_text[-TAG_LENGTH:]
    decryptor = Cipher(
        algorithms.AES(encryption_key), modes.GCM(iv, tag, min_tag_length=TAG_LENGTH)
    ).decryptor()
    aad = bytes((security_control,)) + authentication_key
    try:
        if encrypted:
            decryptor.authenticate_additional_data(aad)
            plaintext = decryptor.update(body) + decryptor.finalize()
        else:
            decryptor.authenticate_additional_data(aad + body)
            decryptor.finalize()
            plaintext = body
    except InvalidTag:
        raise CipheringError(
            f"authentication tag does not verify (system title {system_title.hex()}, "
            f"invocation counter {invocation_counter}): wrong key or tampered APDU"
        ) from None
    return plaintext


# --------------------------------------------------------------------------- HLS-GMAC (mechanism 5)


def gmac_tag(
    challenge: bytes,
    *,
    system_title: bytes,
    invocation_counter: int,
    encryption_key: bytes,
    authentication_key: bytes,
    security_control: int = SC_AUTHENTICATION,
) -> bytes:
    """GMAC over SC || AK || challenge (12 octets)."""
    return encrypt(
        challenge,
        security_control=security_control,
        system_title=system_title,
        invocation_counter=invocation_counter,
        encryption_key=encryption_key,
        authentication_key=authentication_key,
    )[-TAG_LENGTH:]


def hls_gmac_response(
    challenge: bytes,
    *,
    system_title: bytes,
    invocation_counter: int,
    encryption_key: bytes,
    authentication_key: bytes,
) -> bytes:
    """f(challenge) = SC (0x10) || IC || GMAC tag: what each side returns to prove it holds the keys."""
    tag = gmac_tag(
        challenge,
        system_title=system_title,
        invocation_counter=invocation_counter,
        encryption_key=encryption_key,
        authentication_key=authentication_key,
    )
    return bytes((SC_AUTHENTICATION,)) + invocation_counter.to_bytes(4, "big") + tag


def verify_hls_gmac_response(
    response: bytes,
    challenge: bytes,
    *,
    system_title: bytes,
    encryption_key: bytes,
    authentication_key: bytes,
) -> int:
    """Check the peer's f(challenge); return its invocation counter. Raises CipheringError if it fails."""
    if len(response) != 5 + TAG_LENGTH or response[0] != SC_AUTHENTICATION:
        raise CipheringError(f"HLS-GMAC answer {response.hex()} is not SC(0x10) || IC || 12-octet tag")
    counter = int.from_bytes(response[1:5], "big")
    expected = hls_gmac_response(
        challenge,
        system_title=system_title,
        invocation_counter=counter,
        encryption_key=encryption_key,
        authentication_key=authentication_key,
    )
    if expected != response:
        raise CipheringError(
            f"HLS-GMAC answer does not verify for system title {system_title.hex()}: wrong key or challenge"
        )
    return counter


# --------------------------------------------------------------------------- security context


class SecurityContext:
    """Keys and counters of one ciphered association; ciphers and deciphers whole APDUs."""

    def __init__(
        self,
        *,
        system_title: bytes,
        encryption_key: bytes,
        authentication_key: bytes,
        invocation_counter: int = 0,
        security_control: int = SC_AUTHENTICATION | SC_ENCRYPTION,
        dedicated_key: bytes | None = None,
        peer_system_title: bytes | None = None,
        peer_invocation_counter: int | None = None,
    ) -> None:
        _check_key(encryption_key, "encryption key")
        _check_key(authentication_key, "authentication key")
        if dedicated_key is not None:
            _check_key(dedicated_key, "dedicated key")
        _iv(system_title, invocation_counter)  # validates both
        self.system_title = bytes(system_title)
        self.encryption_key = bytes(encryption_key)
        self.authentication_key = bytes(authentication_key)
        self.dedicated_key = dedicated_key
        self.security_control = security_control
        self.invocation_counter = invocation_counter
        self.peer_system_title = peer_system_title
        self.peer_invocation_counter = peer_invocation_counter

    def next_invocation_counter(self) -> int:
        counter = self.invocation_counter
        if counter > MAX_INVOCATION_COUNTER:
            raise CipheringError("invocation counter exhausted: new keys are needed")
        self.invocation_counter = counter + 1
        return counter

    def protect(self, plaintext: bytes, *, dedicated: bool = False, general: bool = False) -> bytes:
        """Cipher a plain APDU into its glo-* (or ded-*, or general-glo-ciphering) form."""
        if not plaintext:
            raise CipheringError("cannot cipher an empty APDU")
        key = self.encryption_key
        if dedicated:
            if self.dedicated_key is None:
                raise CipheringError("dedicated ciphering asked for but no dedicated key is set")
            key = self.dedicated_key
        counter = self.next_invocation_counter()
        ciphered = encrypt(
            plaintext,
            security_control=self.security_control,
            system_title=self.system_title,
            invocation_counter=counter,
            encryption_key=key,
            authentication_key=self.authentication_key,
        )
        if general:
            return GeneralGloCiphering(self.system_title, self.security_control, counter, ciphered).encode()
        table = DEDICATED_CIPHERED_TAG if dedicated else GLOBAL_CIPHERED_TAG
        try:
            tag = table[ApduTag(plaintext[0])]
        except (KeyError, ValueError):
            raise CipheringError(f"APDU tag 0x{plaintext[0]:02x} has no ciphered form") from None
        return CipheredApdu(tag, self.security_control, counter, ciphered).encode()

    def unprotect(self, apdu: CipheredApdu | GeneralGloCiphering) -> bytes:
        """Decipher a peer's APDU; rejects counters not above the last one seen (replay)."""
        if isinstance(apdu, GeneralGloCiphering):
            title: bytes | None = apdu.system_title
            dedicated = apdu.tag == ApduTag.GENERAL_DED_CIPHERING
        else:
            title = self.peer_system_title
            dedicated = ApduTag(apdu.tag).name.startswith("DED_")
        if title is None:
            raise CipheringError("the peer system title is unknown: cannot decipher")
        if (
            self.peer_invocation_counter is not None
            and apdu.invocation_counter <= self.peer_invocation_counter
        ):
            raise CipheringError(
                f"replayed or stale invocation counter {apdu.invocation_counter} "
                f"(last accepted {self.peer_invocation_counter})"
            )
        key = self.encryption_key
        if dedicated:
            if self.dedicated_key is None:
                raise CipheringError("dedicated-ciphered APDU received but no dedicated key is set")
            key = self.dedicated_key
        plaintext = decrypt(
            apdu.ciphered_text,
            security_control=apdu.security_control,
            system_title=title,
            invocation_counter=apdu.invocation_counter,
            encryption_key=key,
            authentication_key=self.authentication_key,
        )
        self.peer_invocation_counter = apdu.invocation_counter
        return plaintext
