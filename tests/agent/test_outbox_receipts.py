"""The outbox with delivery receipts: a PUBACKed item waits for a receipt, is sent again on every new connection, and
never makes the outbox grow past its bound; an outbox that never saw a receipt (or an old file) behaves as before."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.outbox import Outbox

BOOT = 7


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outbox.sqlite3"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    store = Outbox(path, capacity=10)
    yield store
    store.close()


def put(outbox: Outbox, seq: int, *, droppable: bool = True, boot: int = BOOT) -> None:
    kind = "t" if droppable else "e"
    outbox.put(kind, f"{kind}{seq}".encode(), droppable=droppable, key=(boot, seq))


def held(outbox: Outbox) -> list[bytes]:
    return [i.payload for i in outbox.peek(1000)]


def send(outbox: Outbox, limit: int = 1000) -> list[bytes]:
    """Publish what this connection has not sent yet; the broker acknowledges all of it."""
    items = outbox.peek(limit, sending=True)
    outbox.ack(i.id for i in items)
    return [i.payload for i in items]


def test_without_a_receipt_ever_an_acknowledged_item_leaves_at_once(outbox: Outbox) -> None:
    put(outbox, 0)
    put(outbox, 1, droppable=False)
    assert send(outbox) == [b"t0", b"e1"]
    assert not outbox.receipts
    assert held(outbox) == [] and len(outbox) == 0


def test_after_the_first_receipt_an_acknowledged_item_waits_for_one_and_is_sent_again_on_reconnect(
    outbox: Outbox,
) -> None:
    assert outbox.confirm(BOOT, []) == 0  # any receipt switches the outbox over
    for seq in range(3):
        put(outbox, seq)
    assert send(outbox) == [b"t0", b"t1", b"t2"]
    assert held(outbox) == [b"t0", b"t1", b"t2"]  # PUBACKed, not stored yet
    assert (len(outbox), outbox.unconfirmed) == (0, 3)
    assert send(outbox) == []  # nothing new on this connection
    put(outbox, 3, droppable=False)
    assert send(outbox) == [b"e3"]

    outbox.rewind()  # a new connection: everything uncovered again, oldest first, then what is new
    put(outbox, 4)
    assert (len(outbox), outbox.unconfirmed) == (1, 4)
    assert send(outbox, 2) == [b"t0", b"t1"]
    assert send(outbox) == [b"t2", b"e3", b"t4"]

    assert outbox.confirm(BOOT, [(0, 1), (3, 3)]) == 3
    assert outbox.confirm(BOOT + 1, [(2, 2)]) == 0  # another boot's seq 2 is not this one
    assert held(outbox) == [b"t2", b"t4"]
    assert (len(outbox), outbox.unconfirmed) == (0, 2)
    outbox.rewind()
    assert send(outbox) == [b"t2", b"t4"]


def test_a_receipt_also_removes_what_was_not_sent_yet(outbox: Outbox) -> None:
    put(outbox, 0)
    put(outbox, 1)
    assert outbox.confirm(BOOT, [(1, 5)]) == 1  # e.g. the controller stored a copy sent before a crash
    assert held(outbox) == [b"t0"]
    assert (len(outbox), outbox.unconfirmed) == (1, 0)


def test_the_switch_to_receipts_survives_a_restart_and_so_do_sent_items(path: Path) -> None:
    outbox = Outbox(path, 10)
    outbox.confirm(BOOT, [(100, 100)])
    put(outbox, 0)
    send(outbox)
    outbox.close()

    outbox = Outbox(path, 10)
    try:
        assert outbox.receipts and outbox.unconfirmed == 1
        assert send(outbox) == [b"t0"]  # a new process sends it again
        assert held(outbox) == [b"t0"]
    finally:
        outbox.close()


def test_when_full_the_oldest_unconfirmed_items_go_first_whatever_their_kind_and_are_counted_apart(
    outbox: Outbox,
) -> None:
    outbox.capacity = 4
    outbox.confirm(BOOT, [])
    put(outbox, 0, droppable=False)
    put(outbox, 1)
    send(outbox)  # both PUBACKed, neither receipted
    put(outbox, 2)
    put(outbox, 3, droppable=False)
    put(outbox, 4)  # full: the oldest sent item, an event the broker took, makes room
    assert held(outbox) == [b"t1", b"t2", b"e3", b"t4"]
    put(outbox, 5)
    assert held(outbox) == [b"t2", b"e3", b"t4", b"t5"]
    assert outbox.take_unconfirmed_evicted() == 2
    assert outbox.take_unconfirmed_evicted() == 0
    assert outbox.take_dropped() == 0
    put(outbox, 6)  # none sent left: the oldest unsent telemetry is dropped, as before
    assert held(outbox) == [b"e3", b"t4", b"t5", b"t6"]
    assert outbox.take_dropped() == 1


def test_a_controller_that_never_answers_cannot_grow_the_outbox(outbox: Outbox) -> None:
    outbox.capacity = 4
    outbox.confirm(BOOT, [])
    for seq in range(50):
        put(outbox, seq, droppable=seq % 3 != 0)
        send(outbox)  # the broker takes everything; no receipt ever comes
        if seq % 5 == 4:
            outbox.rewind()  # and reconnects now and then
        assert len(outbox) + outbox.unconfirmed <= outbox.capacity
    assert held(outbox) == [b"e45", b"t46", b"t47", b"e48", b"t49"][-outbox.capacity :]
    assert outbox.take_dropped() == 0  # every eviction was of something the broker had taken
    assert outbox.take_unconfirmed_evicted() == 50 - outbox.capacity


def test_an_outbox_from_before_receipts_is_migrated_and_its_items_leave_at_their_puback(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE item (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
                           qos INTEGER NOT NULL, retain INTEGER NOT NULL, droppable INTEGER NOT NULL);
        CREATE INDEX item_droppable ON item (id) WHERE droppable;
        CREATE TABLE dropped (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
        INSERT INTO dropped VALUES (1, 2);
        INSERT INTO item (topic, payload, qos, retain, droppable)
        VALUES ('e', CAST('old-e' AS BLOB), 1, 0, 0), ('t', CAST('old-t' AS BLOB), 1, 0, 1);
        """
    )
    old.close()
    path.chmod(0o600)

    outbox = Outbox(path, 10)
    try:
        assert held(outbox) == [b"old-e", b"old-t"] and outbox.take_dropped() == 2
        outbox.confirm(BOOT, [])
        put(outbox, 0)
        assert send(outbox) == [b"old-e", b"old-t", b"t0"]
        assert held(outbox) == [b"t0"]  # keyless items cannot be receipted: they left at the PUBACK
    finally:
        outbox.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(item)")}
    assert {"boot_id", "seq", "sent"} <= columns
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "dropped" not in tables  # its count moved into the counter table
