"""The alert publisher through a store outage: a warning that names the store, not a bug report, and no crash."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.alerting.publisher import AlertPublisher
from controller.store.alerts import AlertStore
from controller.store.reservations import ReservationStore
from tests.harness.mqtt import wait_until


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    reservations = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield AlertStore(reservations)
    reservations.close()


def test_an_unreadable_alert_outbox_is_a_store_warning_and_the_publisher_keeps_running(
    store: AlertStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.alerting.publisher")
    with store.engine.begin() as db:  # the store "goes away": its outbox table cannot be read
        db.execute(sa.text("ALTER TABLE alert_deliveries RENAME TO alert_deliveries_gone"))
    publisher = AlertPublisher(
        store, lambda _t, _p: None, lambda _l: None, connected=lambda: True, clock=lambda: 0.0, poll_s=0.05
    )
    publisher.start()
    try:
        assert wait_until(lambda: "alert outbox unreadable" in caplog.text, 5)
        assert publisher._thread.is_alive()
    finally:
        publisher.stop()
    assert "report this bug" not in caplog.text
    assert "action=check the controller store" in caplog.text
