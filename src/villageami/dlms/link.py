"""The seam between the DLMS application layer and the link layers (HDLC, wrapper).

The client session (``villageami.dlms.client``) only needs to exchange whole APDUs. A link hides framing,
segmentation, HDLC sequence numbers and RR polling, and bounds every wait with a timeout.
"""

from __future__ import annotations

from typing import Protocol


class ApduLink(Protocol):
    """A connected, framed path to one DLMS server (logical device)."""

    async def open(self) -> None:
        """Connect and set up the link (for HDLC: SNRM/UA with parameter negotiation). Idempotent."""
        ...

    async def exchange(self, apdu: bytes, timeout: float) -> bytes:
        """Send one complete APDU and return the server's next complete APDU.

        Raises ``villageami.dlms.errors.LinkTimeout`` when no complete answer arrives in time.
        """
        ...

    async def close(self) -> None:
        """Tear the link down (HDLC: DISC/UA or DM). Never raises for an already-dead link."""
        ...
