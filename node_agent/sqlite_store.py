"""What the agent's SQLite stores share: how a database file is opened and how a write transaction runs."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.private_files import private_dir, private_file


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating parents and tables) a WAL-mode database in autocommit mode.

    The directory is created 0700 and the file 0600 (they hold the node's key); wider modes on existing ones are
    logged. Transactions are opened explicitly by :func:`write`. The agent builds its stores on one thread and uses
    them on its event loop thread (one at a time), hence ``check_same_thread=False``.
    """
    private_dir(path.parent)
    private_file(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


@contextmanager
def write(db: sqlite3.Connection, *, fsync: bool) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE … COMMIT`` transaction, rolled back on error; ``fsync`` makes it durable on return."""
    db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime (how the agent's stores keep time)."""
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the agent's stores need an aware (UTC) time")
    return (value - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Inverse of :func:`to_us`, in UTC."""
    return _EPOCH + us * _US
