"""The demo keeps its operator and partner keys in its run directory (0600) and reuses them while the store accepts
them."""

import stat
from datetime import UTC, datetime
from pathlib import Path

from controller.devstack.demo_keys import demo_keys
from controller.settings import reservations_sqlite_url
from controller.store.operators import OperatorStore
from controller.store.reservations import ReservationStore

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SITES = {"centre", "north"}


def test_a_second_run_reuses_both_keys_and_they_are_kept_private(tmp_path: Path) -> None:
    url = reservations_sqlite_url(tmp_path / "controller" / "fleet.sqlite3")
    first = demo_keys(url, tmp_path, SITES, NOW)
    again = demo_keys(url, tmp_path, SITES, NOW)
    assert not first.operator.reused and not first.partner.reused
    assert again.operator.reused and again.partner.reused
    assert (again.operator.token, again.partner.token) == (first.operator.token, first.partner.token)
    assert first.operator.key_id == first.operator.token.split("_")[1]
    for kept in (first.operator.path, first.partner.path):
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    store = ReservationStore(url)
    try:
        assert OperatorStore(store.engine).authenticate(again.operator.token) is not None
        partner = store.authenticate(again.partner.token)
        assert partner is not None and partner.sites == SITES
    finally:
        store.close()


def test_a_revoked_or_foreign_key_is_replaced(tmp_path: Path) -> None:
    url = reservations_sqlite_url(tmp_path / "controller" / "fleet.sqlite3")
    first = demo_keys(url, tmp_path, SITES, NOW)
    store = ReservationStore(url)
    try:
        assert OperatorStore(store.engine).revoke_key(first.operator.key_id)
    finally:
        store.close()
    first.partner.path.write_text("not a key\n")
    again = demo_keys(url, tmp_path, SITES, NOW)
    assert not again.operator.reused and again.operator.token != first.operator.token
    assert not again.partner.reused and again.partner.token != first.partner.token
    assert first.operator.path.read_text().strip() == again.operator.token
    wider = demo_keys(url, tmp_path, SITES | {"harbour"}, NOW)  # a site added to the sites file
    assert not wider.partner.reused and wider.operator.reused
