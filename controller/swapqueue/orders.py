"""Work-order book: alerts open work orders, technicians act on them, telemetry alone closes them.

Pure state machine (sans-IO): every method takes the time from its caller and returns the :class:`Event` list it
caused; the caller stores ``event.order`` and notifies. One open order exists per (node, problem kind): a repeated
alert refreshes it. An order is verified only when telemetry shows the fix (see :class:`VerifyPolicy`) and then a
sample shows the node healthy — online, no other critical alert — for ``healthy_for_s`` without a break. A
technician's ``done`` only moves it to ``awaiting_verification``. If every alert behind an order resolves before a
technician arrived and before any fix was seen, the order is cancelled as resolved without action.
"""

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from controller.swapqueue.model import (
    ActionOrderError,
    AlertNotice,
    CancelReason,
    Event,
    EventKind,
    Evidence,
    NotAssignedError,
    OrderState,
    ProblemKind,
    Severity,
    TelemetrySample,
    UnknownWorkOrderError,
    VerifyPolicy,
    WorkOrder,
    WorkOrderClosedError,
)

_ACTED = frozenset({OrderState.ARRIVED, OrderState.AWAITING_VERIFICATION})
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class WorkOrderBook:
    """All work orders, the last sample of each node and the critical alerts firing per node."""

    def __init__(
        self,
        policy: VerifyPolicy | None = None,
        orders: Iterable[WorkOrder] = (),
        last_samples: Iterable[TelemetrySample] = (),
        critical_alerts: Iterable[AlertNotice] = (),
    ) -> None:
        """Start empty, or resume from stored orders, each node's last sample and the critical alerts still firing."""
        self.policy = policy or VerifyPolicy()
        self._orders: dict[str, WorkOrder] = {}
        self._open: dict[str, dict[ProblemKind, str]] = {}
        self._by_alert: dict[str, str] = {}
        self._last: dict[str, TelemetrySample] = {s.node_id: s for s in last_samples}
        self._critical: dict[str, str] = {}
        self._critical_by_node: dict[str, set[str]] = {}
        for order in orders:
            self._put(order)
        for alert in critical_alerts:
            self._add_critical(alert)

    @property
    def orders(self) -> Mapping[str, WorkOrder]:
        """Every order by id, open and closed (read-only view)."""
        return MappingProxyType(self._orders)

    def open_orders(self) -> list[WorkOrder]:
        """Orders not yet verified or cancelled, oldest first."""
        ids = (i for kinds in self._open.values() for i in kinds.values())
        return sorted((self._orders[i] for i in ids), key=lambda o: (o.created_at, o.order_id))

    def get(self, order_id: str) -> WorkOrder:
        """The order with this id, or :class:`UnknownWorkOrderError`."""
        try:
            return self._orders[order_id]
        except KeyError:
            raise UnknownWorkOrderError(f"no work order {order_id!r}; list open orders to find its id") from None

    # --- alerts -------------------------------------------------------------------------------------------------

    def on_alert(self, alert: AlertNotice) -> list[Event]:
        """An alert fired: open a work order for its (node, kind), or refresh the open one.

        A critical alert also breaks the healthy stretch of the node's other orders under verification.
        """
        events = []
        kind = self.policy.rule_kinds.get(alert.rule)
        if kind is not None:
            events.append(self._open_or_refresh(alert, kind))
        if alert.severity is Severity.CRITICAL:
            self._add_critical(alert)
            events.extend(self._break_health(alert))
        return events

    def _open_or_refresh(self, alert: AlertNotice, kind: ProblemKind) -> Event:
        existing = self._open.get(alert.node_id, {}).get(kind)
        if existing is None:
            order = WorkOrder(
                order_id=self._new_order_id(alert.alert_id),
                node_id=alert.node_id,
                site_id=alert.site_id,
                kind=kind,
                state=OrderState.OPEN,
                severity=alert.severity,
                hours_to_empty=alert.hours_to_empty,
                forecast_at=alert.created_at,
                created_at=alert.created_at,
                updated_at=alert.created_at,
                alert_ids=(alert.alert_id,),
                active_alert_ids=frozenset({alert.alert_id}),
            )
            return self._emit(EventKind.CREATED, order, alert.created_at)
        return self._refresh(self._orders[existing], alert)

    def _new_order_id(self, alert_id: str) -> str:
        order_id, n = f"wo-{alert_id}", 1
        while order_id in self._orders:
            order_id, n = f"wo-{alert_id}-{n}", n + 1
        return order_id

    def _refresh(self, order: WorkOrder, alert: AlertNotice) -> Event:
        seen = alert.alert_id in order.alert_ids
        forecast = alert.hours_to_empty is not None
        order = replace(
            order,
            severity=max(order.severity, alert.severity, key=_SEVERITY_RANK.__getitem__),
            hours_to_empty=alert.hours_to_empty if forecast else order.hours_to_empty,
            forecast_at=alert.created_at if forecast else order.forecast_at,
            updated_at=alert.created_at,
            alert_ids=order.alert_ids if seen else (*order.alert_ids, alert.alert_id),
            active_alert_ids=order.active_alert_ids | {alert.alert_id},
            occurrences=order.occurrences + (0 if seen else 1),
        )
        if order.evidence is Evidence.ALERT_RESOLVED:
            order = replace(order, evidence=None, evidence_at=None, healthy_since=None)
        return self._emit(EventKind.UPDATED, order, alert.created_at)

    def on_alert_resolved(self, alert_id: str, now: float) -> list[Event]:
        """An alert resolved: it stops counting against health; an order whose alerts all resolved may cancel."""
        node_id = self._critical.pop(alert_id, None)
        if node_id is not None:
            self._critical_by_node[node_id].discard(alert_id)
        order = self._orders.get(self._by_alert.get(alert_id, ""))
        if order is None or not order.is_open or alert_id not in order.active_alert_ids:
            return []
        order = replace(order, active_alert_ids=order.active_alert_ids - {alert_id})
        if not order.active_alert_ids and order.evidence is None:
            if order.state not in _ACTED:
                order = replace(order, cancel_reason=CancelReason.RESOLVED_WITHOUT_ACTION)
                return [self._close(order, OrderState.CANCELLED, EventKind.CANCELLED, now)]
            if order.kind is ProblemKind.FIELD_REPAIR:
                order = replace(order, evidence=Evidence.ALERT_RESOLVED, evidence_at=now, healthy_since=None)
                return [self._emit(EventKind.FIX_SEEN, order, now)]
        return [self._emit(EventKind.UPDATED, order, now)]

    # --- technician and operator actions ------------------------------------------------------------------------

    def assign(self, order_id: str, technician_id: str, now: float) -> list[Event]:
        """Give an open order to a technician (or hand it to another one before anyone arrived)."""
        order = self._open_order(order_id, "assign")
        if order.technician_id == technician_id and order.state is OrderState.ASSIGNED:
            return []
        if order.state not in (OrderState.OPEN, OrderState.ASSIGNED):
            raise ActionOrderError(
                f"work order {order_id!r} is {order.state}; a technician is already on it, so it cannot be reassigned"
            )
        order = replace(order, state=OrderState.ASSIGNED, technician_id=technician_id, assigned_at=now)
        return [self._emit(EventKind.ASSIGNED, order, now)]

    def arrive(self, order_id: str, technician_id: str, now: float) -> list[Event]:
        """The assigned technician reached the node (repeats change nothing)."""
        order = self._mine(order_id, technician_id, "arrive")
        if order.state is not OrderState.ASSIGNED:
            return []
        return [self._emit(EventKind.ARRIVED, replace(order, state=OrderState.ARRIVED, arrived_at=now), now)]

    def done(self, order_id: str, technician_id: str, now: float) -> list[Event]:
        """The technician says the job is done: the order awaits verification from telemetry; it does not close."""
        order = self._mine(order_id, technician_id, "done")
        if order.state is OrderState.AWAITING_VERIFICATION:
            return []
        order = replace(order, state=OrderState.AWAITING_VERIFICATION, done_at=now)
        return [self._emit(EventKind.DONE, order, now)]

    def cancel(self, order_id: str, now: float) -> list[Event]:
        """An operator withdraws an open order (for example the node was decommissioned)."""
        order = replace(self._open_order(order_id, "cancel"), cancel_reason=CancelReason.OPERATOR)
        return [self._close(order, OrderState.CANCELLED, EventKind.CANCELLED, now)]

    def _open_order(self, order_id: str, action: str) -> WorkOrder:
        order = self.get(order_id)
        if not order.is_open:
            raise WorkOrderClosedError(f"cannot {action} work order {order_id!r}: it is already {order.state}")
        return order

    def _mine(self, order_id: str, technician_id: str, action: str) -> WorkOrder:
        order = self._open_order(order_id, action)
        if order.technician_id != technician_id:
            raise NotAssignedError(
                f"cannot {action} work order {order_id!r}: it is assigned to {order.technician_id or 'nobody'}, "
                f"not {technician_id!r}; ask the dispatcher to assign it to you"
            )
        return order

    # --- telemetry ----------------------------------------------------------------------------------------------

    def observe(self, sample: TelemetrySample) -> list[Event]:
        """Look at one telemetry sample: spot a fix, follow the healthy stretch, verify. Older samples are ignored."""
        prev = self._last.get(sample.node_id)
        if prev is not None and sample.ts <= prev.ts:
            return []
        self._last[sample.node_id] = sample
        events: list[Event] = []
        for order in self._node_orders(sample.node_id):
            current = order
            if current.evidence is None:
                evidence = _evidence(current, prev, sample, self.policy)
                if evidence is None:
                    continue
                current = replace(current, evidence=evidence, evidence_at=sample.ts, healthy_since=None)
                events.append(self._emit(EventKind.FIX_SEEN, current, sample.ts))
            events.extend(self._follow_health(current, sample))
        return events

    def _follow_health(self, order: WorkOrder, sample: TelemetrySample) -> list[Event]:
        if not self._healthy(order, sample):
            if order.healthy_since is None:
                return []
            return [self._emit(EventKind.HEALTH_BROKEN, replace(order, healthy_since=None), sample.ts)]
        started = order.healthy_since is None
        since = sample.ts if order.healthy_since is None else order.healthy_since
        order = replace(order, healthy_since=since)
        if sample.ts - since >= self.policy.healthy_for_s:
            return [self._close(order, OrderState.VERIFIED, EventKind.VERIFIED, sample.ts)]
        return [self._emit(EventKind.HEALTH_STARTED, order, sample.ts)] if started else []

    def _healthy(self, order: WorkOrder, sample: TelemetrySample) -> bool:
        """Online, and no critical alert firing on the node other than the order's own."""
        others = self._critical_by_node.get(order.node_id, set()).difference(order.alert_ids)
        return sample.online and not others

    def _add_critical(self, alert: AlertNotice) -> None:
        self._critical[alert.alert_id] = alert.node_id
        self._critical_by_node.setdefault(alert.node_id, set()).add(alert.alert_id)

    def _break_health(self, alert: AlertNotice) -> list[Event]:
        return [
            self._emit(EventKind.HEALTH_BROKEN, replace(order, healthy_since=None), alert.created_at)
            for order in self._node_orders(alert.node_id)
            if order.healthy_since is not None and alert.alert_id not in order.alert_ids
        ]

    def _node_orders(self, node_id: str) -> list[WorkOrder]:
        kinds = self._open.get(node_id)
        if not kinds:  # nearly every node, for every telemetry sample
            return []
        return [self._orders[kinds[k]] for k in sorted(kinds)]

    # --- bookkeeping --------------------------------------------------------------------------------------------

    def _emit(self, kind: EventKind, order: WorkOrder, at: float) -> Event:
        order = replace(order, updated_at=max(order.updated_at, at))
        self._put(order)
        return Event(kind, order, at)

    def _close(self, order: WorkOrder, state: OrderState, kind: EventKind, at: float) -> Event:
        return self._emit(kind, replace(order, state=state, closed_at=at), at)

    def _put(self, order: WorkOrder) -> None:
        self._orders[order.order_id] = order
        kinds = self._open.setdefault(order.node_id, {})
        if order.is_open:
            kinds[order.kind] = order.order_id
        elif kinds.get(order.kind) == order.order_id:
            del kinds[order.kind]
        for alert_id in order.alert_ids:
            self._by_alert[alert_id] = order.order_id


def _evidence(
    order: WorkOrder, prev: TelemetrySample | None, cur: TelemetrySample, policy: VerifyPolicy
) -> Evidence | None:
    """What in ``cur`` (against ``prev``) proves the fix of ``order``, if anything."""
    if order.kind is ProblemKind.FIELD_REPAIR or prev is None or cur.ts < order.created_at:
        return None
    if prev.pack_id is not None and cur.pack_id is not None and prev.pack_id != cur.pack_id:
        return Evidence.PACK_CHANGED
    if cur.cycle_count < prev.cycle_count:
        return Evidence.CYCLE_RESET
    jumped = cur.soc_pct - prev.soc_pct >= policy.soc_jump_pct and not (prev.charging or cur.charging)
    if order.kind is ProblemKind.BATTERY_SWAP and jumped:
        return Evidence.SOC_JUMP
    return None
