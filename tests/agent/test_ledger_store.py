"""The ledger and the keypad's memory survive a restart of the agent (a reopened SQLite file)."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from node_agent.keypad import Keypad, KeypadRefusal, KeypadState, grants
from node_agent.ledger import Ledger, SlotState, Window
from node_agent.ledger_store import LedgerStore
from schemas.codes import CodePurpose, node_key, offline_code

T0 = datetime(2026, 11, 24, 12, 0, 0, 250_000, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1), T0 + timedelta(days=2))


def test_ledger_round_trips_and_new_compartments_start_free(tmp_path: Path) -> None:
    ledger = Ledger.empty(["A1", "A2"]).reserve("r1", "A1", WINDOW, T0).ledger
    ledger = ledger.reserve("r2", "A2", WINDOW, T0).ledger.deposit("r2", T0 + timedelta(minutes=1)).ledger
    store = LedgerStore(tmp_path / "ledger.sqlite3")
    store.save(ledger)
    store.close()
    reopened = LedgerStore(tmp_path / "ledger.sqlite3")
    loaded = reopened.load(["A1", "A2", "B1"])
    assert loaded.slots["A1"] == ledger.slots["A1"] and loaded.slots["A2"] == ledger.slots["A2"]
    assert loaded.slots["A2"].state is SlotState.OCCUPIED and loaded.slots["A2"].window == WINDOW
    assert loaded.slots["B1"].state is SlotState.FREE
    reopened.close()


def same(a: KeypadState, b: KeypadState) -> bool:
    return (dict(a.used), dict(a.scopes)) == (dict(b.used), dict(b.scopes))


def test_used_codes_and_scope_locks_survive_a_restart(tmp_path: Path) -> None:
    key = node_key(b"secret", "node-1")
    ledger = Ledger.empty(["A1"]).reserve("r1", "A1", WINDOW, T0).ledger
    code = offline_code(key, CodePurpose.DEPOSIT, "node-1", "A1", "r1", WINDOW.opens_at, WINDOW.hold_until)
    other = "1" if code[0] != "1" else "2"
    pad = Keypad(key, "node-1", max_wrong=3)
    assert pad.enter(code, grants(ledger), T0).grant is not None
    pad.enter(f"{other}1111111", grants(ledger), T0)
    for attempt in ("3333333", "4444444", "5555555"):  # three wrong codes of the code's own scope: locked
        locked = pad.enter(f"{code[0]}{attempt}", grants(ledger), T0)
    assert locked.locked_until == T0 + timedelta(seconds=30)
    store = LedgerStore(tmp_path / "ledger.sqlite3")
    store.save_keypad(pad.snapshot())
    store.set_node_key(key)
    store.close()

    reopened = LedgerStore(tmp_path / "ledger.sqlite3")
    assert reopened.node_key() == key
    restarted = Keypad(key, "node-1", max_wrong=3)
    restarted.restore(reopened.load_keypad())
    assert same(restarted.snapshot(), pad.snapshot())
    assert restarted.enter(code, grants(ledger), T0).refused is KeypadRefusal.LOCKED  # still locked after restart
    after = T0 + timedelta(seconds=30)
    assert restarted.enter(code, grants(ledger), after).refused is KeypadRefusal.USED  # a replay after restart
    assert restarted.locked_until(code, after) == after + timedelta(minutes=1)  # and it doubled the lock
    again = restarted.enter(f"{other}2222222", grants(ledger), after)  # the second wrong code of the other scope
    assert not again.locked_now
    reopened.save_keypad(restarted.snapshot())
    assert same(reopened.load_keypad(), restarted.snapshot())
    reopened.close()


def test_the_whole_keypad_lock_of_an_earlier_version_is_dropped_at_start(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE keypad_wrong (at INTEGER NOT NULL)")
        old.execute("CREATE TABLE keypad_lock (id INTEGER PRIMARY KEY CHECK (id = 1), locked_until INTEGER)")
        old.execute("INSERT INTO keypad_lock VALUES (1, 1)")
    old.close()
    store = LedgerStore(path)
    assert store.load_keypad() == KeypadState()
    store.close()
