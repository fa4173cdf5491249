"""The fleet registry in the controller's store, on SQLite and on a real PostgreSQL: saved records come back, two
controllers on one database share it, an older status never overwrites a newer one, and a registry file of an
earlier release is adopted with its rows."""

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.fleet.registry import Fleet, NodeRecord
from controller.store.fleet import FleetStore, adopt_sqlite_registry
from controller.store.reservations import ReservationStore
from schemas import encode
from tests import samples
from tests.harness.mqtt import wait_until

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id   TEXT PRIMARY KEY,
    birth     BLOB NOT NULL,
    boot_id   INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    online    INTEGER NOT NULL,
    last_seen REAL NOT NULL
);
"""
"""The table of the registry file the controller kept at ``--store-path`` before the registry moved into the store."""


def record(node_id: str = "node-1", boot_id: int = 3, seq: int = 0, online: bool = True) -> NodeRecord:
    return NodeRecord(samples.birth(node_id, boot_id), boot_id, seq, online, last_seen=1_790_000_000.25 + seq)


def write_old_registry(path: Path, rows: list[tuple[str, bytes, int, int, int, float]]) -> None:
    """A registry file as the earlier release left it (WAL journal, table ``nodes``)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?)", rows)


def old_row(r: NodeRecord) -> tuple[str, bytes, int, int, int, float]:
    return (r.node_id, encode(r.birth), r.boot_id, r.seq, int(r.online), r.last_seen)


@contextmanager
def fleet_store(url: str) -> Iterator[FleetStore]:
    """A fleet store as a controller opens it: on the reservation store's engine (its own pool, like a process)."""
    database = ReservationStore(url)
    store = FleetStore(database.engine)
    try:
        yield store
    finally:
        store.close()
        database.close()


def test_saved_records_come_back_after_a_reopen(store_url: str) -> None:
    with fleet_store(store_url) as store:
        store.save(record("node-1"))
        store.save(record("node-2", seq=4, online=False))
    with fleet_store(store_url) as reopened:
        assert sorted(reopened.load(), key=lambda r: r.node_id) == [
            record("node-1"),
            record("node-2", seq=4, online=False),
        ]


def test_queued_saves_keep_the_newest_status_of_each_node(store_url: str) -> None:
    with fleet_store(store_url) as store:
        for seq in (0, 5, 2):  # the late seq 2 must not win over 5
            store.save(record("node-1", seq=seq, online=seq == 0))
        for n in range(50):
            store.save(record(f"bulk-{n:02d}"))
        store.flush()
        stored = {r.node_id: r for r in store.load()}
    assert stored["node-1"] == record("node-1", seq=5, online=False)
    assert len(stored) == 51


def test_a_node_stored_by_one_controller_reaches_the_fleet_of_another(store_url: str) -> None:
    with fleet_store(store_url) as first, fleet_store(store_url) as second:
        second_fleet = Fleet(second.load())
        first.save(record("node-1"))
        first.flush()
        assert second_fleet.get("node-1") is None
        assert second.refresh(second_fleet) == [record("node-1")]
        assert second_fleet.get("node-1") == record("node-1")
        assert second.refresh(second_fleet) == []  # nothing newer: nothing fetched again

        death = samples.death("node-1").model_copy(update={"seq": 7})  # heard here; the store still has the birth
        assert second_fleet.apply_status(death, 1_790_000_100.0) is not None
        assert second.refresh(second_fleet) == []
        stored_here = second_fleet.get("node-1")
        assert stored_here is not None and not stored_here.online and stored_here.seq == 7


def test_an_older_status_never_overwrites_a_newer_one_across_controllers(store_url: str) -> None:
    with fleet_store(store_url) as fast, fleet_store(store_url) as slow:
        fast.write([record("node-1", boot_id=4, seq=1, online=False)])
        slow.write([record("node-1", boot_id=4, seq=0), record("node-2", boot_id=9)])  # late: node-1 is older
        slow.write([record("node-1", boot_id=3, seq=99)])  # an earlier boot, however high its seq
        stored = {r.node_id: r for r in fast.load()}
    assert stored == {"node-1": record("node-1", boot_id=4, seq=1, online=False), "node-2": record("node-2", boot_id=9)}


def test_an_old_registry_file_is_adopted_with_its_rows_once(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old_file = tmp_path / "lockerfleet.sqlite3"
    write_old_registry(
        old_file,
        [
            old_row(record("node-1", seq=2)),
            old_row(record("node-2", seq=0, online=False)),
            old_row(record("node-3", boot_id=1, seq=5)),
            ("node-bad", b'{"not": "a birth"}', 1, 0, 1, 0.0),
        ],
    )
    with fleet_store(store_url) as store:
        store.write([record("node-3", boot_id=2, seq=0)])  # the store already knows a newer boot of node-3
        with caplog.at_level(logging.INFO, logger="controller.store.fleet"):
            adoption = adopt_sqlite_registry(old_file, store)
        assert adoption is not None
        assert (adoption.found, adoption.imported, adoption.unreadable) == (4, 2, 1)
        assert adoption.renamed_to == tmp_path / "lockerfleet.sqlite3.adopted"
        assert not old_file.exists() and adoption.renamed_to.is_file()
        assert "adopted the fleet registry file" in caplog.text and "imported=2" in caplog.text
        stored = {r.node_id: r for r in store.load()}
        assert stored == {
            "node-1": record("node-1", seq=2),
            "node-2": record("node-2", seq=0, online=False),
            "node-3": record("node-3", boot_id=2, seq=0),
        }
        assert adopt_sqlite_registry(old_file, store) is None  # once: the next start finds nothing to adopt
    with closing(sqlite3.connect(adoption.renamed_to)) as kept:  # nothing lost: the file keeps every row
        assert kept.execute("SELECT count(*) FROM nodes").fetchone() == (4,)


def test_a_file_that_is_not_an_old_registry_is_left_as_it_is(store_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE something (x INTEGER)")
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with fleet_store(store_url) as store:
        assert adopt_sqlite_registry(other, store) is None
        assert adopt_sqlite_registry(garbage, store) is None
        assert adopt_sqlite_registry(tmp_path / "missing.sqlite3", store) is None
        assert store.load() == []
    assert other.is_file() and garbage.read_bytes() == b"not a database at all" * 100


def test_a_database_that_refuses_writes_is_logged_and_close_does_not_hang(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'store.sqlite3'}")
    store = FleetStore(unreachable)
    with caplog.at_level(logging.WARNING, logger="controller.store.fleet"):
        store.save(record("node-1"))
        assert wait_until(lambda: "fleet registry write failed nodes=1" in caplog.text, 10)
        store.save(record("node-1", seq=1))  # queued behind the failed one, newest kept
        store.close()
    assert "fleet registry not written at close nodes=1" in caplog.text
    unreachable.dispose()
