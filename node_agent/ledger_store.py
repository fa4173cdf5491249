"""The edge ledger and keypad on disk: one SQLite file (WAL, fsync on every change), loaded at start.

The keypad's throttle is kept per scope; the whole-keypad lock of earlier versions (``keypad_wrong``,
``keypad_lock``) is dropped at start (it lasted at most 15 minutes).
"""

import sqlite3
from datetime import datetime
from pathlib import Path

from node_agent.keypad import KeypadState, ScopeThrottle
from node_agent.ledger import Ledger, Slot, SlotState, Window
from node_agent.sqlite_store import from_us, open_database, to_us, write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slots (
    compartment    TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    reservation_id TEXT,
    opens_at       INTEGER,
    hold_until     INTEGER,
    pickup_until   INTEGER
);
CREATE TABLE IF NOT EXISTS keypad_used (code_key TEXT PRIMARY KEY, until INTEGER NOT NULL);
DROP TABLE IF EXISTS keypad_wrong;
DROP TABLE IF EXISTS keypad_lock;
CREATE TABLE IF NOT EXISTS keypad_scope (
    scope        TEXT PRIMARY KEY,
    level        INTEGER NOT NULL,
    locked_until INTEGER,
    last_wrong   INTEGER
);
CREATE TABLE IF NOT EXISTS keypad_scope_wrong (scope TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS node_key (id INTEGER PRIMARY KEY CHECK (id = 1), key BLOB NOT NULL);
"""


class LedgerStore:
    """Persists the ledger, the keypad's memory and the node's code key."""

    def __init__(self, path: Path) -> None:
        self._db: sqlite3.Connection = open_database(path, _SCHEMA)

    def load(self, compartments: list[str]) -> Ledger:
        """The stored ledger; compartments the board has but the file lacks start free."""
        rows = self._db.execute(
            "SELECT compartment, state, reservation_id, opens_at, hold_until, pickup_until FROM slots"
        ).fetchall()
        stored = {row[0]: _slot(row) for row in rows}
        return Ledger({c: stored.get(c, Slot()) for c in compartments})

    def save(self, ledger: Ledger) -> None:
        """Replace the stored ledger, durably."""
        rows = [
            (
                compartment,
                slot.state.value,
                slot.reservation_id,
                *(
                    (to_us(slot.window.opens_at), to_us(slot.window.hold_until), to_us(slot.window.pickup_until))
                    if slot.window
                    else (None, None, None)
                ),
            )
            for compartment, slot in ledger.slots.items()
        ]
        with write(self._db, fsync=True):
            self._db.execute("DELETE FROM slots")
            self._db.executemany("INSERT INTO slots VALUES (?, ?, ?, ?, ?, ?)", rows)

    def load_keypad(self) -> KeypadState:
        """The keypad's persisted memory."""
        used = tuple((k, from_us(u)) for k, u in self._db.execute("SELECT code_key, until FROM keypad_used"))
        wrong: dict[str, list[datetime]] = {}
        for scope, at in self._db.execute("SELECT scope, at FROM keypad_scope_wrong ORDER BY at"):
            wrong.setdefault(scope, []).append(from_us(at))
        scopes = tuple(
            (
                scope,
                ScopeThrottle(tuple(wrong.get(scope, ())), level, _maybe(locked_until), _maybe(last_wrong)),
            )
            for scope, level, locked_until, last_wrong in self._db.execute(
                "SELECT scope, level, locked_until, last_wrong FROM keypad_scope"
            )
        )
        return KeypadState(used, scopes)

    def save_keypad(self, state: KeypadState) -> None:
        """Replace the keypad's persisted memory, durably."""
        with write(self._db, fsync=True):
            self._db.execute("DELETE FROM keypad_used")
            self._db.executemany("INSERT INTO keypad_used VALUES (?, ?)", [(k, to_us(u)) for k, u in state.used])
            self._db.execute("DELETE FROM keypad_scope")
            self._db.executemany(
                "INSERT INTO keypad_scope VALUES (?, ?, ?, ?)",
                [(scope, t.level, _us_or_none(t.locked_until), _us_or_none(t.last_wrong)) for scope, t in state.scopes],
            )
            self._db.execute("DELETE FROM keypad_scope_wrong")
            self._db.executemany(
                "INSERT INTO keypad_scope_wrong VALUES (?, ?)",
                [(scope, to_us(at)) for scope, t in state.scopes for at in t.wrong],
            )

    def node_key(self) -> bytes | None:
        """The code key the controller provisioned, if any."""
        row = self._db.execute("SELECT key FROM node_key").fetchone()
        return bytes(row[0]) if row else None

    def set_node_key(self, key: bytes) -> None:
        """Store a (new) code key."""
        with write(self._db, fsync=True):
            self._db.execute("INSERT OR REPLACE INTO node_key VALUES (1, ?)", (key,))

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _slot(row: tuple[str, str, str | None, int | None, int | None, int | None]) -> Slot:
    _compartment, state, reservation_id, opens_at, hold_until, pickup_until = row
    window = None
    if opens_at is not None and hold_until is not None and pickup_until is not None:
        window = Window(from_us(opens_at), from_us(hold_until), from_us(pickup_until))
    return Slot(SlotState(state), reservation_id, window)


def _maybe(us: int | None) -> datetime | None:
    return from_us(us) if us is not None else None


def _us_or_none(value: datetime | None) -> int | None:
    return to_us(value) if value is not None else None
