"""Durable, bounded outbox (SQLite, WAL): everything the agent publishes waits here until the broker has it.

When full, the oldest droppable item (telemetry) makes room, and the drop is counted; events and command results
are never dropped, so the bound is exceeded only by them.
"""

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    droppable INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS item_droppable ON item (droppable, id);
CREATE TABLE IF NOT EXISTS dropped (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
INSERT OR IGNORE INTO dropped (id, count) VALUES (1, 0);
"""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting for the broker."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """FIFO of messages to publish, on disk, bounded by ``capacity`` items."""

    def __init__(self, path: Path, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be at least 1, got {capacity}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        (self._len,) = self._db.execute("SELECT count(*) FROM item").fetchone()

    def put(self, topic: str, payload: bytes, *, droppable: bool, qos: int = 1, retain: bool = False) -> None:
        """Append a message; when full, drop the oldest droppable item (or this one, if droppable and none is)."""
        with self._db:
            if self._len >= self.capacity:
                oldest = self._db.execute("SELECT id FROM item WHERE droppable = 1 ORDER BY id LIMIT 1").fetchone()
                if oldest is not None:
                    self._db.execute("DELETE FROM item WHERE id = ?", oldest)
                    self._len -= 1
                if oldest is not None or droppable:
                    self._db.execute("UPDATE dropped SET count = count + 1 WHERE id = 1")
                if oldest is None and droppable:
                    return
            self._db.execute(
                "INSERT INTO item (topic, payload, qos, retain, droppable) VALUES (?, ?, ?, ?, ?)",
                (topic, payload, qos, int(retain), int(droppable)),
            )
            self._len += 1

    def peek(self, limit: int) -> list[OutboxItem]:
        """The oldest ``limit`` items, without removing them."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM item ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def ack(self, ids: Iterable[int]) -> None:
        """Remove items the broker acknowledged."""
        with self._db:
            removed = self._db.executemany("DELETE FROM item WHERE id = ?", ((i,) for i in ids)).rowcount
        self._len -= removed

    def take_dropped(self) -> int:
        """Drops since the last call (persisted across restarts); resets the count."""
        with self._db:
            (count,) = self._db.execute("SELECT count FROM dropped WHERE id = 1").fetchone()
            if count:
                self._db.execute("UPDATE dropped SET count = 0 WHERE id = 1")
        return int(count)

    def __len__(self) -> int:
        return int(self._len)

    def close(self) -> None:
        """Close the database."""
        self._db.close()
