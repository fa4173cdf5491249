"""Builders shared by the swap-queue tests."""

from controller.swapqueue import OrderState, ProblemKind, Severity, WorkOrder


def order(
    order_id: str = "wo-1",
    *,
    node: str = "n1",
    site: str = "s1",
    hours: float | None = 5.0,
    severity: Severity = Severity.WARNING,
    created_at: float = 0.0,
    state: OrderState = OrderState.OPEN,
    kind: ProblemKind = ProblemKind.BATTERY_SWAP,
    technician: str | None = None,
) -> WorkOrder:
    """A work order as the book would hold it."""
    return WorkOrder(
        order_id=order_id,
        node_id=node,
        site_id=site,
        kind=kind,
        state=state,
        severity=severity,
        hours_to_empty=hours,
        forecast_at=created_at,
        created_at=created_at,
        updated_at=created_at,
        alert_ids=(f"alert-{order_id}",),
        active_alert_ids=frozenset({f"alert-{order_id}"}),
        technician_id=technician,
    )
