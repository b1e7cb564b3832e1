"""Fixtures of the DLMS application-layer tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Keys:
    encryption_key: bytes
    authentication_key: bytes
    client_system_title: bytes
    server_system_title: bytes


@pytest.fixture
def green_book_keys() -> Keys:
    """The Green Book example keys, also used by the corpus vectors from u9n/dlms-cosem."""
    return Keys(
        encryption_key=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
        authentication_key=bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"),
        client_system_title=bytes.fromhex("4d4d4d0000bc614e"),
        server_system_title=bytes.fromhex("4d4d4d0000000002"),
    )
