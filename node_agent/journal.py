"""Crash-safe command journal on local disk (SQLite, WAL, ``synchronous=FULL``: every write is fsynced).

A command is journaled before the agent acts on it and its result before the agent replies, so after a crash a
command whose outcome is unknown is found here, reported ``unknown`` and never executed again. The same file holds
the boot counter and a capped dead letter of refused inbound payloads.
"""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from node_agent.sqlite_store import from_us, open_database, to_us, write

MAX_REJECTED_ROWS: Final = 1000
"""Dead letters kept; older ones are deleted."""
MAX_REJECTED_BYTES: Final = 4096
"""A dead letter's payload is cut to this many bytes."""
MAX_REJECTED_TEXT: Final = 512
"""A dead letter's topic and detail are cut to this many characters."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS boot (id INTEGER PRIMARY KEY CHECK (id = 1), boot_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS command (
    command_id TEXT PRIMARY KEY,
    received_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    command BLOB NOT NULL,
    result BLOB
);
CREATE INDEX IF NOT EXISTS command_expiry ON command (expires_us);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_us INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class JournalError(RuntimeError):
    """A journal operation that contradicts what is recorded."""


@dataclass(frozen=True)
class JournalEntry:
    """One journaled command and, once final, its result payload."""

    command_id: str
    received_at: datetime
    expires_at: datetime
    command: bytes
    result: bytes | None

    @property
    def finished(self) -> bool:
        """True once a final result was recorded."""
        return self.result is not None


@dataclass(frozen=True)
class RejectedPayload:
    """An inbound payload refused by the contract, kept (truncated) for inspection."""

    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    detail: str


class Journal:
    """The agent's journal of commands, boot counter and dead letters.

    Every method is one committed transaction, durable when it returns. Use from one thread at a time.
    """

    def __init__(self, path: Path, now: Callable[[], datetime]) -> None:
        self._now = now
        self._db = open_database(path, _SCHEMA)

    def next_boot_id(self) -> int:
        """Increment and return the persisted boot counter: 1 on the first start."""
        with write(self._db, fsync=True):
            self._db.execute("INSERT INTO boot VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET boot_id = boot_id + 1")
            (boot_id,) = self._db.execute("SELECT boot_id FROM boot").fetchone()
        return int(boot_id)

    def lookup(self, command_id: str) -> JournalEntry | None:
        """The entry of ``command_id``, if it was ever journaled (and not yet pruned)."""
        row = self._db.execute(
            "SELECT command_id, received_us, expires_us, command, result FROM command WHERE command_id = ?",
            (command_id,),
        ).fetchone()
        return _entry(row) if row else None

    def begin(self, command_id: str, expires_at: datetime, command: bytes) -> None:
        """Record that the agent is about to act on ``command_id``; :class:`JournalError` if already journaled."""
        self._insert(command_id, expires_at, command, None)

    def finish(self, command_id: str, result: bytes) -> None:
        """Record the final result of a begun command; :class:`JournalError` if it was never begun."""
        with write(self._db, fsync=True):
            changed = self._db.execute(
                "UPDATE command SET result = ? WHERE command_id = ?", (result, command_id)
            ).rowcount
            if changed != 1:
                raise JournalError(f"command {command_id!r} was never begun")

    def record(self, command_id: str, expires_at: datetime, command: bytes, result: bytes) -> None:
        """Journal a command answered without acting (expired, rejected): begin and finish in one transaction."""
        self._insert(command_id, expires_at, command, result)

    def unfinished(self) -> list[JournalEntry]:
        """Commands begun and never finished (the process died while executing them), oldest first."""
        # rowid order is insertion order (a new rowid is max + 1), unlike received_at when the clock steps back.
        rows = self._db.execute(
            "SELECT command_id, received_us, expires_us, command, result FROM command "
            "WHERE result IS NULL ORDER BY rowid"
        ).fetchall()
        return [_entry(r) for r in rows]

    def prune(self, retention: timedelta) -> int:
        """Forget finished commands that expired more than ``retention`` ago; return how many."""
        with write(self._db, fsync=True):
            return self._db.execute(
                "DELETE FROM command WHERE result IS NOT NULL AND expires_us < ?", (to_us(self._now() - retention),)
            ).rowcount

    def keep_rejected(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        """Keep a refused inbound payload, truncated; only the newest :data:`MAX_REJECTED_ROWS` are kept."""
        with write(self._db, fsync=True):
            self._db.execute(
                "INSERT INTO rejected (received_us, topic, payload, reason, detail) VALUES (?, ?, ?, ?, ?)",
                (
                    to_us(self._now()),
                    topic[:MAX_REJECTED_TEXT],
                    payload[:MAX_REJECTED_BYTES],
                    reason[:MAX_REJECTED_TEXT],
                    detail[:MAX_REJECTED_TEXT],
                ),
            )
            self._db.execute(
                "DELETE FROM rejected WHERE id <= (SELECT id FROM rejected ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (MAX_REJECTED_ROWS,),
            )

    def rejected(self, limit: int = 100) -> list[RejectedPayload]:
        """Up to ``limit`` kept payloads, newest first."""
        rows = self._db.execute(
            "SELECT received_us, topic, payload, reason, detail FROM rejected ORDER BY id DESC LIMIT ?",
            (max(limit, 0),),
        ).fetchall()
        return [RejectedPayload(from_us(r[0]), r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _insert(self, command_id: str, expires_at: datetime, command: bytes, result: bytes | None) -> None:
        try:
            with write(self._db, fsync=True):
                self._db.execute(
                    "INSERT INTO command (command_id, received_us, expires_us, command, result) VALUES (?, ?, ?, ?, ?)",
                    (command_id, to_us(self._now()), to_us(expires_at), command, result),
                )
        except sqlite3.IntegrityError:
            raise JournalError(f"command {command_id!r} is already journaled") from None


def _entry(row: tuple[str, int, int, bytes, bytes | None]) -> JournalEntry:
    command_id, received_us, expires_us, command, result = row
    return JournalEntry(
        command_id, from_us(received_us), from_us(expires_us), bytes(command), None if result is None else bytes(result)
    )
