"""Today's routes: which stops each technician visits, in which order.

Two steps. **Selection** walks the stops in priority order (see :mod:`controller.swapqueue.priority`) and keeps
each one while the technicians' capacities (``max_stops`` per day) can still hold everything kept; the rest is
deferred to another day. Urgent stops come first in that order, so no urgent stop is ever deferred to make room for a
less urgent one. **Sequencing** then gives every kept stop to one technician and orders each route to minimise the
total distance — closed tours from each technician's start point and back, great-circle (haversine) kilometres —
under three rules: a technician gets at most ``max_stops``, a stop pinned to a technician present today goes to that
technician, and within a route every urgent stop comes before any other stop. The sequencer is pluggable: the
controller uses OR-Tools (:func:`controller.swapqueue.ortools_sequencer.sequence`);
:func:`controller.swapqueue.exact.sequence` finds the proven optimum on small days and is the yardstick for it.
"""

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.swapqueue.geo import GeoPoint, haversine_km
from controller.swapqueue.model import OrderState, SwapQueueError
from controller.swapqueue.priority import Ranked


class RoutingError(SwapQueueError):
    """The stops or technicians given cannot be planned as stated, or a sequencer broke the rules."""


@dataclass(frozen=True, slots=True)
class Stop:
    """One work order to visit."""

    order_id: str
    at: GeoPoint
    urgent: bool = False
    pinned_to: str | None = None
    """The technician already on it; ignored when that technician is not working today."""


@dataclass(frozen=True, slots=True)
class Technician:
    """A technician working today."""

    technician_id: str
    start: GeoPoint
    max_stops: int


@dataclass(frozen=True, slots=True)
class Route:
    """One technician's day: stops in visiting order and the length of the closed tour."""

    technician_id: str
    order_ids: tuple[str, ...]
    km: float


@dataclass(frozen=True, slots=True)
class DayPlan:
    """Routes for every technician (possibly empty) and the order ids left for another day."""

    routes: tuple[Route, ...]
    deferred: tuple[str, ...]

    @property
    def km(self) -> float:
        """Total distance of all routes."""
        return sum(r.km for r in self.routes)


Sequencer = Callable[[Sequence[Technician], Sequence[Stop]], list[tuple[int, ...]]]
"""Given technicians and the kept stops, the stop indexes each technician visits, in order (one tuple each)."""


def stops_from_ranked(ranked: Iterable[Ranked], sites: Mapping[str, GeoPoint]) -> list[Stop]:
    """Stops for the ranked open orders a technician still has to visit, keeping the ranking's order.

    Orders awaiting verification are left out (the technician is done there); assigned and arrived ones are
    pinned to their technician.
    """
    stops = []
    for r in ranked:
        order = r.order
        if order.state in (OrderState.AWAITING_VERIFICATION, OrderState.VERIFIED, OrderState.CANCELLED):
            continue
        at = sites.get(order.site_id)
        if at is None:
            raise RoutingError(
                f"no coordinates for site {order.site_id!r} (work order {order.order_id!r}); add the site's lat/lon"
            )
        pinned = order.technician_id if order.state is not OrderState.OPEN else None
        stops.append(Stop(order.order_id, at, r.urgent, pinned))
    return stops


def select_today(stops: Sequence[Stop], technicians: Sequence[Technician]) -> tuple[list[Stop], list[Stop]]:
    """Split stops (in priority order) into those kept for today and those deferred."""
    capacity = {t.technician_id: t.max_stops for t in technicians}
    free = sum(capacity.values())
    kept: list[Stop] = []
    deferred: list[Stop] = []
    for stop in stops:
        tech = stop.pinned_to if stop.pinned_to in capacity else None
        if free > 0 and (tech is None or capacity[tech] > 0):
            kept.append(stop)
            free -= 1
            if tech is not None:
                capacity[tech] -= 1
        else:
            deferred.append(stop)
    return kept, deferred


def plan_day(stops: Sequence[Stop], technicians: Sequence[Technician], sequencer: Sequencer) -> DayPlan:
    """Select today's stops and sequence them into one route per technician."""
    _check_inputs(stops, technicians)
    kept, deferred = select_today(stops, technicians)
    present = {t.technician_id for t in technicians}
    kept = [s if s.pinned_to in present else Stop(s.order_id, s.at, s.urgent) for s in kept]
    visits: list[tuple[int, ...]] = sequencer(technicians, kept) if kept else [() for _ in technicians]
    _check_visits(visits, technicians, kept)
    routes = tuple(
        Route(t.technician_id, tuple(kept[i].order_id for i in v), tour_km(t.start, [kept[i].at for i in v]))
        for t, v in zip(technicians, visits, strict=True)
    )
    return DayPlan(routes, tuple(s.order_id for s in deferred))


def tour_km(start: GeoPoint, points: Sequence[GeoPoint]) -> float:
    """Length of the closed tour start → points in order → start."""
    path = [start, *points, start]
    return sum(haversine_km(a, b) for a, b in itertools.pairwise(path))


def _check_inputs(stops: Sequence[Stop], technicians: Sequence[Technician]) -> None:
    if len({s.order_id for s in stops}) != len(stops):
        raise RoutingError("the same work order appears twice among the stops; pass each order once")
    if len({t.technician_id for t in technicians}) != len(technicians):
        raise RoutingError("the same technician appears twice; pass each technician once")
    for t in technicians:
        if t.max_stops < 0:
            raise RoutingError(f"technician {t.technician_id!r} has max_stops={t.max_stops}; it must be ≥ 0")


def _check_visits(visits: list[tuple[int, ...]], technicians: Sequence[Technician], stops: Sequence[Stop]) -> None:
    """Refuse a sequencer answer that breaks a rule rather than hand a technician a wrong route."""
    seen = sorted(i for v in visits for i in v)
    if len(visits) != len(technicians) or seen != list(range(len(stops))):
        raise RoutingError(f"sequencer must visit each of {len(stops)} stops exactly once, got {visits}")
    for t, v in zip(technicians, visits, strict=True):
        urgent = [stops[i].urgent for i in v]
        pinned_elsewhere = any(stops[i].pinned_to not in (None, t.technician_id) for i in v)
        if len(v) > t.max_stops or pinned_elsewhere or urgent != sorted(urgent, reverse=True):
            raise RoutingError(f"sequencer broke capacity, pinning or urgent-first for {t.technician_id!r}: {v}")
