"""Durable, bounded outbox (SQLite, WAL): everything the agent publishes waits here until the broker has it.

When full, the oldest droppable item (telemetry) not already handed to the broker makes room and the drop is
counted; events and command results are never dropped, so only they (and one send window in flight) can push the
outbox past its capacity.

Durability: a non-droppable put is fsynced before it returns (``synchronous=FULL``), so it survives power loss.
Droppable puts, acks and the drop counter are committed with ``synchronous=NORMAL``: they survive a killed process
and reach the disk with the next fsync; power loss can lose the last few of them (a telemetry sample lost, an item
delivered twice, a drop counted twice), never an event or a result.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from node_agent.sqlite_store import open_database, write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    droppable INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS item_droppable ON item (id) WHERE droppable;
CREATE TABLE IF NOT EXISTS dropped (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
INSERT OR IGNORE INTO dropped VALUES (1, 0);
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
    """FIFO of messages to publish, on disk, bounded by ``capacity`` items. Use from one thread at a time."""

    def __init__(self, path: Path, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._db = open_database(path, _SCHEMA)
        (self._len,) = self._db.execute("SELECT count(*) FROM item").fetchone()
        self._sending_upto = 0

    def put(self, topic: str, payload: bytes, *, droppable: bool, qos: int = 1, retain: bool = False) -> None:
        """Append a message; when full, drop the oldest droppable item, or this one if droppable and none is."""
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        with write(self._db, fsync=not droppable):
            excess = self._len + 1 - self.capacity  # above 1 only when reopened with a smaller capacity
            evicted = 0
            if excess > 0:
                evicted = self._db.execute(
                    "DELETE FROM item WHERE id IN (SELECT id FROM item WHERE droppable AND id > ? ORDER BY id LIMIT ?)",
                    (self._sending_upto, excess),
                ).rowcount
            store = not droppable or evicted >= excess
            if store:
                self._db.execute(
                    "INSERT INTO item (topic, payload, qos, retain, droppable) VALUES (?, ?, ?, ?, ?)",
                    (topic, payload, qos, retain, droppable),
                )
            drops = evicted + (0 if store else 1)
            if drops:
                self._db.execute("UPDATE dropped SET count = count + ?", (drops,))
        self._len += (1 if store else 0) - evicted

    def peek(self, limit: int, *, sending: bool = False) -> list[OutboxItem]:
        """The oldest ``limit`` items, oldest first, without removing them.

        With ``sending``, the items are being published: from now on they are never evicted (the broker may
        already have them, so evicting one would count a drop that did not happen); they leave only by
        :meth:`ack`. The bound can thus be exceeded by one send window.
        """
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM item ORDER BY id LIMIT ?", (max(limit, 0),)
        ).fetchall()
        if sending and rows:
            self._sending_upto = max(self._sending_upto, rows[-1][0])
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def ack(self, ids: Iterable[int]) -> None:
        """Remove delivered items; unknown ids are ignored."""
        with write(self._db, fsync=False):
            removed = self._db.executemany("DELETE FROM item WHERE id = ?", ((i,) for i in ids)).rowcount
        self._len -= removed

    def take_dropped(self) -> int:
        """Drops since the last call (persisted across restarts); resets the count to 0."""
        with write(self._db, fsync=False):
            (count,) = self._db.execute("SELECT count FROM dropped").fetchone()
            if count:
                self._db.execute("UPDATE dropped SET count = 0")
        return int(count)

    def __len__(self) -> int:
        """Items held (not yet acknowledged)."""
        return int(self._len)

    def close(self) -> None:
        """Close the database."""
        self._db.close()
