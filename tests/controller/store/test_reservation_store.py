"""The reservation store on SQLite and on a real PostgreSQL: the same behaviour, and the database itself refuses
a double booking."""

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.store.reservations import (
    DoubleBookingError,
    Reservation,
    ReservationState,
    ReservationStore,
    StoredResponse,
)

T0 = datetime(2026, 11, 24, 12, 0, 0, 123_456, tzinfo=UTC)


def reservation(rid: str, compartment: str = "A1", state: ReservationState = ReservationState.PENDING) -> Reservation:
    return Reservation(
        reservation_id=rid,
        partner="parcelco",
        site_id="centre",
        size="M",
        parcel_ref=f"PARCEL-{rid}",
        priority=0,
        state=state,
        node_id="node-1",
        compartment=compartment,
        hold_until=T0 + timedelta(hours=1),
        pickup_until=T0 + timedelta(days=2),
        created_at=T0,
        updated_at=T0,
    )


def test_reservations_survive_a_restart_exactly(store_url: str) -> None:
    store = ReservationStore(store_url)
    store.insert(reservation("r1"))
    store.close()
    reopened = ReservationStore(store_url)
    assert reopened.get("r1") == reservation("r1")
    assert reopened.get("nope") is None
    reopened.close()


def test_the_database_refuses_a_second_active_booking_of_a_compartment(store_url: str) -> None:
    store = ReservationStore(store_url)
    store.insert(reservation("r1", "A1"))
    with pytest.raises(DoubleBookingError, match="node-1/A1"):
        store.insert(reservation("r2", "A1"))
    store.set_state("r1", ReservationState.PICKED_UP, T0 + timedelta(hours=3))
    store.insert(reservation("r3", "A1"))  # free again once the first one ended
    assert [r.reservation_id for r in store.active()] == ["r3"]
    store.close()


def test_racing_inserts_for_one_compartment_book_it_once(store_url: str) -> None:
    store = ReservationStore(store_url)
    outcomes: list[str] = []

    def book(i: int) -> None:
        try:
            store.insert(reservation(f"race-{i}", "B1"))
            outcomes.append("booked")
        except DoubleBookingError:
            outcomes.append("refused")

    threads = [threading.Thread(target=book, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["booked"] + ["refused"] * 7
    store.close()


def test_api_keys_are_stored_hashed_and_scoped(store_url: str) -> None:
    store = ReservationStore(store_url)
    token = store.create_api_key("parcelco", {"centre", "north"}, T0)
    key = store.authenticate(token)
    assert key is not None and key.partner == "parcelco" and key.sites == {"centre", "north"}
    secret = token.split("_", 2)[2]
    with store.engine.connect() as db:
        stored = db.exec_driver_sql("SELECT secret_sha256 FROM api_keys").scalar_one()
    assert secret not in stored
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate("garbage") is None
    store.close()


def test_the_first_response_to_an_idempotency_key_is_the_answer_forever(store_url: str) -> None:
    store = ReservationStore(store_url)
    first = StoredResponse("fp-1", 201, {"reservation_id": "r1", "state": "pending"})
    second = StoredResponse("fp-1", 409, {"detail": "no capacity"})
    assert store.remember("parcelco", "key-1", first, T0) == first
    assert store.remember("parcelco", "key-1", second, T0) == first
    assert store.recall("other-partner", "key-1") is None  # keys are per partner
    store.close()


def test_audit_trail_keeps_order(store_url: str) -> None:
    store = ReservationStore(store_url)
    store.insert(reservation("r1"))
    store.audit("r1", "parcelco", "created", "site centre size M", T0)
    store.audit("r1", "node-1", "held", "A1", T0 + timedelta(seconds=1))
    assert store.trail("r1") == [("parcelco", "created", "site centre size M"), ("node-1", "held", "A1")]
    held = store.set_state("r1", ReservationState.HELD, T0 + timedelta(seconds=1))
    assert held == replace(reservation("r1"), state=ReservationState.HELD, updated_at=T0 + timedelta(seconds=1))
    store.close()
