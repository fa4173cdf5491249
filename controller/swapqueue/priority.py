"""How urgent a work order is: the score, and the order in which today's stops are taken.

Score (0 to 100, higher first)::

    score = 60·u + 25·p + 15·s
    u = 2^(-hours_to_empty / 12)      1 when empty now or overdue, ½ at 12 h, ¼ at 24 h; 0 without a forecast
    p = 1 - 2^(-parcels / 5)          parcels held in the node's compartments: 0 → 0, 5 → ½, 10 → ¾
    s = 0 info, ½ warning, 1 critical

``u`` falls strictly as the forecast grows, so with equal parcels and severity the sooner-empty node always ranks
higher. On top of the score, a stop is **urgent** when its node is forecast empty before the end of the working day:
urgent stops rank above every other stop whatever their scores, so they are planned into today's routes first.
Ties break by the earlier empty forecast, then the older order, then the id (the ranking is deterministic).
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.swapqueue.model import Severity, WorkOrder

URGENCY_HALF_LIFE_H = 12.0
PARCELS_HALF_AT = 5.0
WEIGHTS = (60.0, 25.0, 15.0)
"""Weights of urgency, parcels affected and severity in the score; they sum to 100."""
_SEVERITY = {Severity.INFO: 0.0, Severity.WARNING: 0.5, Severity.CRITICAL: 1.0}


@dataclass(frozen=True, slots=True)
class Ranked:
    """A work order with its place in the queue."""

    order: WorkOrder
    score: float
    urgent: bool
    """Forecast empty before the end of the working day."""
    parcels: int
    hours_left: float | None
    """Hours from ``now`` to the forecast empty instant (negative when overdue); None without a forecast."""


def score(hours_to_empty: float | None, parcels: int, severity: Severity) -> float:
    """Priority score of one order (see the module docstring)."""
    if parcels < 0:
        raise ValueError(f"parcels affected must be ≥ 0, got {parcels}")
    urgency = 0.0 if hours_to_empty is None else math.pow(2.0, -max(hours_to_empty, 0.0) / URGENCY_HALF_LIFE_H)
    held = 1.0 - math.pow(2.0, -parcels / PARCELS_HALF_AT)
    wu, wp, ws = WEIGHTS
    return wu * urgency + wp * held + ws * _SEVERITY[severity]


def rank(orders: Iterable[WorkOrder], parcels: Mapping[str, int], now: float, day_ends_at: float) -> list[Ranked]:
    """Open orders, most urgent first. ``parcels`` maps node id to parcels held there (missing: 0)."""
    ranked = []
    for order in orders:
        if not order.is_open:
            continue
        empty_at = order.empty_at
        left = None if empty_at is None else (empty_at - now) / 3600.0
        held = parcels.get(order.node_id, 0)
        urgent = empty_at is not None and empty_at <= day_ends_at
        ranked.append(Ranked(order, score(left, held, order.severity), urgent, held, left))
    return sorted(ranked, key=_key)


def _key(r: Ranked) -> tuple[bool, float, float, float, str]:
    left = math.inf if r.hours_left is None else r.hours_left
    return (not r.urgent, -r.score, left, r.order.created_at, r.order.order_id)
