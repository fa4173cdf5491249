"""A message handled again because the store was down is counted once: ingested, and as an edge transition.

The chaos test with PostgreSQL stopped (tests/chaos/test_postgres_stopped.py) found both counts tripled: the
delivery handler retries a ledger event while the store is unreachable, and each try counted it again.
"""

from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.commands.service import Commands
from controller.fleet.registry import Fleet
from controller.ingest.handler import Ingest
from controller.metrics import Metrics
from controller.reservations.service import Reservations
from controller.store.fleet import FleetStore
from controller.store.reservations import ReservationStore
from schemas import Channel, LedgerEvent, encode, topic
from tests import samples


class NoBroker:
    """Nothing is published in these tests."""

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        raise AssertionError(f"unexpected publish on {topic}")


def db_down() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_message_retried_after_the_store_failed_is_ingested_once(tmp_path: Path) -> None:
    fleet = Fleet()
    metrics = Metrics(lambda: fleet.counts(0))
    failures = [db_down()]

    def on_ledger(_event: LedgerEvent) -> None:
        if failures:
            raise failures.pop()

    store = FleetStore(sa.create_engine(f"sqlite:///{tmp_path / 'fleet.sqlite3'}"))
    ingest = Ingest(
        fleet, store, metrics, already_stored=lambda _k: False, on_result=lambda _r: None, on_ledger=on_ledger
    )
    where, payload = topic("node-1", Channel.EVENT), encode(samples.ledger_event())
    with pytest.raises(sa.exc.OperationalError):
        ingest.handle(where, payload)
    assert ingest.handle(where, payload).lines  # the retry, once the store answers
    assert sample(metrics, "lockerfleet_messages_ingested_total", kind="event") == 1


def test_a_ledger_event_applied_after_the_store_failed_counts_one_edge_transition(tmp_path: Path) -> None:
    store = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    metrics = Metrics(lambda: {})
    commands = Commands(NoBroker(), lambda: 0.0)
    reservations = Reservations(store, Fleet(), {}, commands, metrics=metrics, secret=b"s" * 32, clock=lambda: 0.0)
    failures = [db_down()]
    get = store.get

    def failing_get(reservation_id: str) -> object:
        if failures:
            raise failures.pop()
        return get(reservation_id)

    store.get = failing_get  # type: ignore[method-assign,assignment] # the store down for one call
    event = samples.ledger_event()
    with pytest.raises(sa.exc.OperationalError):
        reservations.on_ledger_event(event)
    reservations.on_ledger_event(event)
    assert sample(metrics, "lockerfleet_edge_transitions_total", transition="picked_up", via="code") == 1
    store.close()
