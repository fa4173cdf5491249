"""An unreachable webhook endpoint is one episode in the log, not a warning per attempt (issue 13, point 10)."""

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.fleet.registry import Fleet
from controller.metrics import Metrics
from controller.notify.webhooks import MAX_ATTEMPTS, SUMMARY_EVERY_S, WebhookSender
from controller.store.reservations import ReservationStore
from tests.harness.webhook_receiver import WebhookReceiver

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
STEP_S = 30.0


def test_a_day_of_failures_is_a_few_lines_naming_events_and_reservations(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    store.set_webhook("parcelco", "http://127.0.0.1:9/unreachable")  # nothing listens on the discard port
    for n in (1, 2, 3):
        body = {"type": "reservation.held", "reservation": {"reservation_id": f"res-{n}"}}
        store.enqueue_webhook("parcelco", f"res-{n}:held:1-{n}", body, T0)
    now = [T0.timestamp()]
    sender = WebhookSender(store, Metrics(lambda: Fleet().counts(0)), clock=lambda: now[0], allow_private=True)
    caplog.set_level(logging.INFO, logger="controller.notify.webhooks")
    try:
        while store.due_webhooks(datetime(9998, 1, 1, tzinfo=UTC)):  # until every event is given up (~a day)
            sender.deliver_due()
            now[0] += STEP_S
        sender.deliver_due()
        now[0] += SUMMARY_EVERY_S
        sender.deliver_due()  # the last summary is due even though nothing is attempted any more
        failing = [r.getMessage() for r in caplog.records]
        assert failing[0].startswith("webhook deliveries failing partner=parcelco url=http://127.0.0.1:9/unreachable")
        assert "event=res-1:held:1-1 reservation=res-1" in failing[0] and "action=check the partner" in failing[0]
        summaries = failing[1:]
        attempts = 3 * MAX_ATTEMPTS
        assert 1 <= len(summaries) <= attempts // 2  # one per 10-minute window with attempts, not one per attempt
        assert all(s.startswith("webhook deliveries still failing partner=parcelco") for s in summaries)
        assert sum(int(s.split("failed_attempts=")[1].split()[0]) for s in summaries) == attempts - 1
        reservations = summaries[0].split("reservations=")[1].split()[0]
        assert sorted(reservations.split(",")) == ["res-1", "res-2", "res-3"]
        given_up = [i for s in summaries for i in s.split("given_up_events=")[1].split()[0].split(",") if i != "-"]
        assert sorted(given_up) == ["res-1:held:1-1", "res-2:held:1-2", "res-3:held:1-3"]

        caplog.clear()
        receiver = WebhookReceiver()
        store.set_webhook("parcelco", receiver.url)
        store.enqueue_webhook("parcelco", "res-4:held:1-4", {"type": "reservation.held"}, T0)
        assert sender.deliver_due() == 1
        receiver.close()
        [recovered] = [r.getMessage() for r in caplog.records]
        assert recovered.startswith("webhook deliveries working again partner=parcelco")
        assert f"failed_attempts={attempts} given_up=3" in recovered
    finally:
        sender.stop()
        store.close()
