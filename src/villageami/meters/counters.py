"""Durable DLMS invocation counters (security suite 0).

A ciphered DLMS meter rejects any invocation counter it has already seen, so a client that restarts from 0
locks itself out. The driver reserves counters ahead: before using counters up to N it persists N, so a
crash (even kill -9) can skip counter values but never reuse one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from villageami.errors import VillageAmiError


class CounterStoreError(VillageAmiError):
    """The counter file cannot be read or written."""


class InvocationCounterStore(Protocol):
    """Where the next safe invocation counter of each meter is kept, by a key such as the meter serial."""

    def load(self, key: str) -> int | None: ...

    def save(self, key: str, value: int) -> None: ...


class MemoryCounterStore:
    """For tests and one-shot reads: survives nothing."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def load(self, key: str) -> int | None:
        return self.values.get(key)

    def save(self, key: str, value: int) -> None:
        self.values[key] = value


class JsonFileCounterStore:
    """A small JSON file, replaced atomically (write, fsync, rename, fsync the folder) on every save."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._values = self._read()

    def _read(self) -> dict[str, int]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CounterStoreError(f"cannot read invocation counters from {self.path}: {exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise CounterStoreError(f"invocation counter file {self.path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in data.items()
        ):
            raise CounterStoreError(f"invocation counter file {self.path} must map keys to counters >= 0")
        return data

    def load(self, key: str) -> int | None:
        with self._lock:
            return self._values.get(key)

    def save(self, key: str, value: int) -> None:
        with self._lock:
            self._values[key] = value
            payload = json.dumps(self._values, indent=1, sort_keys=True).encode()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(payload)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.replace(tmp, self.path)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError as exc:
                raise CounterStoreError(f"cannot save invocation counters to {self.path}: {exc}") from exc
