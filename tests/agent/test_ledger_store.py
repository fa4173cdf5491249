"""The ledger and the keypad's memory survive a restart of the agent (a reopened SQLite file)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from node_agent.keypad import Keypad, KeypadRefusal, grants
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


def test_used_codes_and_lockout_survive_a_restart(tmp_path: Path) -> None:
    key = node_key(b"secret", "node-1")
    ledger = Ledger.empty(["A1"]).reserve("r1", "A1", WINDOW, T0).ledger
    code = offline_code(key, CodePurpose.DEPOSIT, "node-1", "A1", "r1", WINDOW.opens_at, WINDOW.hold_until)
    pad = Keypad(key, "node-1", max_wrong=3)
    assert pad.enter(code, grants(ledger), T0).grant is not None
    pad.enter("11111111", grants(ledger), T0)
    store = LedgerStore(tmp_path / "ledger.sqlite3")
    store.save_keypad(pad.snapshot())
    store.set_node_key(key)
    store.close()

    reopened = LedgerStore(tmp_path / "ledger.sqlite3")
    assert reopened.node_key() == key
    restarted = Keypad(key, "node-1", max_wrong=3)
    restarted.restore(reopened.load_keypad())
    assert restarted.enter(code, grants(ledger), T0).refused is KeypadRefusal.USED  # replay after restart
    locked = restarted.enter("22222222", grants(ledger), T0)  # third wrong attempt, one before the restart
    assert locked.locked_now
    reopened.save_keypad(restarted.snapshot())
    assert reopened.load_keypad().locked_until == T0 + timedelta(minutes=15)
    reopened.close()
