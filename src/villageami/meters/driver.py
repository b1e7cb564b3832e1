"""The one driver interface every southbound protocol implements.

A driver talks to one meter. It returns values in the meter's own units with the meter's scaler already
applied (for example DLMS 1.8.0 with scaler_unit (0, Wh) comes back as unit "Wh"); converting to the VMRS unit
(kWh, W, V, Hz), enum mapping and tamper-flag naming happen in ``villageami.meters.normalise``, so every
protocol shares one normalisation path.

Errors are per key: a register the meter refuses never hides the others. A meter that does not answer at all
raises ``MeterUnreachable`` from ``read``; the caller (gateway scheduler, bus arbiter) decides what follows.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from villageami.errors import VillageAmiError

Scalar = float | int | str | bool


class MeterError(VillageAmiError):
    """A meter-side failure that is not about one key."""


class MeterUnreachable(MeterError):
    """The meter did not answer (timeout, refused connection, dead bus segment)."""


class MeterAction(enum.StrEnum):
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    SYNC_CLOCK = "sync_clock"


@dataclass(frozen=True, slots=True)
class KeyRead:
    """One VMRS key as read from a meter (before VMRS normalisation).

    ``value`` is None exactly when ``error`` is set. ``raw`` keeps what the wire carried (an integer bitfield,
    an enum code, the unscaled register) so normalisation and audits can see it.
    """

    key: str
    value: Scalar | None
    unit: str | None
    read_at: datetime
    raw: Any = None
    error: str | None = None
    # What was actually addressed on the meter, e.g. "1-0:1.8.0.255/3/2" or "modbus:4:0x0048".
    source: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: MeterAction
    ok: bool
    detail: str | None = None
    # Registers read back after the action to confirm it, keyed by VMRS key.
    readback: Mapping[str, KeyRead] = field(default_factory=dict)


class MeterDriver(ABC):
    """Async driver for one meter. Implementations bound every await with a timeout."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the link/association. Idempotent."""

    @abstractmethod
    async def read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        """Read the given VMRS keys in as few round trips as the protocol allows."""

    @abstractmethod
    async def act(self, action: MeterAction, params: Mapping[str, Any] | None = None) -> ActionResult:
        """Execute an action (disconnect, reconnect, clock sync). Raises MeterError if unsupported."""

    @abstractmethod
    async def close(self) -> None:
        """Release the association and the link. Never raises for an already-dead link."""

    async def __aenter__(self) -> MeterDriver:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
