"""Errors of the northbound contract. Each message names the problem and the offending input."""

from __future__ import annotations

from villageami.errors import VillageAmiError


class ContractError(VillageAmiError):
    """Base of every villageami.contract error."""


class ObisError(ContractError, ValueError):
    """Text or bytes that do not spell an OBIS code."""


class UnknownRegisterError(ContractError, KeyError):
    """A key that is neither a VMRS key, an alias of one, nor an OBIS code mapped to one."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown VMRS register"


class TopicError(ContractError, ValueError):
    """A topic that is not an openami/v1 topic, or an id that may not appear in one."""


class EnvelopeError(ContractError, ValueError):
    """Arguments that cannot form a valid envelope (naive datetime, bad id)."""


class SchemaError(ContractError):
    """A schema uses a keyword the fast validator does not implement (a bug in our schemas)."""
