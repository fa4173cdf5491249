"""The swap queue's store on SQLite and PostgreSQL: technician keys kept as hashes, work orders and their history."""

from datetime import UTC, datetime

import sqlalchemy as sa

from controller.store.fieldwork import FieldStore, order_from_dict, order_to_dict, technician_keys
from controller.store.reservations import ReservationStore
from controller.swapqueue import (
    AlertNotice,
    GeoPoint,
    Severity,
    Technician,
    TelemetrySample,
    VerifyPolicy,
    WorkOrderBook,
)

ANA = Technician("ana", GeoPoint(52.5, 13.4), 6)


def test_a_technician_key_is_stored_as_a_hash_and_stops_working_when_revoked(store_url: str) -> None:
    store = ReservationStore(store_url)
    field = FieldStore(store.engine)
    token = field.create_key(ANA, datetime.now(UTC))
    key = field.authenticate(token)
    assert key is not None and key.technician_id == "ana" and token.startswith("lftech_")
    with store.engine.connect() as db:
        [row] = db.execute(sa.select(technician_keys)).all()
    assert token.rsplit("_", 1)[1] not in str(tuple(row))  # only the hash
    assert field.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert field.technicians() == [ANA]

    moved = Technician("ana", GeoPoint(48.1, 11.6), 3)
    second = field.create_key(moved, datetime.now(UTC))  # a new phone: a second key, her start moved
    assert field.technicians() == [moved]
    assert field.revoke_key(key.key_id) and field.authenticate(token) is None
    assert field.authenticate(second) is not None and field.technicians() == [moved]
    store.close()


def test_work_orders_and_every_change_survive_a_restart(store_url: str) -> None:
    book = WorkOrderBook(VerifyPolicy(healthy_for_s=60))
    alert = AlertNotice("battery_swap:n1", "battery_swap", "n1", "centre", Severity.CRITICAL, 2.5, 1000.0)
    events = book.on_alert(alert) + book.assign("wo-battery_swap:n1", "ana", 1100.0)
    events += book.observe(TelemetrySample("n1", 1200.0, 18.0, 400, charging=False))
    events += book.observe(TelemetrySample("n1", 1300.0, 96.0, 0, charging=False))
    store = ReservationStore(store_url)
    FieldStore(store.engine).save(events, {"wo-battery_swap:n1": "charge 18% at or below the 20% floor"})
    store.close()

    reopened = ReservationStore(store_url)
    field = FieldStore(reopened.engine)
    [stored] = field.orders()
    assert stored.order == book.get("wo-battery_swap:n1") and stored.summary.startswith("charge 18%")
    assert [e.kind for e in field.history("wo-battery_swap:n1")] == [
        "created",
        "assigned",
        "fix_seen",
        "health_started",
    ]
    assert order_from_dict(order_to_dict(stored.order)) == stored.order
    reopened.close()
