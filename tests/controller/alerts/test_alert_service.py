"""The alert thread on a real store: fed from ingested messages, ticked, stored with its announcements; a restart
repeats nothing and a store that refuses a write delays announcements without losing them."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from controller.alerting import service as service_module
from controller.alerting.service import AlertService
from controller.alerts import NodeInfo, parse_rules
from controller.store.alerts import AlertStore, Notice
from controller.store.reservations import ReservationStore
from schemas import StatusBirth
from tests import samples
from tests.harness.mqtt import wait_until

RULES = parse_rules(
    """
[defaults.operations]
offline_after_s = 3600
offline_for_s = 0
offline_keep_firing_for_s = 0
stale_after_s = 3600
"""
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    reservations = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield AlertStore(reservations)
    reservations.close()


class Harness:
    """A started service that records what it stored and counts its ticks."""

    def __init__(self, store: AlertStore, clock: Clock, maintenance: set[str] | None = None) -> None:
        self.stored: list[Notice] = []
        self.ticks = 0
        held = maintenance or set()
        self.service = AlertService.restored(
            RULES, store, clock=clock, eval_s=0.01, in_maintenance=held.__contains__, on_stored=self.stored.extend
        )
        self.service.tick_seconds = self._ticked

    def _ticked(self, _s: float) -> None:
        self.ticks += 1

    def settle(self) -> None:
        """Wait until the queue is empty and two more ticks ran."""
        start = self.ticks
        assert wait_until(lambda: self.service.waiting == 0 and self.ticks >= start + 2, 10)

    def keys(self) -> list[str]:
        return [n.delivery_key for n in self.stored]


def rebirth(node: str, boot: int) -> StatusBirth:
    return samples.birth(node, boot_id=boot).model_copy(update={"site": "s1"})


def test_a_rule_fires_once_and_a_restart_mid_episode_repeats_nothing(store: AlertStore) -> None:
    clock = Clock()
    first = Harness(store, clock)
    first.service.start()
    first.service.observe(rebirth("n1", 3), clock.now)
    first.service.observe(samples.death("n1", boot_id=3).model_copy(update={"seq": 1}), clock.now)
    assert wait_until(lambda: first.keys() == ["node_offline:n1#1:raised"], 10), first.keys()
    first.service.acknowledge("node_offline:n1", "alice")
    assert first.keys()[-1] == "node_offline:n1#1:acknowledged"
    first.service.stop()

    second = Harness(store, clock)
    second.service.register([(NodeInfo("n1", "s1"), False)])
    second.service.start()
    second.settle()
    assert second.stored == []  # still firing, already announced
    [record] = second.service.records()
    assert (record.state, record.episode, record.acked_by) == ("firing", 1, "alice")

    second.service.observe(rebirth("n1", 4), clock.now)
    assert wait_until(lambda: second.keys() == ["node_offline:n1#1:resolved"], 10), second.keys()
    resolved = second.stored[0].body
    assert resolved["time_to_ack_s"] == 0.0 and resolved["time_to_resolve_s"] == 0.0
    second.service.stop()
    assert store.delivered_keys() == {f"node_offline:n1#1:{t}" for t in ("raised", "acknowledged", "resolved")}


def test_a_refused_commit_delays_the_announcement_and_loses_nothing(
    store: AlertStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = store.commit
    refusals: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> list[Notice]:
        if args[1] and not refusals:  # the first commit with an announcement fails
            refusals.append(1)
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit", flaky)
    clock = Clock()
    harness = Harness(store, clock)
    harness.service.start()
    harness.service.observe(rebirth("n1", 3), clock.now)
    harness.service.observe(samples.death("n1", boot_id=3).model_copy(update={"seq": 1}), clock.now)
    assert wait_until(lambda: harness.keys() == ["node_offline:n1#1:raised"], 15), harness.keys()
    assert refusals == [1]
    harness.service.stop()


def test_maintenance_holds_the_rules_it_names(store: AlertStore) -> None:
    clock = Clock()
    harness = Harness(store, clock, maintenance={"n1"})
    harness.service.start()
    harness.service.observe(rebirth("n1", 3), clock.now)
    harness.service.observe(samples.death("n1", boot_id=3).model_copy(update={"seq": 1}), clock.now)
    harness.settle()
    assert harness.stored == []  # node_offline is quiet for a node in maintenance
    harness.service.set_maintenance("n1", False)
    assert wait_until(lambda: harness.keys() == ["node_offline:n1#1:raised"], 10), harness.keys()
    harness.service.stop()


def test_a_burst_is_taken_in_one_batch_not_one_wake_up_per_message(
    store: AlertStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a telemetry flood the alert thread waits a moment after the first input, so the rest of the burst comes
    with it (waking per message cost more CPU than evaluating)."""
    monkeypatch.setattr(service_module, "GATHER_S", 2.0)
    svc = AlertService.restored(
        RULES, store, clock=Clock(), eval_s=1.0, in_maintenance=lambda _n: False, on_stored=lambda _n: None
    )
    taken: list[int] = []
    consumer = threading.Thread(target=lambda: taken.append(len(svc._take(10.0))))
    consumer.start()
    svc.observe(samples.telemetry("n1", seq=0), 0.0)
    wait_until(lambda: svc.waiting == 0, 10)  # the first one is taken: the thread gathers
    for seq in range(1, 50):
        svc.observe(samples.telemetry("n1", seq=seq), 0.0)
    consumer.join(10)
    assert taken == [50]
