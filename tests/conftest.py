"""Shared fixtures. Integration tests use real services; with CI set, a missing service fails the test."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus"
UPSTREAM = DATA / "upstream"

MQTT_HOST = os.environ.get("VILLAGEAMI_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("VILLAGEAMI_TEST_MQTT_PORT", "1883"))
PG_DSN = os.environ.get("VILLAGEAMI_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail (under CI) or skip (on a developer machine) when a real service is missing."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; .ci/run should have started it")
    pytest.skip(message)


@pytest.fixture
def mosquitto() -> tuple[str, int]:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    return MQTT_HOST, MQTT_PORT


@pytest.fixture
def postgres_dsn() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return PG_DSN
