"""Errors of the DLMS/COSEM stack. Decoders raise only DecodeError (or its subclasses) on bad input."""

from __future__ import annotations

from villageami.errors import VillageAmiError


class DlmsError(VillageAmiError):
    """Base of every DLMS stack error."""


class DecodeError(DlmsError):
    """Bytes that do not form a valid frame, APDU or A-XDR value. The message says what and where."""


class EncodeError(DlmsError):
    """A value that cannot be encoded as asked (wrong type for the COSEM data type, out of range)."""


class LinkError(DlmsError):
    """The link layer (HDLC, wrapper, transport) failed: protocol violation, refused connection."""


class LinkTimeout(LinkError):
    """No complete answer within the timeout (after the link's own retries)."""


class AssociationError(DlmsError):
    """The application association could not be established."""


class AssociationRejected(AssociationError):
    """The server answered AARE with a rejection; the message carries the diagnostic."""


class AuthenticationFailure(AssociationError):
    """Wrong password / key, or the HLS challenge answer did not verify."""


class ServiceError(DlmsError):
    """The server refused a request (data-access-result, action-result, exception, service error)."""


class CipheringError(DlmsError):
    """A ciphered APDU could not be decrypted or authenticated (wrong key, bad tag, replayed counter)."""
