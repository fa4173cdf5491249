"""The control path's way to InfluxDB: lines spooled in the controller's store, then drained in the background.

Control messages (statuses, command results, events) are acknowledged once their effect is done and their lines
are committed to the store's ``influx_spool`` table, so InfluxDB being down never holds the control session's
receive window: opens, reservation decisions, webhooks and liveness carry on. One thread commits what the control
session hands over in small batches and acknowledges it in arrival order; another writes the spool to InfluxDB and
deletes what was stored. While the store is down nothing is acknowledged (the broker keeps the messages); while
InfluxDB is down the spool grows.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import sqlalchemy as sa

from controller.influx.writer import InfluxRefusedError, InfluxWriter
from controller.ingest.batching import Batch, Batcher
from controller.ingest.dedup import MessageKey
from controller.metrics import Metrics
from controller.store.spool import SpoolStore

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_S = (0.2, 10.0)
"""First and longest wait before trying the store again."""
DRAIN_LINES = 5000
"""Lines per InfluxDB write from the spool."""
DRAIN_POLL_S = 1.0
"""How often an idle drain looks for lines other controllers (or a previous run) left in the spool."""


class ControlSpool(Generic[T]):
    """Spools control messages' lines, acknowledges them with ``ack``, and drains the spool into InfluxDB."""

    def __init__(
        self,
        store: SpoolStore,
        writer: InfluxWriter,
        metrics: Metrics,
        ack: Callable[[list[T]], None],
        remember: Callable[[list[MessageKey]], None],
        *,
        max_lines: int = 1000,
        max_age_s: float = 0.02,
        drain_lines: int = DRAIN_LINES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._writer = writer
        self._metrics = metrics
        self._ack = ack
        self._remember = remember
        self._clock = clock
        self._drain_lines = drain_lines
        self._batcher: Batcher[T] = Batcher(max_lines, max_age_s)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._spooled = threading.Event()
        self._waiting = 0
        self._lines_waiting = 0
        self._oldest: float | None = None
        """Wall-clock time the oldest line known to wait in the spool was queued."""
        self._added_since: float | None = None
        """When the first lines spooled since the drain last looked were queued."""
        self._spool_thread = threading.Thread(target=self._spool_loop, name="control-spool", daemon=True)
        self._drain_thread = threading.Thread(target=self._drain_loop, name="spool-drain", daemon=True)

    @property
    def waiting(self) -> int:
        """Control messages handed over and not yet spooled and acknowledged."""
        return self._waiting

    @property
    def lines_waiting(self) -> int:
        """Lines in the spool, not yet in InfluxDB (as of the drain's last look, plus those spooled since)."""
        return self._lines_waiting

    def oldest_age_s(self) -> float:
        """Age of the oldest spooled line not yet in InfluxDB (0 when none)."""
        oldest = self._oldest
        return 0.0 if oldest is None else max(self._clock() - oldest, 0.0)

    @property
    def alive(self) -> bool:
        """Both threads run (false before :meth:`start` and after :meth:`stop`)."""
        return self._spool_thread.is_alive() and self._drain_thread.is_alive()

    def start(self) -> None:
        """Start the spool and drain threads."""
        self._spool_thread.start()
        self._drain_thread.start()

    def submit(self, lines: list[str], token: T | None = None, key: MessageKey | None = None) -> None:
        """One control message, handled: spool its ``lines``, then acknowledge ``token`` and remember ``key``."""
        now = time.monotonic()
        with self._cond:
            was_empty = self._batcher.empty
            self._batcher.add(now, lines, token, key)
            if token is not None:
                self._waiting += 1
            if was_empty or self._batcher.due(now):
                self._cond.notify()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Spool what was handed over (within ``timeout_s``) and stop; what is not spooled stays unacknowledged.

        The drain is not waited for beyond that: what it was writing stays in the spool for the next start (a
        write hanging on InfluxDB ends when the writer is closed).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._stopping.set()
            self._cond.notify()
        self._spooled.set()
        self._spool_thread.join(timeout_s)
        self._drain_thread.join(min(max(deadline - time.monotonic(), 0.0), 0.2))

    # -- spooling ---------------------------------------------------------------------------------------------------

    def _next_batch(self) -> Batch[T] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._batcher.due(now) or (self._stopping.is_set() and not self._batcher.empty):
                    return self._batcher.take()
                if self._stopping.is_set():
                    return None
                deadline = self._batcher.deadline()
                self._cond.wait(None if deadline is None else max(deadline - now, 0.0))

    def _spool_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch.lines and not self._add(batch.lines):
                return  # stopping with the store down: unacknowledged, the broker delivers them again
            self._remember(batch.keys)
            with self._cond:
                self._waiting -= len(batch.tokens)
            if batch.tokens:
                self._ack(batch.tokens)

    def _add(self, lines: list[str]) -> bool:
        """Commit ``lines`` to the spool, retrying while the store is down; False if stopped first."""
        retry_s = RETRY_S[0]
        while True:
            now = self._clock()
            try:
                self._store.add(lines, now)
            except sa.exc.SQLAlchemyError as exc:
                log.warning(
                    "control messages not spooled lines=%d error=%s action=check the controller's database; "
                    "retrying in %.1f s, the messages stay unacknowledged at the broker",
                    len(lines),
                    exc,
                    retry_s,
                )
                if self._stopping.wait(retry_s):
                    return False
                retry_s = min(retry_s * 2, RETRY_S[1])
                continue
            with self._cond:
                self._lines_waiting += len(lines)
                if self._added_since is None:
                    self._added_since = now
                if self._oldest is None:
                    self._oldest = now
            self._spooled.set()
            return True

    # -- draining ---------------------------------------------------------------------------------------------------

    def _drain_loop(self) -> None:
        retry_s = RETRY_S[0]
        while not self._stopping.is_set():
            self._spooled.clear()
            try:
                drained = self._drain_once()
            except Exception as exc:
                if isinstance(exc, sa.exc.SQLAlchemyError):
                    log.warning(
                        "spool not drained error=%s action=check the controller's database; retrying in %.1f s",
                        exc,
                        retry_s,
                    )
                else:  # not an error the writer retries by itself: keep the lines and go on
                    log.exception("unexpected error draining the spool action=retrying in %.1f s", retry_s)
                self._stopping.wait(retry_s)
                retry_s = min(retry_s * 2, RETRY_S[1])
                continue
            retry_s = RETRY_S[0]
            if drained < self._drain_lines:
                self._spooled.wait(DRAIN_POLL_S)

    def _drain_once(self) -> int:
        """Write the oldest spooled lines to InfluxDB and delete them; how many were taken."""
        with self._cond:
            self._added_since = None
        rows, waiting = self._store.take(self._drain_lines)
        with self._cond:
            self._lines_waiting = waiting
            self._oldest = rows[0].queued_at if rows else self._added_since
        if not rows:
            return 0
        if not self._write([row.line for row in rows]):
            return 0  # stopping with InfluxDB unreachable: the rows stay for the next start
        self._store.delete([row.id for row in rows])
        with self._cond:
            self._lines_waiting = max(self._lines_waiting - len(rows), 0)
            if len(rows) < self._drain_lines:  # it took them all: what waits now was spooled since
                self._oldest = self._added_since
        return len(rows)

    def _write(self, lines: list[str]) -> bool:
        started = time.perf_counter()
        try:
            self._writer.write(lines)
        except InfluxRefusedError as exc:
            self._metrics.lines_refused.inc(len(lines))
            log.error(
                "InfluxDB refused spooled lines lines=%d error=%s action=the valid points were stored; fix the "
                "points InfluxDB names (field type conflict?) - these lines leave the spool",
                len(lines),
                exc,
            )
        except Exception as exc:
            if self._writer.stopped:
                log.warning("spool drain abandoned at shutdown lines=%d error=%r", len(lines), exc)
                return False
            raise
        self._metrics.write_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_lines.observe(len(lines))
        return True
