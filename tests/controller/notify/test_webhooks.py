"""Webhooks: signed, delivered to a real HTTP endpoint, retried with backoff after a failure, kept across restarts."""

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.fleet.registry import Fleet
from controller.metrics import Metrics
from controller.notify.webhooks import MAX_ATTEMPTS, WebhookSender, backoff, sign, verify
from controller.store.reservations import ReservationStore
from tests.harness.webhook_receiver import WebhookReceiver

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def test_signatures_verify_only_for_the_same_body_secret_and_a_recent_time() -> None:
    header = sign("s3cret", 1_000, b'{"a":1}')
    assert verify("s3cret", header, b'{"a":1}', now=1_100)
    assert not verify("s3cret", header, b'{"a":2}', now=1_100)
    assert not verify("other", header, b'{"a":1}', now=1_100)
    assert not verify("s3cret", header, b'{"a":1}', now=2_000)  # a replay long after
    assert not verify("s3cret", "garbage", b'{"a":1}', now=1_000)


def test_a_failed_delivery_is_retried_later_and_arrives_signed_once_accepted(tmp_path: Path) -> None:
    receiver = WebhookReceiver(fail_first=1)
    store = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    secret = store.set_webhook("parcelco", receiver.url)
    store.enqueue_webhook("parcelco", "r1:held:1-3", {"type": "reservation.held", "reservation_id": "r1"}, T0)
    now = [T0.timestamp()]
    sender = WebhookSender(store, Metrics(lambda: Fleet().counts(0)), clock=lambda: now[0], allow_private=True)
    try:
        assert sender.deliver_due() == 0  # the partner answered 500
        assert sender.deliver_due() == 0  # not due again yet: backing off
        assert len(receiver.received) == 1
        now[0] += 3  # past the first backoff (1 s +-20 %)
        assert sender.deliver_due() == 1
        assert sender.deliver_due() == 0  # delivered once, not again
        first, second = receiver.received
        assert first.body == second.body
        assert json.loads(second.body)["type"] == "reservation.held"
        assert second.headers["Lockerfleet-Event-Id"] == "r1:held:1-3"
        assert verify(secret, second.headers["Lockerfleet-Signature"], second.body, now=int(now[0]))
    finally:
        sender.stop()
        receiver.close()
        store.close()


def test_undelivered_webhooks_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = ReservationStore(url)
    store.set_webhook("parcelco", "http://127.0.0.1:9/unreachable")
    store.enqueue_webhook("parcelco", "r2:deposited:1-4", {"type": "reservation.deposited"}, T0)
    store.close()
    reopened = ReservationStore(url)
    [(_id, partner, event_id, body, attempts)] = reopened.due_webhooks(T0 + timedelta(seconds=1))
    assert (partner, event_id, json.loads(body), attempts) == (
        "parcelco",
        "r2:deposited:1-4",
        {"type": "reservation.deposited"},
        0,
    )
    reopened.close()


def test_retries_last_about_a_day_before_an_event_is_given_up() -> None:
    rng = random.Random(7)
    total = sum((backoff(attempt, rng) for attempt in range(MAX_ATTEMPTS - 1)), timedelta())
    assert timedelta(hours=18) <= total <= timedelta(hours=30)
