"""Signed webhooks to courier partners: queued in the store, delivered by one thread, retried with backoff.

Every POST carries ``Lockerfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the
partner's webhook secret, and ``Lockerfleet-Event-Id``; a partner checks the signature and the age of ``t``, and
treats the event id as idempotent (a retry after a lost answer delivers the same event again).

Before every POST the target is checked again (:mod:`controller.notify.targets`): a URL whose host resolves to a
loopback, private, link-local or multicast address gets no request, unless the controller allows private targets.
Redirects are not followed. URLs are logged with their credentials masked.

Queued events are stored without the codes they carry; ``complete`` puts them back just before each POST.
"""

import hashlib
import hmac
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from controller.metrics import Metrics
from controller.notify.targets import WebhookTargetError, check_webhook_url
from controller.store.reservations import ReservationStore
from schemas.broker import redact_url

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""About a day of retries (1 s doubling up to 4 h, then every 4 h: ~24 h in all) before an event is given up."""
SUMMARY_EVERY_S = 600.0
"""While an endpoint keeps failing, at most one log line per this many seconds sums up its failures."""
LISTED = 5
"""Ids named in one log line; the rest are counted."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a partner does on receipt: the signature matches and is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    return abs(now - timestamp) <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), header)


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """Wait before the next attempt: doubling from 1 s up to 4 hours, with jitter."""
    return timedelta(seconds=min(2.0**attempts, 4 * 3600.0) * rng.uniform(0.8, 1.2))


class WebhookSender:
    """Delivers due webhooks every ``poll_s``; :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        store: ReservationStore,
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        poll_s: float = 0.5,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        allow_private: bool = False,
        complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._poll_s = poll_s
        self._allow_private = allow_private
        self._complete = complete
        self._timeout_s, self._transport = timeout_s, transport
        self._http: httpx.Client | None = None
        """Made at the first delivery (its TLS context costs tens of ms of CPU; most controllers never send one)."""
        self._stop = threading.Event()
        self._rng = random.Random()
        self._outages = Outages(clock)
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the delivery in progress; what is left is delivered after the next start."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._http is not None:
            self._http.close()

    def deliver_due(self) -> int:
        """Attempt every due delivery once; returns how many succeeded."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        delivered = 0
        for delivery_id, partner, event_id, body, attempts in self._store.due_webhooks(now):
            target = self._store.webhook_of(partner)
            if target is None:
                self._store.webhook_failed(delivery_id, "no webhook registered for the partner", None)
                continue
            url, secret = target
            payload = body.encode() if self._complete is None else json.dumps(self._complete(json.loads(body))).encode()
            headers = {
                "Content-Type": "application/json",
                "Lockerfleet-Signature": sign(secret, int(self._clock()), payload),
                "Lockerfleet-Event-Id": event_id,
            }
            try:
                check_webhook_url(url, allow_private=self._allow_private)  # DNS may have changed since registration
                response = self._client().post(url, content=payload, headers=headers)
                error = None if response.is_success else f"HTTP {response.status_code}"
            except WebhookTargetError as exc:
                error = f"not sent: {exc}"
            except httpx.HTTPError as exc:
                error = repr(exc)
            if error is None:
                self._store.webhook_done(delivery_id, now)
                self._metrics.webhooks.labels("delivered").inc()
                self._outages.delivered(partner)
                delivered += 1
                continue
            retry_at = now + backoff(attempts, self._rng) if attempts + 1 < MAX_ATTEMPTS else None
            self._store.webhook_failed(delivery_id, error, retry_at)
            self._metrics.webhooks.labels("retried" if retry_at else "given_up").inc()
            self._outages.failed(
                partner, redact_url(url), event_id, _reservation_of(body), error, given_up=not retry_at
            )
        self._outages.summarise()
        return delivered

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self._timeout_s, transport=self._transport, follow_redirects=False)
        return self._http

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.deliver_due()
            except Exception:
                log.exception("webhook delivery loop failed action=retrying at the next poll")


