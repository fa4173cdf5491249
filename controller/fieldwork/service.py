"""The swap queue in the controller: alert announcements and telemetry in, work orders stored, routes planned.

The ingest thread only turns a message into a :class:`~controller.swapqueue.TelemetrySample` and queues it
(:meth:`FieldService.observe`); the alert thread queues each stored announcement (:meth:`FieldService.on_notices`).
One thread feeds both to the :class:`~controller.swapqueue.WorkOrderBook` in arrival order, stores every change
(order row and event row, :class:`~controller.store.fieldwork.FieldStore`) and writes a ``work_order`` point per
event. Technicians' actions run on the caller's thread under the same lock and are stored before they return. A
store that fails keeps the events and retries them, so nothing a technician or the telemetry did is lost.

At start the book resumes from the stored orders and is reconciled with the alerts firing now, so an announcement
lost in a crash between the alert store and this one still opens (or cancels) its order.
"""

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from controller.alerts import AlertRecord, AlertState, BatteryForecast
from controller.fieldwork.metrics import FieldMetrics
from controller.fieldwork.plans import Planned, day_of, plan_today
from controller.influx.lineproto import work_order_line
from controller.store.alerts import Notice
from controller.store.fieldwork import FieldStore
from controller.store.reservations import Reservation
from controller.swapqueue import (
    AlertNotice,
    Event,
    EventKind,
    GeoPoint,
    OrderState,
    Sequencer,
    Severity,
    SwapQueueError,
    TelemetrySample,
    VerifyPolicy,
    WorkOrder,
    WorkOrderBook,
)
from schemas import PowerSource, StatusDeath
from schemas.alert import AlertNotice as AlertMessage
from schemas.ingest_codec import AnyTelemetry, Ingested

log = logging.getLogger(__name__)

_RETRY_S = 1.0
GATHER_S = 0.02
"""After the first item arrives, how long more may gather before they are fed (see the alert service's)."""
_QUIET = frozenset({EventKind.HEALTH_STARTED, EventKind.HEALTH_BROKEN, EventKind.FIX_SEEN})
"""Events that change no route (the plan is kept)."""


@dataclass(frozen=True, slots=True)
class _Offline:
    node_id: str
    at: float


@dataclass(frozen=True, slots=True)
class StopView:
    """A work order as a technician's page shows it."""

    order: WorkOrder
    summary: str
    at: GeoPoint | None
    urgent: bool
    forecast: BatteryForecast | None
    charge_pct: float | None
    """State of charge in the node's last live telemetry since the controller started (None before any)."""
    parcels: tuple[Reservation, ...]


