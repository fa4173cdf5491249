"""One MQTT delivery, handled for a session: a failure acknowledges nothing, so the broker delivers it again.

The store being unreachable (PostgreSQL down while a ledger event arrives) is retried for a few seconds in place,
then the connection is ended unacknowledged and made again: the message comes back, with everything after it, once
the store answers. Any other error is a bug: the message comes back up to :data:`ATTEMPTS` times, then it is kept
as a ``handler_error`` dead letter (raw bytes in InfluxDB, logged with the traceback) so one bad message cannot
hold a session forever.
"""

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import sqlalchemy as sa

from controller.ingest.dedup import MessageKey
from controller.ingest.handler import Handled, Ingest
from controller.mqtt.ingest_protocol import SessionError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_FOR_S = 10.0
"""How long a message whose handler cannot reach the store is retried before the connection is made again."""
ATTEMPTS = 3
"""Deliveries of a message whose handler fails with a bug before it is kept as a dead letter."""
_REMEMBERED_FAILURES = 1000
"""Failing messages remembered by digest (more means a bug hits everything: the count starts over)."""


def store_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the controller's store cannot be reached now (worth trying again later)."""
    if isinstance(error, sa.exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
    return isinstance(error, sa.exc.TimeoutError | OSError)


class DeliveryHandler(Generic[T]):
    """Hands each delivery to ``ingest``, then its lines and acknowledgement to ``submit`` (pipeline or spool)."""

    def __init__(
        self,
        ingest: Ingest,
        submit: Callable[[list[str], T | None, MessageKey | None], None],
        *,
        session: str,
        retry_for_s: float = RETRY_FOR_S,
    ) -> None:
        self._ingest = ingest
        self._submit = submit
        self._session = session
        self._retry_for_s = retry_for_s
        self._stopping = threading.Event()
        self._failures: dict[bytes, int] = {}

    def stop(self) -> None:
        """Cut a retry short (shutdown): the message stays unacknowledged."""
        self._stopping.set()

    def __call__(self, topic: str, payload: bytes, token: T | None) -> None:
        """Handle one delivery (the session's thread); raises :class:`SessionError` to leave it unacknowledged."""
        try:
            handled = self._ingest.handle(topic, payload)
        except Exception as exc:  # every failure decides between retry and dead letter
            handled = self._after_failure(topic, payload, exc)
        self._submit(handled.lines, token, handled.key)

    def _after_failure(self, topic: str, payload: bytes, error: Exception) -> Handled:
        if store_unreachable(error):
            return self._retry(topic, payload, error)
        digest = hashlib.sha256(topic.encode() + b"\0" + payload).digest()
        if len(self._failures) >= _REMEMBERED_FAILURES:
            self._failures.clear()
        attempt = self._failures[digest] = self._failures.get(digest, 0) + 1
        log.error(
            "handling a message failed session=%s topic=%s attempt=%d/%d action=report this bug with the traceback "
            "and payload below; the message %s",
            self._session,
            topic,
            attempt,
            ATTEMPTS,
            "is kept as a handler_error dead letter" if attempt >= ATTEMPTS else "comes again after a reconnect",
            exc_info=error,
        )
        log.error("payload=%r", payload[:1024])
        if attempt < ATTEMPTS:
            raise SessionError(
                "handler_failed", f"handling a message on {topic} failed: {error!r}", "see the traceback logged above"
            ) from error
        del self._failures[digest]
        return self._ingest.failed(topic, payload, error)

    def _retry(self, topic: str, payload: bytes, error: Exception) -> Handled:
        """Handle again while the store is unreachable, for up to ``retry_for_s``; then end the connection."""
        log.warning(
            "the controller's store is unreachable session=%s topic=%s error=%s action=check the database; "
            "retrying, the message stays unacknowledged at the broker",
            self._session,
            topic,
            error,
        )
        deadline = time.monotonic() + self._retry_for_s
        wait_s = 0.1
        while time.monotonic() + wait_s < deadline and not self._stopping.wait(wait_s):
            wait_s = min(wait_s * 2, 2.0)
            try:
                return self._ingest.handle(topic, payload)
            except Exception as exc:  # a bug now: decided like any other failure
                if not store_unreachable(exc):
                    return self._after_failure(topic, payload, exc)
                error = exc
        raise SessionError(
            "store_unavailable",
            f"the controller's store is unreachable: {error}",
            "check the controller's database; the messages stay at the broker and come again after the reconnect",
        ) from error
