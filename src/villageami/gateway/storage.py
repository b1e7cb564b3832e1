"""Opening the gateway's durable SQLite databases (outbox, command journal, event state) one way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from villageami.errors import VillageAmiError


class StorageError(VillageAmiError):
    """A gateway database could not be opened or created."""


def open_durable_db(
    path: str | Path, schema: str, *, what: str, error: type[VillageAmiError] = StorageError
) -> sqlite3.Connection:
    """Open (creating folder, file and tables) a database whose commits must survive kill -9 and power loss.

    WAL lets the uplink read while a poll loop writes; synchronous=FULL fsyncs every commit, which is what
    makes a seq allocation or a PUBACK-gated delete survive power loss. isolation_level=None because callers
    issue BEGIN IMMEDIATE themselves; the busy timeout covers two stores sharing one file (journal and event
    state).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise error(f"cannot open {what} {path}: {exc}") from exc
    return db
