"""Alert state and the announcement outbox in the controller's store, on SQLite and on a real PostgreSQL."""

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from controller.store.alerts import AlertStore, Notice, StateChanges, event_id
from controller.store.reservations import ReservationStore, webhooks


@pytest.fixture
def store(store_url: str) -> Iterator[AlertStore]:
    reservations = ReservationStore(store_url)
    yield AlertStore(reservations)
    reservations.close()


def notice(key: str, alert: str = "node_offline:n1") -> Notice:
    return Notice(key, alert, {"delivery_key": key, "alert_id": alert})


def queued_webhooks(store: AlertStore) -> list[tuple[str, str]]:
    with store.engine.connect() as db:
        return [(r.partner, r.event_id) for r in db.execute(sa.select(webhooks.c.partner, webhooks.c.event_id))]


def test_state_and_announcements_round_trip_and_a_key_is_stored_once(store: AlertStore) -> None:
    store.set_operator_webhook("ops", "http://127.0.0.1:9/hook")
    changes = StateChanges(records={"node_offline:n1": {"id": "node_offline:n1", "episode": 1}})
    fresh = store.commit(changes, [notice("node_offline:n1#1:raised")], now=100.0)
    assert [n.delivery_key for n in fresh] == ["node_offline:n1#1:raised"]

    again = store.commit(StateChanges(), [notice("node_offline:n1#1:raised")], now=101.0)  # a repeat: nothing new
    assert again == []
    assert store.load(1) == {"version": 1, "records": [{"id": "node_offline:n1", "episode": 1}], "silences": []}
    assert [o.delivery_key for o in store.unpublished()] == ["node_offline:n1#1:raised"]
    assert queued_webhooks(store) == [("operator:ops", event_id("operator:ops", "node_offline:n1#1:raised"))]


def test_published_rows_leave_the_outbox_and_a_pruned_alert_forgets_its_keys(store: AlertStore) -> None:
    store.commit(StateChanges(records={"a:n1": {"id": "a:n1"}}), [notice("a:n1#1:raised", "a:n1")], now=1.0)
    [row] = store.unpublished()
    store.published([row.id], now=2.0)
    assert store.unpublished() == []
    assert store.delivered_keys() == {"a:n1#1:raised"}

    store.commit(StateChanges(dropped_records=["a:n1"]), [], now=3.0)
    assert store.load(1)["records"] == [] and store.delivered_keys() == set()


def test_silences_are_replaced_and_dropped(store: AlertStore) -> None:
    store.commit(StateChanges(silences={"s1": {"id": "s1", "ends_at": 10}}), [], now=1.0)
    store.commit(StateChanges(silences={"s1": {"id": "s1", "ends_at": 5}}), [], now=2.0)
    assert store.load(1)["silences"] == [{"id": "s1", "ends_at": 5}]
    store.commit(StateChanges(dropped_silences=["s1"]), [], now=3.0)
    assert store.load(1)["silences"] == []


def test_operator_endpoints_are_named_apart_from_partners(store: AlertStore) -> None:
    store.set_operator_webhook("ops", "http://a/hook")
    store.set_operator_webhook("night", "http://b/hook")
    assert store.operator_webhooks() == {"ops": "http://a/hook", "night": "http://b/hook"}
    assert store.remove_operator_webhook("night") and not store.remove_operator_webhook("night")
    store.commit(StateChanges(), [notice("k#1:raised")], now=1.0)
    [(partner, _event)] = queued_webhooks(store)
    assert partner == "operator:ops"
    with store.engine.connect() as db:
        body = db.execute(sa.select(webhooks.c.body)).scalar_one()
    assert json.loads(body)["delivery_key"] == "k#1:raised"
