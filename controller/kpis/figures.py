"""Field KPIs from what the controller stores: alert announcements, work-order points and ledger points. Pure.

Each figure covers a window ``[start, end)`` of POSIX seconds and counts what *ended* in it (an acknowledgement, a
resolution, a verified swap, a pickup, a reservation last reported by its node) or, for the alert rate, what was
raised in it. A figure over nothing is None, never 0: "no swap verified today" is not "swaps take no time".
"""

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from statistics import fmean

from controller.swapqueue.kpis import AlertRecord, alerts_per_100_nodes_per_day, mean_time_to_acknowledge
from schemas.alert import AlertNotice

SWAP_KINDS = frozenset({"battery_swap", "pack_replacement"})
"""Work-order kinds whose verification is a swap (the ``kind`` tag of ``work_order`` points)."""

_STATE_AFTER = {
    "held": "held",
    "deposited": "deposited",
    "picked_up": "picked_up",
    "hold_expired": "expired",
    "cancelled": "cancelled",
}
"""The controller's reservation state a node's ledger transition implies (as the reconciliation applies it)."""


@dataclass(frozen=True, slots=True)
class WorkOrderPoint:
    """One ``work_order`` point: a change of a technician's work order."""

    order_id: str
    event: str
    kind: str
    at: float
    alert_ids: tuple[str, ...] = ()
    duration_s: float | None = None
    """From the first alert to this event."""
    cancel_reason: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerPoint:
    """One ``ledger`` point about a reservation: what its node recorded, when (device time), and whether it was
    sent late, after the node had been cut off (``replayed``)."""

    reservation_id: str
    transition: str
    at: float
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class FieldKpis:
    """The field KPIs of one window; None where nothing in the window measures it."""

    window_s: float
    nodes: int
    alerts_raised: int
    mean_time_to_swap_s: float | None
    mean_time_to_acknowledge_s: float | None
    alerts_per_100_nodes_per_day: float | None
    noise_share: float | None
    """Share of alerts resolved in the window that nobody acknowledged and no technician was sent to."""
    fulfilment_mean_s: float | None
    fulfilment_p90_s: float | None
    """Deposit to pickup, over parcels picked up in the window."""
    sync_success_share: float | None
    """Share of reservations a node reported on after a partition whose controller state matches the node's."""


def episodes(notices: Iterable[AlertNotice]) -> list[AlertRecord]:
    """One record per alert episode announced in ``notices``, with the times its raise, ack and resolve happened.

    A transition announced before the notices at hand is recovered from the durations a later one carries
    (``time_to_ack_s``, ``time_to_resolve_s`` count from firing); an episode without any raise time is left out.
    """
    grouped: dict[tuple[str, int], list[AlertNotice]] = {}
    for n in notices:
        grouped.setdefault((n.alert_id, n.episode), []).append(n)
    out: list[AlertRecord] = []
    for (alert_id, _episode), items in sorted(grouped.items()):
        at = {n.transition: n.at.timestamp() for n in items}
        raised = at.get("raised")
        acked, resolved = at.get("acknowledged"), at.get("resolved")
        for n in items:
            if raised is None and n.time_to_ack_s is not None and n.transition == "acknowledged":
                raised = n.at.timestamp() - n.time_to_ack_s
            if raised is None and n.time_to_resolve_s is not None:
                raised = n.at.timestamp() - n.time_to_resolve_s
        if raised is None:
            continue
        if acked is None:
            to_ack = next((n.time_to_ack_s for n in items if n.time_to_ack_s is not None), None)
            acked = None if to_ack is None else raised + to_ack
        node = next((n.node_id for n in items if n.node_id), "")
        out.append(AlertRecord(alert_id, node, raised, acked, resolved))
    return out


def noise_share(alerts: Iterable[AlertRecord], acted: Collection[str], start: float, end: float) -> float | None:
    """Share of alerts resolved in the window never acknowledged and not in ``acted`` (alerts a technician was sent
    to, see :func:`acted_alerts`)."""
    resolved = [a for a in alerts if a.resolved_at is not None and start <= a.resolved_at < end]
    if not resolved:
        return None
    quiet = sum(1 for a in resolved if a.acknowledged_at is None and a.alert_id not in acted)
    return quiet / len(resolved)


