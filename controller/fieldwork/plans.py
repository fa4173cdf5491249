"""Today's routes for every technician, from the open work orders; kept until the orders change or the day ends.

A day is a UTC calendar day. Planning ranks the open orders (:func:`controller.swapqueue.rank`, urgent = forecast
empty before the day ends), selects and sequences them (:func:`controller.swapqueue.plan_day`) over the technicians
holding a key, and the caller then assigns each planned order to its technician: from then on the order is pinned
to them, so later plans keep it on their route (the sequence may change when an urgent order arrives). Orders at
sites without coordinates are left out of the plan (and named, so the sites file can be fixed).
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.swapqueue import (
    DayPlan,
    GeoPoint,
    Sequencer,
    Technician,
    WorkOrder,
    plan_day,
    rank,
    stops_from_ranked,
)

DAY_S = 86_400.0


def day_of(now: float) -> tuple[int, float, float]:
    """The UTC day holding ``now``: its number since the epoch, its start and its end (POSIX seconds)."""
    day = math.floor(now / DAY_S)
    return day, day * DAY_S, (day + 1) * DAY_S


@dataclass(frozen=True, slots=True)
class Planned:
    """One day's plan: routes, what waits for another day, the urgency of each planned order, and what was left out."""

    day: int
    plan: DayPlan
    urgent: frozenset[str]
    unplaced: tuple[str, ...]
    """Open orders at sites without coordinates."""

    def route_of(self, technician_id: str) -> tuple[str, ...]:
        """The order ids of ``technician_id``'s route, in visiting order (empty if they have none today)."""
        for route in self.plan.routes:
            if route.technician_id == technician_id:
                return route.order_ids
        return ()


def plan_today(
    orders: Iterable[WorkOrder],
    technicians: list[Technician],
    sites: Mapping[str, GeoPoint],
    parcels: Mapping[str, int],
    now: float,
    sequencer: Sequencer,
) -> Planned:
    """Plan the day holding ``now`` (see the module docstring)."""
    day, _start, end = day_of(now)
    open_orders = [o for o in orders if o.is_open]
    unplaced = tuple(o.order_id for o in open_orders if o.site_id not in sites)
    ranked = rank((o for o in open_orders if o.site_id in sites), parcels, now, end)
    stops = stops_from_ranked(ranked, sites)
    plan = plan_day(stops, technicians, sequencer)
    return Planned(day, plan, frozenset(r.order.order_id for r in ranked if r.urgent), unplaced)
