"""The write pipeline: one writer thread storing batches in InfluxDB, then acknowledging their messages.

Messages are acknowledged to the broker only after their lines are stored, so while InfluxDB is down nothing is
acknowledged: the broker stops delivering once the controller's MQTT receive maximum of unacknowledged messages is
reached, and keeps the rest queued in the controller's session. That is the back-pressure; nothing is dropped.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from controller.influx.writer import InfluxRefusedError, InfluxWriter
from controller.ingest.batching import Batch, Batcher
from controller.ingest.dedup import MessageKey, SeenWindow
from controller.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class WritePipeline(Generic[T]):
    """Collects lines from the ingest thread; a writer thread stores them, acknowledges via ``ack`` and hands the
    stored messages' keys to ``on_stored`` (delivery receipts)."""

    def __init__(
        self,
        writer: InfluxWriter,
        seen: SeenWindow,
        metrics: Metrics,
        ack: Callable[[list[T]], None],
        *,
        max_lines: int = 5000,
        max_age_s: float = 0.1,
        on_stored: Callable[[list[MessageKey]], None] = lambda _keys: None,
    ) -> None:
        self._writer = writer
        self._on_stored = on_stored
        self._seen = seen
        self._metrics = metrics
        self._ack = ack
        self._batcher: Batcher[T] = Batcher(max_lines, max_age_s)
        self._lock = threading.Lock()
        """Guards the batcher, the dedup window and the counts; a plain lock is entered in C (a ``Condition``'s
        ``with`` runs Python code, twice per ingested message)."""
        self._cond = threading.Condition(self._lock)
        self._stopping = False
        self._waiting = 0
        self._writing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        metrics.buffer_messages.set_function(lambda: self._waiting)

    @property
    def waiting(self) -> int:
        """Messages received and not yet stored and acknowledged."""
        return self._waiting

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, lines: list[str], token: T | None = None, key: MessageKey | None = None) -> None:
        """Queue one message's lines; ``token`` is acknowledged and ``key`` remembered once they are stored."""
        now = time.monotonic()
        with self._lock:
            # Wake the writer when it has a new deadline to wait for (it sleeps without one while empty) or a full
            # batch; a batch due by age it takes when its timed wait ends.
            if self._batcher.add(now, lines, token, key):
                self._cond.notify()
            if token is not None:
                self._waiting += 1

    def seen(self, key: MessageKey) -> bool:
        """True when the message ``key`` was already stored (no lock: the window is safe to read while the writer
        adds to it, see :mod:`controller.ingest.dedup`)."""
        return self._seen.contains(key)

    def remember(self, keys: list[MessageKey]) -> None:
        """Record messages stored by another way (the control spool) as stored."""
        if keys:
            with self._lock:
                self._seen.add_all(keys)

    def oldest_age_s(self) -> float:
        """Age of the oldest lines submitted and not yet stored (0 when none)."""
        with self._cond:
            opened = [] if self._writing_since is None else [self._writing_since]
            deadline = self._batcher.deadline()
            if deadline is not None:
                opened.append(deadline - self._batcher.max_age_s)
        return max(time.monotonic() - min(opened), 0.0) if opened else 0.0

    @property
    def alive(self) -> bool:
        """The writer thread runs (false before :meth:`start` and after :meth:`stop`)."""
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered, then stop, all within ``timeout_s``; unwritten messages stay unacknowledged.

        Past half the time the writer gives up after its current attempt; a write still hanging then (InfluxDB
        stopped) is left to the daemon thread: nothing it carries was acknowledged.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s / 2)
        if self._thread.is_alive():
            self._writer.stop()
            self._thread.join(max(deadline - time.monotonic(), 0.0))

    def _next_batch(self) -> Batch[T] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._batcher.due(now) or (self._stopping and not self._batcher.empty):
                    batch = self._batcher.take()
                    self._writing_since = batch.opened_at
                    return batch
                if self._stopping:
                    return None
                deadline = self._batcher.deadline()
                self._cond.wait(None if deadline is None else max(deadline - now, 0.0))

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch.lines and not self._store(batch):
                return  # stopping with InfluxDB unreachable: leave these unacknowledged for redelivery
            with self._lock:
                self._seen.add_all(batch.keys)
                self._waiting -= len(batch.tokens)
                self._writing_since = None
            if batch.tokens:
                self._ack(batch.tokens)
            if batch.keys:
                self._on_stored(batch.keys)

    def _store(self, batch: Batch[T]) -> bool:
        started = time.perf_counter()
        while True:
            try:
                self._writer.write(batch.lines)
                break
            except InfluxRefusedError as exc:
                self._metrics.lines_refused.inc(len(batch.lines))
                log.error(
                    "InfluxDB refused lines of a batch lines=%d error=%s action=the valid points were stored; "
                    "fix the points InfluxDB names (field type conflict?) - these messages are acknowledged",
                    len(batch.lines),
                    exc,
                )
                break
            except Exception as exc:
                if self._writer.stopped:
                    log.warning("write abandoned at shutdown lines=%d error=%r", len(batch.lines), exc)
                    return False
                # Not an error the writer retries by itself: keep the batch (and its acknowledgements) and go on.
                log.exception("unexpected InfluxDB write error lines=%d action=retrying in 1 s", len(batch.lines))
                self._metrics.write_retries.inc()
                time.sleep(1.0)
        self._metrics.write_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_lines.observe(len(batch.lines))
        return True