def acted_alerts(points: Iterable[WorkOrderPoint]) -> set[str]:
    """Alerts behind a work order that was not cancelled as resolved without action."""
    points = list(points)
    noise = {p.order_id for p in points if p.event == "cancelled" and p.cancel_reason == "resolved_without_action"}
    return {a for p in points if p.order_id not in noise for a in p.alert_ids}


def mean_time_to_swap(points: Iterable[WorkOrderPoint], start: float, end: float) -> float | None:
    """Mean seconds from the first alert to the verified swap, over swap orders verified in the window."""
    spans = [
        p.duration_s
        for p in points
        if p.event == "verified" and p.kind in SWAP_KINDS and p.duration_s is not None and start <= p.at < end
    ]
    return fmean(spans) if spans else None


def fulfilment(points: Iterable[LedgerPoint], start: float, end: float) -> tuple[float | None, float | None]:
    """Mean and 90th percentile (nearest rank) of deposit → pickup seconds over pickups in the window.

    A pickup whose deposit is not among ``points`` (deposited before the look-back) is left out.
    """
    deposited: dict[str, float] = {}
    picked: dict[str, float] = {}
    for p in points:
        if p.transition == "deposited":
            deposited[p.reservation_id] = min(p.at, deposited.get(p.reservation_id, math.inf))
        elif p.transition == "picked_up" and start <= p.at < end:
            picked[p.reservation_id] = p.at
    spans = sorted(max(0.0, at - deposited[rid]) for rid, at in picked.items() if rid in deposited)
    if not spans:
        return None, None
    return fmean(spans), spans[max(0, math.ceil(0.9 * len(spans)) - 1)]


def sync_success(
    points: Iterable[LedgerPoint], state_of: Callable[[str], str | None], start: float, end: float
) -> float | None:
    """Share of reservations with a replayed ledger point in the window whose controller state (``state_of``; None:
    not this controller's) is what the node's last transition implies."""
    last: dict[str, LedgerPoint] = {}
    replayed: set[str] = set()
    for p in points:
        if p.transition not in _STATE_AFTER or not start <= p.at < end:
            continue
        if p.replayed:
            replayed.add(p.reservation_id)
        seen = last.get(p.reservation_id)
        if seen is None or p.at >= seen.at:
            last[p.reservation_id] = p
    checked = matching = 0
    for rid in sorted(replayed):
        state = state_of(rid)
        if state is None:
            continue
        checked += 1
        matching += state == _STATE_AFTER[last[rid].transition]
    return matching / checked if checked else None


def field_kpis(
    notices: Iterable[AlertNotice],
    orders: Iterable[WorkOrderPoint],
    ledger: Iterable[LedgerPoint],
    state_of: Callable[[str], str | None],
    nodes: int,
    start: float,
    end: float,
) -> FieldKpis:
    """Every field KPI for the window ``[start, end)`` over ``nodes`` known nodes."""
    alerts, orders, ledger = episodes(notices), list(orders), list(ledger)
    mean_s, p90_s = fulfilment(ledger, start, end)
    return FieldKpis(
        window_s=end - start,
        nodes=nodes,
        alerts_raised=sum(1 for a in alerts if start <= a.raised_at < end),
        mean_time_to_swap_s=mean_time_to_swap(orders, start, end),
        mean_time_to_acknowledge_s=mean_time_to_acknowledge(alerts, start, end),
        alerts_per_100_nodes_per_day=alerts_per_100_nodes_per_day(alerts, nodes, start, end),
        noise_share=noise_share(alerts, acted_alerts(orders), start, end),
        fulfilment_mean_s=mean_s,
        fulfilment_p90_s=p90_s,
        sync_success_share=sync_success(ledger, state_of, start, end),
    )
