"""Crash-safe command journal on local disk (SQLite, WAL, synchronous=FULL).

A command is journaled before the agent acts on it and its result before the agent replies, so after a crash a
command whose outcome is unknown is found here, reported ``unknown`` and never executed again.
"""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

MAX_REJECTED_ROWS: Final = 1000
MAX_REJECTED_BYTES: Final = 4096

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
    """An inbound payload refused by the contract, kept for inspection."""

    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    detail: str


def _us(value: datetime) -> int:
    return round(value.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class Journal:
    """The agent's journal of commands, boot counter and dead letters."""

    def __init__(self, path: Path, now: Callable[[], datetime]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._now = now
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def next_boot_id(self) -> int:
        """Increment and return the persisted boot counter (1 on the first start)."""
        with self._db:
            self._db.execute(
                "INSERT INTO boot (id, boot_id) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET boot_id = boot_id + 1"
            )
            (boot_id,) = self._db.execute("SELECT boot_id FROM boot WHERE id = 1").fetchone()
        return int(boot_id)

    def lookup(self, command_id: str) -> JournalEntry | None:
        """The entry of ``command_id``, if it was ever journaled (and not yet pruned)."""
        row = self._db.execute(
            "SELECT command_id, received_us, expires_us, command, result FROM command WHERE command_id = ?",
            (command_id,),
        ).fetchone()
        return _entry(row) if row else None

    def begin(self, command_id: str, expires_at: datetime, command: bytes) -> None:
        """Record that the agent is about to act on ``command_id`` (durable on return)."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO command (command_id, received_us, expires_us, command) VALUES (?, ?, ?, ?)",
                    (command_id, _us(self._now()), _us(expires_at), command),
                )
        except sqlite3.IntegrityError:
            raise JournalError(f"command {command_id!r} is already journaled") from None

    def finish(self, command_id: str, result: bytes) -> None:
        """Record the final result of a begun command (durable on return)."""
        with self._db:
            changed = self._db.execute(
                "UPDATE command SET result = ? WHERE command_id = ?", (result, command_id)
            ).rowcount
        if changed != 1:
            raise JournalError(f"command {command_id!r} was never begun")

    def record(self, command_id: str, expires_at: datetime, command: bytes, result: bytes) -> None:
        """Journal a command answered without acting (expired, rejected) in one transaction."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO command (command_id, received_us, expires_us, command, result) VALUES (?, ?, ?, ?, ?)",
                    (command_id, _us(self._now()), _us(expires_at), command, result),
                )
        except sqlite3.IntegrityError:
            raise JournalError(f"command {command_id!r} is already journaled") from None

    def unfinished(self) -> list[JournalEntry]:
        """Commands begun and never finished: the process died while executing them. Oldest first."""
        rows = self._db.execute(
            "SELECT command_id, received_us, expires_us, command, result FROM command "
            "WHERE result IS NULL ORDER BY received_us, rowid"
        ).fetchall()
        return [_entry(r) for r in rows]

    def prune(self, retention: timedelta) -> int:
        """Forget finished commands that expired more than ``retention`` ago; return how many."""
        horizon = _us(self._now() - retention)
        with self._db:
            return self._db.execute(
                "DELETE FROM command WHERE result IS NOT NULL AND expires_us < ?", (horizon,)
            ).rowcount

    def keep_rejected(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        """Keep a refused inbound payload (truncated) for inspection; only the newest rows are kept."""
        with self._db:
            self._db.execute(
                "INSERT INTO rejected (received_us, topic, payload, reason, detail) VALUES (?, ?, ?, ?, ?)",
                (_us(self._now()), topic[:256], payload[:MAX_REJECTED_BYTES], reason, detail[:512]),
            )
            self._db.execute(
                "DELETE FROM rejected WHERE id <= (SELECT max(id) FROM rejected) - ?", (MAX_REJECTED_ROWS,)
            )

    def rejected(self, limit: int = 100) -> list[RejectedPayload]:
        """Kept payloads, newest first."""
        rows = self._db.execute(
            "SELECT received_us, topic, payload, reason, detail FROM rejected ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [RejectedPayload(_dt(r[0]), r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _entry(row: tuple[str, int, int, bytes, bytes | None]) -> JournalEntry:
    command_id, received_us, expires_us, command, result = row
    return JournalEntry(
        command_id, _dt(received_us), _dt(expires_us), bytes(command), None if result is None else bytes(result)
    )
