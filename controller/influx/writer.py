"""InfluxDB adapter: gzip line-protocol batches POSTed to the v1 ``/write`` API, retried until stored.

InfluxDB 1.x serves ``/write`` natively; 2.x and 3.x serve it for compatibility, with ``Authorization: Token``.
Connection errors, 5xx and 429 are retried with tenacity (honouring ``Retry-After``); 401/403/404 too, since they
are operator-fixable (token, database) and dropping data would be worse. A 400 means InfluxDB refused some lines
of a batch (it stores the valid ones): that is reported, never retried.
"""

import gzip
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_random_exponential,
)

from schemas.broker import redact_url

log = logging.getLogger(__name__)

_GZIP = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
_RETRY_STATUS = frozenset({401, 403, 404, 429, 500, 502, 503, 504})
SLOW_WRITE_S = 5.0
"""A write still unanswered after this long counts as InfluxDB being unreachable (a hung server never fails)."""


class InfluxUnavailableError(Exception):
    """A write that may succeed later; ``retry_after_s`` is the server's hint, if it gave one."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class InfluxRefusedError(Exception):
    """InfluxDB answered 400: some lines of the batch were refused (the valid ones were stored)."""


class InfluxWriter:
    """Writes batches to one database; :meth:`write` blocks until stored, refused, or :meth:`stop` is called."""

    def __init__(
        self,
        url: str,
        db: str,
        token: str | None = None,
        *,
        timeout_s: float = 10.0,
        max_backoff_s: float = 10.0,
        on_retry: Callable[[BaseException], None] = lambda _e: None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.url = redact_url(url)
        """The InfluxDB URL as logged (without a password)."""
        self.db = db
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s, transport=transport)
        self._stopping = threading.Event()
        self._backoff = wait_random_exponential(multiplier=0.2, max=max_backoff_s)
        self._on_retry = on_retry
        self._failing_since: float | None = None
        """Start of the oldest write not yet answered by InfluxDB."""
        self._failed = False

    def ensure_database(self) -> None:
        """Create the database on InfluxDB 1.x; elsewhere (2.x/3.x bucket) log what to do if it fails."""
        try:
            response = self._http.post("/query", data={"q": f'CREATE DATABASE "{self.db}"'})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning(
                "could not create database db=%s url=%s error=%r action=create the database or bucket yourself "
                "(InfluxDB 2.x/3.x: a bucket with a v1 DBRP mapping of this name)",
                self.db,
                self.url,
                exc,
            )

    def write(self, lines: Sequence[str]) -> None:
        """Store ``lines``; retry until InfluxDB takes them. Raises :class:`InfluxRefusedError` on a 400."""
        body = gzip.compress("\n".join(lines).encode(), compresslevel=1)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        retrying = Retrying(
            retry=retry_if_exception_type((InfluxUnavailableError, httpx.TransportError)),
            wait=self._wait,
            stop=stop_when_event_set(self._stopping),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._post(body)

    def stop(self) -> None:
        """Make a write in progress give up after its current attempt (shutdown)."""
        self._stopping.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def unreachable_s(self) -> float | None:
        """For how long a write has been failing or hanging (None: InfluxDB answers, or not for long yet)."""
        since = self._failing_since
        held = None if since is None else time.monotonic() - since
        return held if held is not None and (self._failed or held >= SLOW_WRITE_S) else None

    def close(self) -> None:
        """Stop and close the connection pool."""
        self.stop()
        self._http.close()

    def _post(self, body: bytes) -> None:
        response = self._http.post("/write", params={"db": self.db, "precision": "ns"}, content=body, headers=_GZIP)
        if response.status_code == 204:
            self._answered()
            return
        detail = f"HTTP {response.status_code}: {response.text[:500]}"
        if response.status_code == 400:
            self._answered()
            raise InfluxRefusedError(detail)
        if response.status_code in _RETRY_STATUS or response.status_code >= 500:
            raise InfluxUnavailableError(detail, _retry_after(response.headers.get("Retry-After")))
        raise InfluxRefusedError(detail)

    def _answered(self) -> None:
        self._failing_since = None
        self._failed = False

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, InfluxUnavailableError) and error.retry_after_s is not None:
            return error.retry_after_s
        return float(self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        assert error is not None
        self._failed = True
        self._on_retry(error)
        if state.attempt_number in (1, 10) or state.attempt_number % 100 == 0:
            log.warning(
                "InfluxDB write failed url=%s db=%s attempt=%d error=%s action=holding points and retrying; "
                "check that InfluxDB is up and the database/token are right",
                self.url,
                self.db,
                state.attempt_number,
                error,
            )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), capped to a minute."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), 60.0)
