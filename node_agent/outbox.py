"""Durable, bounded outbox (SQLite, WAL): everything the agent publishes waits here until the controller has it.

Items leave in one of two ways. Talking to a controller that sends delivery receipts (``lockers/v1/<node>/stored``,
:class:`schemas.StoredReceipt`), an item the broker acknowledged (PUBACK) is only marked *sent*: the broker keeps
queued messages in memory and saves them every ``autosave_interval``, so its PUBACK is no proof of storage. The item
leaves when a receipt covers its (boot id, seq); until then (:attr:`Outbox.unconfirmed`) every new connection sends
it again, oldest first, before anything newer (:meth:`Outbox.rewind`), and the controller's deduplication makes the
re-send harmless. ``len()`` counts only the backlog the broker has not acknowledged yet. Until the
first receipt ever arrives (an older controller, or none: benchmarks, agent-only tests) an item leaves at its PUBACK,
as before; the first receipt switches the outbox over for good (kept on disk). Items without a key (from an outbox
older than receipts) always leave at their PUBACK.

Bound: when full, the oldest *sent* item makes room first, whatever its kind (the broker had it: only a broker crash
could still lose it) and is counted apart (``unconfirmed_evicted``), so a controller that lags or stopped sending
receipts cannot make the outbox grow; then the oldest droppable item (telemetry) not handed to the broker yet, counted
as a drop. Events and command results are never dropped before the broker has them, so only they (and one send window
in flight) can push the outbox past its capacity.

Durability: a non-droppable put is fsynced before it returns (``synchronous=FULL``), so it survives power loss.
Droppable puts, acks, receipts and the counters are committed with ``synchronous=NORMAL``: they survive a killed
process and reach the disk with the next fsync; power loss can lose the last few of them (a telemetry sample lost, an
item delivered twice, a drop counted twice), never an event or a result.
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
    droppable INTEGER NOT NULL,
    boot_id INTEGER,
    seq INTEGER,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS item_droppable ON item (id) WHERE droppable;
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counter VALUES ('dropped', 0), ('receipts', 0), ('unconfirmed_evicted', 0);
"""
_MIGRATION = """
ALTER TABLE item ADD COLUMN boot_id INTEGER;
ALTER TABLE item ADD COLUMN seq INTEGER;
ALTER TABLE item ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
"""
"""An outbox from before delivery receipts: its items get no key (they leave at their PUBACK)."""
_OLD_DROPPED = """
UPDATE counter SET value = value + (SELECT count FROM dropped) WHERE name = 'dropped';
DROP TABLE dropped;
"""
"""An outbox from before delivery receipts kept its drop count in a table of its own: moved into ``counter``."""
_INDEXES = """
CREATE INDEX IF NOT EXISTS item_key ON item (boot_id, seq) WHERE boot_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS item_sent ON item (id) WHERE sent;
"""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting for the broker (or, once sent, for the controller's receipt)."""

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
        if "sent" not in {row[1] for row in self._db.execute("PRAGMA table_info(item)")}:
            with write(self._db, fsync=True):
                for statement in filter(str.strip, _MIGRATION.split(";")):
                    self._db.execute(statement)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dropped'").fetchone():
            with write(self._db, fsync=True):
                for statement in filter(str.strip, _OLD_DROPPED.split(";")):
                    self._db.execute(statement)
        self._db.executescript(_INDEXES)
        (self._len,) = self._db.execute("SELECT count(*) FROM item").fetchone()
        (self._unconfirmed,) = self._db.execute("SELECT count(*) FROM item WHERE sent").fetchone()
        (receipts,) = self._db.execute("SELECT value FROM counter WHERE name = 'receipts'").fetchone()
        self._receipts = bool(receipts)
        self._sending_upto = 0
        """Highest id ever handed to the broker by this process: items up to it are not dropped unsent."""
        self._cursor = 0
        """Highest id handed to the broker on this connection (:meth:`rewind` starts over)."""

    @property
    def receipts(self) -> bool:
        """Whether a delivery receipt ever arrived: then items wait for one after their PUBACK."""
        return self._receipts

    @property
    def unconfirmed(self) -> int:
        """Items the broker acknowledged that no receipt covers yet (held besides the ``len()`` not yet sent)."""
        return int(self._unconfirmed)

    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        droppable: bool,
        qos: int = 1,
        retain: bool = False,
        key: tuple[int, int] | None = None,
    ) -> None:
        """Append a message with its (boot id, seq) ``key``; when full, evict as the module says, or drop this one
        if droppable and nothing could be evicted."""
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        boot_id, seq = key if key is not None else (None, None)
        with write(self._db, fsync=not droppable):
            excess = self._len + 1 - self.capacity  # above 1 only when reopened with a smaller capacity
            unconfirmed = evicted = 0
            if excess > 0:
                unconfirmed = self._db.execute(
                    "DELETE FROM item WHERE id IN (SELECT id FROM item WHERE sent ORDER BY id LIMIT ?)", (excess,)
                ).rowcount
            if excess > unconfirmed:
                evicted = self._db.execute(
                    "DELETE FROM item WHERE id IN "
                    "(SELECT id FROM item WHERE droppable AND NOT sent AND id > ? ORDER BY id LIMIT ?)",
                    (self._sending_upto, excess - unconfirmed),
                ).rowcount
            store = not droppable or unconfirmed + evicted >= excess
            if store:
                self._db.execute(
                    "INSERT INTO item (topic, payload, qos, retain, droppable, boot_id, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, retain, droppable, boot_id, seq),
                )
            drops = evicted + (0 if store else 1)
            if drops:
                self._db.execute("UPDATE counter SET value = value + ? WHERE name = 'dropped'", (drops,))
            if unconfirmed:
                self._db.execute(
                    "UPDATE counter SET value = value + ? WHERE name = 'unconfirmed_evicted'", (unconfirmed,)
                )
        self._len += (1 if store else 0) - evicted - unconfirmed
        self._unconfirmed -= unconfirmed

    def peek(self, limit: int, *, sending: bool = False) -> list[OutboxItem]:
        """The oldest ``limit`` items held, oldest first, without removing them.

        With ``sending``, the oldest ``limit`` items not yet handed to the broker on this connection (since the last
        :meth:`rewind`), which are being published: from now on they are never dropped as unsent (the broker may
        already have them, so evicting one would count a drop that did not happen); they leave only by :meth:`ack`,
        a receipt or, once sent, an unconfirmed eviction. The bound can thus be exceeded by one send window.
        """
        after = self._cursor if sending else 0
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM item WHERE id > ? ORDER BY id LIMIT ?", (after, max(limit, 0))
        ).fetchall()
        if sending and rows:
            self._cursor = rows[-1][0]
            self._sending_upto = max(self._sending_upto, self._cursor)
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def rewind(self) -> None:
        """A new connection: send everything held again, oldest first (sent items not covered by a receipt yet)."""
        self._cursor = 0

    def ack(self, ids: Iterable[int]) -> None:
        """The broker acknowledged these items: remove them, or (receipts on, item with a key) mark them sent.

        Unknown ids are ignored.
        """
        rows = [(i,) for i in ids]
        with write(self._db, fsync=False):
            marked = 0
            if self._receipts:
                marked = self._db.executemany(
                    "UPDATE item SET sent = 1 WHERE id = ? AND boot_id IS NOT NULL AND NOT sent", rows
                ).rowcount
                removed = self._db.executemany("DELETE FROM item WHERE id = ? AND boot_id IS NULL", rows).rowcount
            else:
                removed = self._db.executemany("DELETE FROM item WHERE id = ?", rows).rowcount
        self._len -= removed
        self._unconfirmed += marked

    def confirm(self, boot_id: int, ranges: Iterable[tuple[int, int]]) -> int:
        """A delivery receipt: remove the items of boot ``boot_id`` whose seq lies in one of ``ranges`` (first and
        last included), sent or not; from now on items wait for a receipt after their PUBACK. How many left."""
        removed = was_sent = 0
        with write(self._db, fsync=False):
            if not self._receipts:
                self._db.execute("UPDATE counter SET value = 1 WHERE name = 'receipts'")
            for first, last in ranges:
                where = (boot_id, first, last)
                (sent,) = self._db.execute(
                    "SELECT count(*) FROM item WHERE boot_id = ? AND seq BETWEEN ? AND ? AND sent", where
                ).fetchone()
                was_sent += sent
                removed += self._db.execute(
                    "DELETE FROM item WHERE boot_id = ? AND seq BETWEEN ? AND ?", where
                ).rowcount
        self._receipts = True
        self._len -= removed
        self._unconfirmed -= was_sent
        return removed

    def take_dropped(self) -> int:
        """Drops since the last call (persisted across restarts); resets the count to 0."""
        return self._take("dropped")

    def take_unconfirmed_evicted(self) -> int:
        """Sent items evicted before a receipt covered them, since the last call (persisted); resets it to 0."""
        return self._take("unconfirmed_evicted")

    def _take(self, counter: str) -> int:
        with write(self._db, fsync=False):
            (count,) = self._db.execute("SELECT value FROM counter WHERE name = ?", (counter,)).fetchone()
            if count:
                self._db.execute("UPDATE counter SET value = 0 WHERE name = ?", (counter,))
        return int(count)

    def __len__(self) -> int:
        """Items not yet acknowledged by the broker (the backlog); :attr:`unconfirmed` counts the others held."""
        return int(self._len - self._unconfirmed)

    def close(self) -> None:
        """Close the database."""
        self._db.close()
