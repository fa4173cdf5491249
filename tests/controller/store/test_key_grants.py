"""Partner keys keep the priorities and the per-site quota they were issued with, on SQLite and PostgreSQL; keys
from before revision 0004 may use priority 0 only; the quota counts what is asked for or held, and still empty."""

from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from controller.store import migrations
from controller.store.reservations import ReservationState, ReservationStore
from tests.controller.store.test_reservation_store import reservation

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_key_keeps_its_priorities_and_quota(store_url: str) -> None:
    store = ReservationStore(store_url)
    plain = store.authenticate(store.create_api_key("parcelco", {"centre"}, T0))
    granted = store.authenticate(
        store.create_api_key("freshco", {"centre"}, T0, priorities=[2, 0, 2], quota_per_site=7)
    )
    assert plain is not None and plain.priorities == {0} and plain.quota_per_site is None
    assert granted is not None and granted.priorities == {0, 2} and granted.quota_per_site == 7
    store.close()


def test_a_key_issued_before_grants_existed_may_use_priority_zero_only(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:  # a store of the previous release, with one key in it
        command.upgrade(migrations.alembic_config(connection), "0003")
        connection.execute(
            sa.text(
                "INSERT INTO api_keys (key_id, partner, secret_sha256, sites, created_at, revoked) "
                "VALUES ('0123456789abcdef', 'oldco', :sha, 'centre', :at, false)"
            ),
            {"sha": "0" * 64, "at": T0},
        )
    engine.dispose()
    store = ReservationStore(store_url)
    with store.engine.connect() as db:
        row = db.execute(sa.text("SELECT priorities, quota_per_site FROM api_keys")).one()
    assert tuple(row) == ("0", None)
    store.close()


def test_the_quota_counts_waitlisted_pending_and_held_of_one_partner_at_one_site(store_url: str) -> None:
    store = ReservationStore(store_url)
    states = list(ReservationState)
    for i, state in enumerate(states):
        store.insert(replace(reservation(f"r{i}", compartment=f"C{i}"), state=state))
    store.insert(replace(reservation("other-site", compartment="X1"), site_id="north"))
    store.insert(replace(reservation("other-partner", compartment="X2"), partner="otherco"))
    assert store.holding("parcelco", "centre") == 3  # waitlisted, pending, held; not deposited or ended
    assert store.holding("parcelco", "north") == 1 and store.holding("otherco", "centre") == 1
    store.close()