def _reservation_of(body: str) -> str | None:
    """The reservation an event is about (alert events are about none)."""
    try:
        reservation = json.loads(body).get("reservation")
    except (ValueError, AttributeError):
        return None
    return str(reservation.get("reservation_id")) if isinstance(reservation, dict) else None


def _ids(ids: list[str]) -> str:
    """Up to :data:`LISTED` ids, then how many more."""
    more = f",+{len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ",".join(ids[:LISTED]) + more if ids else "-"


@dataclass
class _Outage:
    """One endpoint's failures since it last worked; the window fields are those not logged yet."""

    url: str
    since: float
    logged_at: float
    last_error: str
    total: int = 0
    given_up_total: int = 0
    attempts: int = 0
    events: dict[str, None] = field(default_factory=dict)
    reservations: dict[str, None] = field(default_factory=dict)
    given_up: list[str] = field(default_factory=list)

    def count(self, event_id: str, reservation: str | None, error: str, *, given_up: bool) -> None:
        """One more failed attempt, not logged yet."""
        self.last_error = error
        self.total += 1
        self.attempts += 1
        self.events[event_id] = None
        if reservation is not None:
            self.reservations[reservation] = None
        if given_up:
            self.given_up_total += 1
            self.given_up.append(event_id)

    def logged(self, now: float) -> None:
        """Start the next window."""
        self.logged_at, self.attempts = now, 0
        self.events, self.reservations, self.given_up = {}, {}, []


class Outages:
    """Webhook failures as episodes per endpoint: a line when one starts, at most one summary per
    :data:`SUMMARY_EVERY_S` while it lasts (counts and ids), and a line when it ends."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._open: dict[str, _Outage] = {}

    def failed(
        self, partner: str, url: str, event_id: str, reservation: str | None, error: str, *, given_up: bool
    ) -> None:
        """Count one failed attempt; the first of an episode is logged at once."""
        now = self._clock()
        outage = self._open.get(partner)
        if outage is None:
            outage = self._open[partner] = _Outage(url, now, now, error)
            outage.count(event_id, reservation, error, given_up=given_up)
            outage.logged(now)
            log.warning(
                "webhook deliveries failing partner=%s url=%s event=%s reservation=%s error=%s action=%s",
                partner,
                url,
                event_id,
                reservation or "-",
                error,
                f"check the partner's endpoint; each event is tried {MAX_ATTEMPTS} times with growing pauses, and "
                f"this is summed up at most every {SUMMARY_EVERY_S:.0f} s until it works",
            )
            return
        outage.count(event_id, reservation, error, given_up=given_up)

    def delivered(self, partner: str) -> None:
        """The endpoint works (again): end its episode with one line."""
        outage = self._open.pop(partner, None)
        if outage is not None:
            log.info(
                "webhook deliveries working again partner=%s url=%s after_s=%.0f failed_attempts=%d given_up=%d "
                "given_up_events=%s",
                partner,
                outage.url,
                self._clock() - outage.since,
                outage.total,
                outage.given_up_total,
                _ids(outage.given_up),
            )

    def summarise(self) -> None:
        """Log the episodes whose summary is due (called after every delivery round)."""
        now = self._clock()
        for partner, outage in self._open.items():
            if outage.attempts == 0 or now - outage.logged_at < SUMMARY_EVERY_S:
                continue
            log.warning(
                "webhook deliveries still failing partner=%s url=%s for_s=%.0f failed_attempts=%d events=%d "
                "event_ids=%s reservations=%s given_up=%d given_up_events=%s last_error=%s action=%s",
                partner,
                outage.url,
                now - outage.since,
                outage.attempts,
                len(outage.events),
                _ids(list(outage.events)),
                _ids(list(outage.reservations)),
                len(outage.given_up),
                _ids(outage.given_up),
                outage.last_error,
                "check the partner's endpoint; given-up events stay undelivered in the store (table webhooks)",
            )
            outage.logged(now)
