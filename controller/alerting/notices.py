"""The engine's notifications as contract messages (``schemas.alert.AlertNotice``), with times to ack and resolve."""

import math
from datetime import UTC, datetime

from controller.alerts import AlertRecord, Notification, Transition
from controller.store.alerts import Notice
from schemas.alert import MAX_DETAIL_ITEMS, AlertNotice, DetailValue

_MAX_DETAILS = 32


def notice_of(n: Notification, record: AlertRecord | None) -> AlertNotice:
    """The message announcing ``n``; ``record`` (the alert as it is now) adds the times to ack and resolve."""
    to_ack, to_resolve = _durations(n, record)
    return AlertNotice(
        delivery_key=n.delivery_key,
        alert_id=n.alert_id,
        episode=n.episode,
        transition=n.transition.value,
        at=datetime.fromtimestamp(n.at, UTC),
        rule=n.rule,
        severity=n.severity.value,
        site_id=n.site_id,
        node_id=n.node_id,
        compartment=n.compartment,
        summary=n.summary[:256],
        count=n.count,
        value=_finite(n.value),
        details=dict(list(_details(n))[:_MAX_DETAILS]),
        acked_by=None if n.acked_by is None else n.acked_by[:64],
        time_to_ack_s=to_ack,
        time_to_resolve_s=to_resolve,
    )


def stored_notice(n: Notification, record: AlertRecord | None) -> Notice:
    """What the store keeps of ``n``: its key, its alert and its message as JSON."""
    return Notice(n.delivery_key, n.alert_id, notice_of(n, record).model_dump(mode="json"))


def _durations(n: Notification, record: AlertRecord | None) -> tuple[float | None, float | None]:
    if record is None or record.episode != n.episode or record.firing_since is None:
        return None, None
    to_ack = None
    if record.acked_at is not None and n.transition in (Transition.ACKNOWLEDGED, Transition.RESOLVED):
        to_ack = max(0.0, record.acked_at - record.firing_since)
    to_resolve = None
    if n.transition is Transition.RESOLVED and record.resolved_at is not None:
        to_resolve = max(0.0, record.resolved_at - record.firing_since)
    return to_ack, to_resolve


def _details(n: Notification) -> list[tuple[str, DetailValue]]:
    out: list[tuple[str, DetailValue]] = []
    for key, value in n.details.items():
        if isinstance(value, list):
            out.append((key[:64], [str(v)[:256] for v in value[:MAX_DETAIL_ITEMS]]))
        elif isinstance(value, float):
            out.append((key[:64], _finite(value)))
        elif isinstance(value, str):
            out.append((key[:64], value[:256]))
        else:
            out.append((key[:64], value))
    return out


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
