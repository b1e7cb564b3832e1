"""The seam between the DLMS application layer and the link layers (HDLC, wrapper).

The client session (``villageami.dlms.client``) only needs to exchange whole APDUs. A link hides framing,
segmentation, HDLC sequence numbers and RR polling, and bounds every wait with a timeout.

A link may also offer ``async receive(timeout) -> bytes``: the server's next APDU without sending anything.
The client uses it when a push (data- or event-notification) overtakes the response it is waiting for.
``WrapperLink`` has it; ``HdlcLink`` does not yet (over HDLC, pushes come as UI frames, which the link
ignores, so a request still completes but the push is not delivered).
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
