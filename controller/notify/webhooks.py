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
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from controller.metrics import Metrics
from controller.notify.targets import WebhookTargetError, check_webhook_url
from controller.store.reservations import ReservationStore
from schemas.broker import redact_url

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
"""About a day of retries (backoff doubling up to 4 hours) before an event is given up."""


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
        self._http = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False)
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the delivery in progress; what is left is delivered after the next start."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
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
                response = self._http.post(url, content=payload, headers=headers)
                error = None if response.is_success else f"HTTP {response.status_code}"
            except WebhookTargetError as exc:
                error = f"not sent: {exc}"
            except httpx.HTTPError as exc:
                error = repr(exc)
            if error is None:
                self._store.webhook_done(delivery_id, now)
                self._metrics.webhooks.labels("delivered").inc()
                delivered += 1
                continue
            retry_at = now + backoff(attempts, self._rng) if attempts + 1 < MAX_ATTEMPTS else None
            self._store.webhook_failed(delivery_id, error, retry_at)
            self._metrics.webhooks.labels("retried" if retry_at else "given_up").inc()
            log.warning(
                "webhook failed partner=%s url=%s attempt=%d error=%s action=%s",
                partner,
                redact_url(url),
                attempts + 1,
                error,
                f"retrying at {retry_at.isoformat()}" if retry_at else "given up: check the partner's endpoint",
            )
        return delivered

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.deliver_due()
            except Exception:
                log.exception("webhook delivery loop failed action=retrying at the next poll")
