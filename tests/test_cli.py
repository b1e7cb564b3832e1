"""The console script as a user runs it: bad input gives one `error:` line, a non-zero exit, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def villageami(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from villageami.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version() -> None:
    result = villageami("version")
    assert result.returncode == 0 and result.stdout.strip()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "dlms", "--object-set", "/nonexistent/objects.yaml"], "neither a file nor a bundled set"),
        (["read", "foo://x", "--profile", "eastron-sdm630"], "unknown scheme 'foo'"),
        (["dlms", "decode", "zz"], "non-hex character"),
    ],
)
def test_bad_input_is_one_error_line(args: list[str], message: str) -> None:
    result = villageami(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_busy_port_is_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = villageami("sim", "iec21", "--port", port)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "address already in use" in result.stderr
