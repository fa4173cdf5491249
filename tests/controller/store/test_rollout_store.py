"""The rollouts' tables on SQLite and PostgreSQL: documents replaced in place, commands kept with their attempt."""

from controller.store.reservations import ReservationStore
from controller.store.rollouts import RolloutStore, SentCommand, StoredRollout


def row(rollout_id: str, phase: str, created_at: float, nodes: int = 1) -> StoredRollout:
    return StoredRollout(rollout_id, "1.5.0", phase, created_at, {"engine": {"rollout_id": rollout_id, "n": nodes}})


def test_a_rollout_is_saved_with_its_commands_and_replaced_in_place(store_url: str) -> None:
    reservations = ReservationStore(store_url)
    store = RolloutStore(reservations.engine)
    sent = SentCommand("cmd-1", "ro-a", "n1", 1, False, 10.0)
    store.save(row("ro-a", "running", 5.0), 10.0, [sent])
    store.save(row("ro-b", "completed", 1.0), 11.0)
    store.save(row("ro-a", "aborted", 5.0, nodes=2), 12.0, [SentCommand("cmd-2", "ro-a", "n1", 2, True, 12.0)])

    assert store.load("ro-a") == {"engine": {"rollout_id": "ro-a", "n": 2}}
    assert store.load("ro-x") is None
    assert [d["engine"]["rollout_id"] for d in store.documents()] == ["ro-b", "ro-a"]  # oldest first
    assert [d["engine"]["rollout_id"] for d in store.documents(["aborted"])] == ["ro-a"]
    assert store.command("cmd-1") == sent
    assert [(c.command_id, c.attempt, c.rollback) for c in store.commands_of(["ro-a", "ro-b"])] == [
        ("cmd-1", 1, False),
        ("cmd-2", 2, True),
    ]
    assert store.commands_of([]) == []
    reservations.close()