class FieldService:
    """Owns the work-order book; :meth:`start` / :meth:`stop`; :meth:`observe` and :meth:`on_notices` feed it."""

    def __init__(
        self,
        store: FieldStore,
        *,
        policy: VerifyPolicy,
        sites: Mapping[str, GeoPoint],
        sequencer: Sequencer,
        metrics: FieldMetrics,
        clock: Callable[[], float],
        firing: Callable[[], list[AlertRecord]],
        forecast: Callable[[str], BatteryForecast | None],
        active_reservations: Callable[[], list[Reservation]],
        store_lines: Callable[[list[str]], None],
    ) -> None:
        self._store = store
        self._sites = dict(sites)
        self._sequencer = sequencer
        self._metrics = metrics
        self._clock = clock
        self._firing = firing
        self._forecast = forecast
        self._active_reservations = active_reservations
        self._store_lines = store_lines
        stored = store.orders()
        self._summaries = {s.order.order_id: s.summary for s in stored}
        critical = [_notice(r) for r in firing() if r.state is AlertState.FIRING and r.node_id]
        self.book = WorkOrderBook(
            policy, [s.order for s in stored], critical_alerts=[n for n in critical if n.severity is Severity.CRITICAL]
        )
        self._last: dict[str, TelemetrySample] = {}
        self._queue: queue.SimpleQueue[TelemetrySample | _Offline | AlertMessage | None] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._plan_lock = threading.Lock()
        self._unsaved: list[Event] = []
        self._planned: Planned | None = None
        self._changed = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fieldwork", daemon=True)
        metrics.watch(self.open_counts)

    # -- feeding (other threads) ----------------------------------------------------------------------------------

    def observe(self, message: Ingested, now: float) -> None:
        """Queue what an ingested message tells verification (called on the ingest thread: cheap)."""
        if isinstance(message, AnyTelemetry) and not message.replayed:
            battery = message.battery
            charging = battery.charging or battery.power_source is PowerSource.SHORE
            # by position: (node_id, ts, soc_pct, cycle_count, charging); keywords cost a third more per message
            self._queue.put(TelemetrySample(message.node_id, now, battery.soc_pct, battery.cycle_count, charging))
        elif isinstance(message, StatusDeath):
            self._queue.put(_Offline(message.node_id, now))

    def on_notices(self, notices: Iterable[Notice]) -> None:
        """Queue stored alert announcements of nodes (called on the alert thread)."""
        for notice in notices:
            body = notice.body
            if body.get("node_id") and body.get("transition") in ("raised", "escalated", "resolved"):
                self._queue.put(AlertMessage.model_validate(body))

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Reconcile with the alerts firing now, then follow the queue."""
        self._thread.start()

    def stop(self) -> None:
        """Store what is queued and stop."""
        self._stop.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(30)

    # -- technicians and operators (caller's thread) ----------------------------------------------------------------

    def arrive(self, order_id: str, technician_id: str) -> WorkOrder:
        """The technician reached the node; stored on return (:class:`SwapQueueError` if not theirs or closed)."""
        with self._lock:
            self._apply(self.book.arrive(order_id, technician_id, self._clock()))
            return self.book.get(order_id)

    def done(self, order_id: str, technician_id: str) -> WorkOrder:
        """The technician says it is done: the order awaits verification from telemetry; stored on return."""
        with self._lock:
            self._apply(self.book.done(order_id, technician_id, self._clock()))
            return self.book.get(order_id)

    def cancel(self, order_id: str) -> WorkOrder:
        """An operator withdraws an open order; stored on return."""
        with self._lock:
            self._apply(self.book.cancel(order_id, self._clock()))
            return self.book.get(order_id)

    def get(self, order_id: str) -> WorkOrder:
        """The order with this id (:class:`~controller.swapqueue.UnknownWorkOrderError` if none)."""
        with self._lock:
            return self.book.get(order_id)

    def summary(self, order_id: str) -> str:
        """What the alert behind the order said (empty if unknown)."""
        with self._lock:
            return self._summaries.get(order_id, "")

    def orders(self) -> list[tuple[WorkOrder, str]]:
        """Every work order with its summary, newest first."""
        with self._lock:
            found = [(o, self._summaries.get(o.order_id, "")) for o in self.book.orders.values()]
        return sorted(found, key=lambda p: (-p[0].created_at, p[0].order_id))

    def open_counts(self) -> dict[str, int]:
        """Open orders by state."""
        counts = {s.value: 0 for s in OrderState if s not in (OrderState.VERIFIED, OrderState.CANCELLED)}
        with self._lock:
            for order in self.book.open_orders():
                counts[order.state.value] += 1
        return counts

    def route(self, technician_id: str) -> list[StopView]:
        """Today's stops of ``technician_id`` in visiting order, then their orders awaiting verification, then those
        closed today. Plans first if the orders changed since the last plan (or the day turned)."""
        now = self._clock()
        planned = self._plan(now)
        _day, start, _end = day_of(now)
        with self._lock:
            charge = {n: s.soc_pct for n, s in self._last.items()}
            route = [self.book.get(i) for i in planned.route_of(technician_id)]
            route = [o for o in route if o.state in (OrderState.ASSIGNED, OrderState.ARRIVED)]
            mine = [o for o in self.book.orders.values() if o.technician_id == technician_id and o not in route]
            waiting = [o for o in mine if o.state is OrderState.AWAITING_VERIFICATION]
            closed = [o for o in mine if not o.is_open and (o.closed_at or 0.0) >= start]
        waiting.sort(key=lambda o: o.done_at or 0.0)
        closed.sort(key=lambda o: o.closed_at or 0.0)
        held: dict[str, list[Reservation]] = {}
        for r in self._active_reservations():
            if r.node_id is not None:
                held.setdefault(r.node_id, []).append(r)
        return [
            StopView(
                o,
                self._summaries.get(o.order_id, ""),
                self._sites.get(o.site_id),
                o.order_id in planned.urgent,
                self._forecast(o.node_id) if o.is_open else None,
                charge.get(o.node_id),
                tuple(held.get(o.node_id, ())),
            )
            for o in (*route, *waiting, *closed)
        ]

    # -- planning ---------------------------------------------------------------------------------------------------

    def _plan(self, now: float) -> Planned:
        """Today's plan, made again when the orders changed or the day turned; planned orders are assigned."""
        with self._plan_lock:
            planned = self._planned
            if planned is not None and not self._changed and planned.day == day_of(now)[0]:
                return planned
            technicians = self._store.technicians()
            parcels: dict[str, int] = {}
            for r in self._active_reservations():
                if r.node_id is not None:
                    parcels[r.node_id] = parcels.get(r.node_id, 0) + 1
            with self._lock:
                self._changed = False
                orders = self.book.open_orders()
            planned = plan_today(orders, technicians, self._sites, parcels, now, self._sequencer)
            if planned.unplaced:
                log.warning(
                    "work orders left out of today's routes orders=%s action=add their sites' lat/lon to the sites "
                    "file (--sites-file) and restart the controller",
                    ",".join(planned.unplaced),
                )
            with self._lock:
                for route in planned.plan.routes:
                    for order_id in route.order_ids:
                        self._assign(order_id, route.technician_id, now)
                self._changed = False  # assigning pinned the orders: the plan stands
            self._planned = planned
            return planned

    def _assign(self, order_id: str, technician_id: str, now: float) -> None:
        try:
            self._apply(self.book.assign(order_id, technician_id, now))
        except SwapQueueError as exc:  # changed while planning (closed, or someone arrived): the next plan sees it
            log.info(
                "work order not assigned order=%s technician=%s reason=%s action=none", order_id, technician_id, exc
            )
            self._changed = True

    # -- the thread -------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with self._lock:
                self._apply(self._reconcile(self._clock()))
        except Exception:
            log.exception("work orders not reconciled with the firing alerts action=report this bug; new alerts apply")
        while not self._stop.is_set():
            batch = self._take()
            try:
                with self._lock:
                    events: list[Event] = []
                    for item in batch:
                        events += self._feed(item)
                    self._apply(events)
            except Exception:
                log.exception("work-order update failed action=report this bug; the queue goes on")
        with self._lock:
            self._apply([])

    def _take(self) -> list[TelemetrySample | _Offline | AlertMessage]:
        timeout = _RETRY_S if self._unsaved else None
        items: list[TelemetrySample | _Offline | AlertMessage] = []
        try:
            first = self._queue.get(timeout=timeout)
            if first is not None and self._queue.qsize() < 5000:
                self._stop.wait(GATHER_S)  # let a burst gather: one wake-up per batch, not per message
            while True:
                if first is not None:
                    items.append(first)
                if len(items) >= 5000:
                    break
                first = self._queue.get_nowait()
        except queue.Empty:
            pass
        return items

    def _feed(self, item: TelemetrySample | _Offline | AlertMessage) -> list[Event]:
        if isinstance(item, TelemetrySample):
            self._last[item.node_id] = item
            return self.book.observe(item)
        if isinstance(item, _Offline):
            last = self._last.get(item.node_id)
            if last is None or item.at <= last.ts:
                return []
            self._last[item.node_id] = last._replace(ts=item.at, online=False)
            return self.book.observe(self._last[item.node_id])
        at = item.at.timestamp()
        if item.transition == "resolved":
            return self.book.on_alert_resolved(item.alert_id, at)
        hours = item.details.get("hours_to_empty")
        notice = AlertNotice(
            item.alert_id,
            item.rule,
            item.node_id or "",
            item.site_id or "",
            Severity(item.severity),
            float(hours) if isinstance(hours, int | float) else None,
            at,
        )
        events = self.book.on_alert(notice)
        for e in events:
            if e.kind in (EventKind.CREATED, EventKind.UPDATED):
                self._summaries[e.order.order_id] = item.summary
        return events

    def _reconcile(self, now: float) -> list[Event]:
        """Apply what the alerts firing now say and the stored orders do not know (a crash lost its announcement)."""
        firing = {r.id: r for r in self._firing() if r.state is AlertState.FIRING and r.node_id}
        active = {a for o in self.book.open_orders() for a in o.active_alert_ids}
        events: list[Event] = []
        for r in firing.values():
            if r.rule in self.book.policy.rule_kinds and r.id not in active:
                found = self.book.on_alert(_notice(r, now))
                events += found
                for e in found:
                    if e.kind is EventKind.CREATED:
                        self._summaries[e.order.order_id] = r.summary
        for alert_id in sorted(active - set(firing)):
            events += self.book.on_alert_resolved(alert_id, now)
        return events

    # -- storing --------------------------------------------------------------------------------------------------

    def _apply(self, events: list[Event]) -> None:
        """Store ``events`` (with any left by a failed store), write their points, count them; caller holds the lock."""
        if any(e.kind not in _QUIET for e in events):
            self._changed = True
        self._unsaved += events
        if not self._unsaved:
            return
        try:
            self._store.save(self._unsaved, self._summaries)
        except SQLAlchemyError as exc:
            log.warning(
                "work orders not stored error=%r waiting=%d action=check the controller store; retrying in %.0f s "
                "(nothing is lost meanwhile)",
                exc,
                len(self._unsaved),
                _RETRY_S,
            )
            return
        saved, self._unsaved = self._unsaved, []
        self._store_lines([work_order_line(e) for e in saved])
        for e in saved:
            self._metrics.event(e)
            _log_event(e, self._summaries.get(e.order.order_id, ""))


def _notice(r: AlertRecord, now: float = 0.0) -> AlertNotice:
    """The swap queue's view of a firing alert record."""
    hours = r.details.get("hours_to_empty")
    return AlertNotice(
        r.id,
        r.rule,
        r.node_id or "",
        r.site_id or "",
        Severity(r.severity.value),
        float(hours) if isinstance(hours, int | float) else None,
        r.firing_since or now,
    )


def _log_event(e: Event, summary: str) -> None:
    o = e.order
    if e.kind is EventKind.CREATED:
        log.warning(
            "work order created order=%s node=%s site=%s kind=%s severity=%s summary=%r action=it goes on a "
            "technician's route (GET /v1/work-orders to see it)",
            o.order_id,
            o.node_id,
            o.site_id,
            o.kind.value,
            o.severity.value,
            summary,
        )
    elif e.kind in (EventKind.VERIFIED, EventKind.CANCELLED, EventKind.DONE, EventKind.FIX_SEEN):
        log.info(
            "work order %s order=%s node=%s technician=%s evidence=%s action=none",
            e.kind.value,
            o.order_id,
            o.node_id,
            o.technician_id,
            o.evidence and o.evidence.value,
        )
