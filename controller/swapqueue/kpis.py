"""Field KPIs over work orders and alerts: pure functions of what is stored, for /metrics, InfluxDB and dashboards.

Every function takes a window ``[start, end)`` in POSIX seconds and counts what *ended* in it (a swap verified, an
alert acknowledged or resolved) or, for the alert rate, what was raised in it. A mean over nothing is None, not 0.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from statistics import fmean

from controller.swapqueue.model import CancelReason, OrderState, ProblemKind, WorkOrder

SWAP_KINDS = frozenset({ProblemKind.BATTERY_SWAP, ProblemKind.PACK_REPLACEMENT})


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert episode as the KPIs need it (built by the caller from the alert engine's stored alert)."""

    alert_id: str
    node_id: str
    raised_at: float
    acknowledged_at: float | None = None
    resolved_at: float | None = None


@dataclass(frozen=True, slots=True)
class FieldKpis:
    """The four field KPIs for one window."""

    mean_time_to_swap_s: float | None
    mean_time_to_acknowledge_s: float | None
    alerts_per_100_nodes_per_day: float | None
    noise_share: float | None


def mean_time_to_swap(orders: Iterable[WorkOrder], start: float, end: float) -> float | None:
    """Mean seconds from the first alert to the verified swap, over swap orders verified in the window."""
    spans = [
        o.closed_at - o.created_at
        for o in orders
        if o.kind in SWAP_KINDS and o.state is OrderState.VERIFIED and o.closed_at is not None
        if start <= o.closed_at < end
    ]
    return fmean(spans) if spans else None


def mean_time_to_acknowledge(alerts: Iterable[AlertRecord], start: float, end: float) -> float | None:
    """Mean seconds from raise to acknowledgement, over alerts acknowledged in the window."""
    spans = [
        a.acknowledged_at - a.raised_at
        for a in alerts
        if a.acknowledged_at is not None and start <= a.acknowledged_at < end
    ]
    return fmean(spans) if spans else None


def alerts_per_100_nodes_per_day(
    alerts: Iterable[AlertRecord], node_count: int, start: float, end: float
) -> float | None:
    """Alerts raised in the window per 100 nodes per day; None for an empty fleet or window."""
    if node_count <= 0 or end <= start:
        return None
    raised = sum(1 for a in alerts if start <= a.raised_at < end)
    return raised / (node_count / 100.0) / ((end - start) / 86_400.0)


def noise_share(alerts: Iterable[AlertRecord], orders: Iterable[WorkOrder], start: float, end: float) -> float | None:
    """Share of alerts resolved in the window without action: never acknowledged, and no technician went.

    "No technician went" means the alert fed no work order, or fed one cancelled as resolved without action.
    """
    acted = {
        alert_id
        for o in orders
        if not (o.state is OrderState.CANCELLED and o.cancel_reason is CancelReason.RESOLVED_WITHOUT_ACTION)
        for alert_id in o.alert_ids
    }
    resolved = [a for a in alerts if a.resolved_at is not None and start <= a.resolved_at < end]
    if not resolved:
        return None
    quiet = sum(1 for a in resolved if a.acknowledged_at is None and a.alert_id not in acted)
    return quiet / len(resolved)


def field_kpis(
    orders: Iterable[WorkOrder], alerts: Iterable[AlertRecord], node_count: int, start: float, end: float
) -> FieldKpis:
    """All four KPIs for one window."""
    orders, alerts = list(orders), list(alerts)
    return FieldKpis(
        mean_time_to_swap(orders, start, end),
        mean_time_to_acknowledge(alerts, start, end),
        alerts_per_100_nodes_per_day(alerts, node_count, start, end),
        noise_share(alerts, orders, start, end),
    )
