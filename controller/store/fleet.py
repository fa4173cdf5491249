"""Where the fleet registry persists: an interface and its SQLite implementation (the default store).

The controller reloads the registry at start, so node identities, compartments and last known liveness survive
a restart. Another backend (PostgreSQL) implements :class:`FleetStore` and is selected by the store URL.
"""

import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from controller.fleet.registry import NodeRecord
from schemas import Channel, StatusBirth, decode, encode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id   TEXT PRIMARY KEY,
    birth     BLOB NOT NULL,
    boot_id   INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    online    INTEGER NOT NULL,
    last_seen REAL NOT NULL
);
"""


class FleetStore(Protocol):
    """Persistence of node records."""

    def load(self) -> list[NodeRecord]:
        """Every stored record (without telemetry)."""
        ...

    def save(self, record: NodeRecord) -> None:
        """Insert or replace one node's record, durably."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class SqliteFleetStore:
    """:class:`FleetStore` in one SQLite file (WAL), safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def load(self) -> list[NodeRecord]:
        """Every stored record; births are re-validated against the contract."""
        with self._lock:
            rows = self._db.execute("SELECT birth, boot_id, seq, online, last_seen FROM nodes").fetchall()
        records = []
        for birth, boot_id, seq, online, last_seen in rows:
            message = decode(Channel.STATUS, birth)
            assert isinstance(message, StatusBirth), "only births are stored as a node's description"
            records.append(NodeRecord(message, boot_id, seq, bool(online), last_seen))
        return records

    def save(self, record: NodeRecord) -> None:
        """Upsert one record."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO nodes (node_id, birth, boot_id, seq, online, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.node_id,
                    encode(record.birth),
                    record.boot_id,
                    record.seq,
                    int(record.online),
                    record.last_seen,
                ),
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
