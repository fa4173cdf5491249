"""The alert thread: feeds the monitor from a queue, ticks it every evaluation period, stores what it decided.

The ingest thread only converts a message to inputs and queues them (:meth:`AlertService.observe`). One thread takes
what waits, feeds the monitor, ticks it when the period is up, and commits the changed alert state with the new
announcements in one transaction (:meth:`AlertStore.commit`); only then are they handed to delivery. A commit that
fails keeps the announcements and is retried, so the database being away delays them and loses none.

Operators' actions (acknowledge, silences, maintenance) run on the caller's thread under the same lock and are
stored before they return.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from controller.alerting.notices import stored_notice
from controller.alerts import (
    AlertMonitor,
    AlertRecord,
    BatteryForecast,
    BreakerState,
    Liveness,
    NodeInfo,
    Notification,
    RulesConfig,
    Silence,
    TelemetrySample,
)
from controller.alerts.engine import STATE_VERSION
from controller.alerts.feed import AlertInput, apply, inputs_of
from controller.store.alerts import AlertStore, Notice, StateChanges
from schemas.ingest_codec import Ingested

log = logging.getLogger(__name__)

_MAX_BATCH = 5000
"""Inputs fed per commit at most (the rest wait for the next round)."""
GATHER_S = 0.02
"""After the first input arrives, how long more may gather before they are fed: under a telemetry flood the thread
then wakes a few dozen times a second instead of once per message (each wake-up cost more CPU than evaluating)."""
_RETRY_S = 1.0


class AlertService:
    """Owns the monitor; call :meth:`start` / :meth:`stop`, and :meth:`observe` for every ingested message."""

    def __init__(
        self,
        monitor: AlertMonitor,
        store: AlertStore,
        *,
        clock: Callable[[], float],
        eval_s: float,
        in_maintenance: Callable[[str], bool],
        on_stored: Callable[[list[Notice]], None],
        warm: Callable[[], Iterable[TelemetrySample]] = lambda: (),
        retention_s: float = 7 * 86400.0,
    ) -> None:
        self.monitor = monitor
        self._store = store
        self._clock = clock
        self._eval_s = eval_s
        self._in_maintenance = in_maintenance
        self._on_stored = on_stored
        self._warm = warm
        self._retention_s = retention_s
        self._queue: queue.SimpleQueue[tuple[AlertInput, ...]] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._waiting: list[Notice] = []
        self._saved_records: dict[str, dict[str, Any]] = {}
        self._saved_silences: dict[str, dict[str, Any]] = {}
        self._sites: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self.tick_seconds: Callable[[float], None] = lambda _s: None
        """Called with the duration of each tick (the metrics observe it)."""

    @classmethod
    def restored(cls, rules: RulesConfig, store: AlertStore, **kwargs: Any) -> "AlertService":
        """A service continuing from the state in ``store``: open alerts keep their episode, nothing is repeated."""
        data = store.load(STATE_VERSION)
        service = cls(AlertMonitor.restore(rules, data), store, **kwargs)
        service._saved_records = {r["id"]: r for r in data["records"]}
        service._saved_silences = {s["id"]: s for s in data["silences"]}
        return service

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def register(self, nodes: Iterable[tuple[NodeInfo, bool]]) -> None:
        """Register known nodes at start: their site, maintenance, last-seen time, and whether they are online."""
        now = self._clock()
        with self._lock:
            for info, online in nodes:
                self._sites[info.node_id] = info.site_id
                self.monitor.set_node(info, now)
                if not online:
                    self._waiting += self._notices(self.monitor.on_liveness(Liveness(info.node_id, False), now))

    def start(self) -> None:
        """Start the alert thread (it warms the battery history first, then evaluates)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after storing what it decided."""
        self._stop.set()
        self._queue.put(())
        if self._thread.is_alive():
            self._thread.join(30)

    def observe(self, message: Ingested, now: float) -> None:
        """Queue what an ingested message tells the rules (called on the ingest thread: cheap)."""
        inputs = inputs_of(message, now, self._in_maintenance)
        if inputs:
            self._queue.put(inputs)

    @property
    def waiting(self) -> int:
        """Messages queued for the alert thread."""
        return self._queue.qsize()

    # -- operator actions -----------------------------------------------------------------------------------------

    def records(self) -> list[AlertRecord]:
        """Every alert kept (copies), by id."""
        with self._lock:
            return sorted((replace(r) for r in self.monitor.engine.records()), key=lambda r: r.id)

    def forecast(self, node_id: str) -> BatteryForecast | None:
        """The node's battery time-to-empty forecast now (None: no forecast)."""
        with self._lock:
            return self.monitor.forecast(node_id, self._clock())

    def silenced(self, alert_id: str) -> bool:
        """Whether an active silence matches the alert."""
        with self._lock:
            return self.monitor.engine.silenced(alert_id, self._clock())

    def acknowledge(self, alert_id: str, by: str) -> AlertRecord:
        """Acknowledge an open alert (:class:`~controller.alerts.AlertError` if unknown or closed); stored on return."""
        with self._lock:
            note = self.monitor.acknowledge(alert_id, by, self._clock())
            self._commit([] if note is None else [note])
            record = self.monitor.engine.get(alert_id)
            assert record is not None  # acknowledge raised otherwise
            return replace(record)

    def add_silence(self, silence: Silence) -> None:
        """Add a silence; stored on return."""
        with self._lock:
            self.monitor.add_silence(silence)
            self._commit([])

    def silences(self) -> list[Silence]:
        """Every silence kept (active, future and ended until pruned)."""
        with self._lock:
            return self.monitor.engine.silences()

    def expire_silence(self, silence_id: str) -> Silence:
        """End a silence now (:class:`~controller.alerts.UnknownSilenceError` if unknown); announces what it held."""
        with self._lock:
            before = {s.id: s for s in self.monitor.engine.silences()}.get(silence_id)
            notes = self.monitor.expire_silence(silence_id, self._clock())
            self._commit(notes)
            after = {s.id: s for s in self.monitor.engine.silences()}.get(silence_id)
            found = after or before  # a silence that had not started is gone altogether
            assert found is not None  # expire_silence raised otherwise
            return found

    def set_breaker(self, breaker: BreakerState) -> None:
        """The fleet open breaker tripped (or reset); callable from any thread."""
        self._queue.put((breaker,))

    def set_maintenance(self, node_id: str, maintenance: bool) -> None:
        """A node went under maintenance or came back (its maintenance-quiet rules follow)."""
        self._queue.put((NodeInfo(node_id, self._sites.get(node_id), maintenance),))

    def counts(self) -> dict[tuple[str, str, str], int]:
        """How many alerts are kept, by (rule, severity, state)."""
        counts: dict[tuple[str, str, str], int] = {}
        with self._lock:
            for r in self.monitor.engine.records():
                key = (r.rule, r.severity.value, r.state.value)
                counts[key] = counts.get(key, 0) + 1
        return counts

    # -- the thread -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        self._warm_up()
        next_tick = time.monotonic()
        while not self._stop.is_set():
            batch = self._take(max(0.0, next_tick - time.monotonic()))
            ticking = time.monotonic() >= next_tick
            try:
                with self._lock:
                    notes = self._feed(batch)
                    if ticking:
                        notes += self._tick()
                        next_tick = time.monotonic() + self._eval_s
                    if notes or ticking or self._waiting:
                        self._commit(notes, prune=ticking)
            except SQLAlchemyError as exc:
                log.warning(
                    "alert state not stored error=%r waiting=%d action=check the controller store; retrying in %.0f s "
                    "(announcements wait, none is lost)",
                    exc,
                    len(self._waiting),
                    _RETRY_S,
                )
                self._stop.wait(_RETRY_S)
            except Exception:
                log.exception("alert evaluation failed action=report this bug; retrying in %.0f s", _RETRY_S)
                self._stop.wait(_RETRY_S)
        with self._lock:
            self._safe_commit()

    def _warm_up(self) -> None:
        started, count = time.monotonic(), 0
        try:
            for sample in self._warm():
                with self._lock:
                    self.monitor.warm(sample)
                count += 1
        except Exception as exc:  # InfluxDB away or answering nonsense: forecasts refill from live data
            log.warning(
                "battery history not loaded error=%r action=none needed: battery forecasts start once enough live "
                "telemetry arrived (about window_h of the rules file)",
                exc,
            )
        if count:
            log.info("battery history loaded samples=%d seconds=%.1f", count, time.monotonic() - started)

    def _take(self, timeout_s: float) -> list[tuple[AlertInput, ...]]:
        batch: list[tuple[AlertInput, ...]] = []
        try:
            batch.append(self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait())
            if self._queue.qsize() < _MAX_BATCH:
                self._stop.wait(GATHER_S)
            while len(batch) < _MAX_BATCH:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _feed(self, batch: list[tuple[AlertInput, ...]]) -> list[Notification]:
        notes: list[Notification] = []
        now = self._clock()
        on_telemetry = self.monitor.on_telemetry
        for inputs in batch:
            for item in inputs:
                if type(item) is TelemetrySample:  # nearly every input: straight to the monitor
                    found = on_telemetry(item, now)
                else:
                    if isinstance(item, NodeInfo):
                        self._sites[item.node_id] = item.site_id
                    found = apply(self.monitor, item, now)
                if found:
                    notes += found
        return notes

    def _tick(self) -> list[Notification]:
        started = time.perf_counter()
        notes = self.monitor.tick(self._clock())
        self.tick_seconds(time.perf_counter() - started)
        return notes

    # -- persistence ----------------------------------------------------------------------------------------------

    def _notices(self, notes: list[Notification]) -> list[Notice]:
        engine = self.monitor.engine
        return [stored_notice(n, engine.get(n.alert_id)) for n in notes]

    def _commit(self, notes: list[Notification], *, prune: bool = False) -> None:
        """Store the state and ``notes`` (with any waiting from a failed commit) in one transaction; then deliver."""
        now = self._clock()
        if prune:
            self.monitor.engine.prune(now - self._retention_s)
        self._waiting += self._notices(notes)
        records = {r.id: r.to_dict() for r in self.monitor.engine.records()}
        silences = {s.id: s.to_dict() for s in self.monitor.engine.silences()}
        changes = StateChanges(
            records={k: v for k, v in records.items() if self._saved_records.get(k) != v},
            dropped_records=[k for k in self._saved_records if k not in records],
            silences={k: v for k, v in silences.items() if self._saved_silences.get(k) != v},
            dropped_silences=[k for k in self._saved_silences if k not in silences],
        )
        changed = changes.records or changes.dropped_records or changes.silences or changes.dropped_silences
        if not changed and not self._waiting:
            return
        fresh = self._store.commit(changes, self._waiting, now)
        self._saved_records, self._saved_silences, self._waiting = records, silences, []
        if fresh:
            self._on_stored(fresh)

    def _safe_commit(self) -> None:
        try:
            self._commit([])
        except Exception as exc:
            log.error("alert state not stored at stop error=%r action=check the store; open alerts re-derive", exc)
