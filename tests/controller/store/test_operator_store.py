"""Operator keys and maintenance flags on SQLite and on a real PostgreSQL."""

from datetime import UTC, datetime, timedelta

from controller.store.operators import Maintenance, OperatorStore, issue_operator_key
from controller.store.reservations import ReservationStore

T0 = datetime(2026, 11, 25, 9, 30, 0, 250_000, tzinfo=UTC)


def test_an_operator_key_authenticates_until_revoked_and_only_as_itself(store_url: str) -> None:
    token = issue_operator_key(store_url, "alice")
    store = ReservationStore(store_url)
    operators = OperatorStore(store.engine)
    key = operators.authenticate(token)
    assert key is not None and key.operator == "alice"
    assert token.startswith("lfop_") and token.split("_")[1] == key.key_id
    key_id, secret = token.split("_", 2)[1:]
    assert operators.authenticate(f"lfop_{key_id}_{secret}x") is None  # wrong secret
    assert operators.authenticate(f"lf_{key_id}_{secret}") is None  # a partner-shaped token is not an operator's
    assert store.authenticate(token) is None  # nor is an operator's token a partner's
    partner_token = store.create_api_key("parcelco", {"centre"}, T0)
    assert operators.authenticate(partner_token) is None
    assert operators.revoke_key(key.key_id) and not operators.revoke_key("nope")
    assert operators.authenticate(token) is None
    store.close()


def test_maintenance_flags_persist_and_clear(store_url: str) -> None:
    store = ReservationStore(store_url)
    operators = OperatorStore(store.engine)
    operators.set_maintenance("node-1", Maintenance("door B2 sticks, ticket 42", T0, "alice"))
    operators.set_maintenance("node-2", Maintenance("battery swap", T0, "bob"))
    operators.set_maintenance("node-1", Maintenance("lock relay replaced", T0 + timedelta(hours=1), "carol"))
    store.close()

    reopened = ReservationStore(store_url)
    operators = OperatorStore(reopened.engine)
    assert operators.maintenance() == {
        "node-1": Maintenance("lock relay replaced", T0 + timedelta(hours=1), "carol"),
        "node-2": Maintenance("battery swap", T0, "bob"),
    }
    assert operators.clear_maintenance("node-2") and not operators.clear_maintenance("node-2")
    assert set(operators.maintenance()) == {"node-1"}
    reopened.close()
