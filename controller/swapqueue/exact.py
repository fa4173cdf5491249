"""The proven-optimal sequencing of a small day, by enumeration: the yardstick for the routing solver.

Tries every assignment of stops to technicians that respects capacity and pinning, and for each technician every
visiting order that keeps urgent stops first (memoised per technician and set of stops). Cost grows like
``technicians^n · n!``: meant for n ≤ 8 stops (tests and ``benchmarks/swap_routing.py``), not for production days.
"""

import itertools
import math
from collections.abc import Sequence
from functools import cache

from controller.swapqueue.geo import haversine_km
from controller.swapqueue.routes import RoutingError, Stop, Technician

MAX_STOPS = 9


def sequence(technicians: Sequence[Technician], stops: Sequence[Stop]) -> list[tuple[int, ...]]:
    """Optimal visits per technician (same contract as :data:`controller.swapqueue.routes.Sequencer`)."""
    if len(stops) > MAX_STOPS:
        raise RoutingError(f"exact sequencing of {len(stops)} stops would take too long; it handles ≤ {MAX_STOPS}")

    between = [[haversine_km(a.at, b.at) for b in stops] for a in stops]

    @cache
    def best_tour(tech: int, members: frozenset[int]) -> tuple[float, tuple[int, ...]]:
        if not members:
            return 0.0, ()
        home = [haversine_km(technicians[tech].start, s.at) for s in stops]
        urgent = [i for i in sorted(members) if stops[i].urgent]
        rest = [i for i in sorted(members) if not stops[i].urgent]
        best: tuple[float, tuple[int, ...]] = (math.inf, ())
        for head in itertools.permutations(urgent):
            for tail in itertools.permutations(rest):
                order = head + tail
                km = home[order[0]] + home[order[-1]] + sum(between[a][b] for a, b in itertools.pairwise(order))
                best = min(best, (km, order))
        return best

    allowed = [_allowed(s, technicians) for s in stops]
    best_km, best_visits = math.inf, None
    for choice in itertools.product(*allowed):
        groups = [frozenset(i for i, t in enumerate(choice) if t == tech) for tech in range(len(technicians))]
        if any(len(g) > t.max_stops for g, t in zip(groups, technicians, strict=True)):
            continue
        tours = [best_tour(tech, g) for tech, g in enumerate(groups)]
        km = sum(k for k, _ in tours)
        if km < best_km:
            best_km, best_visits = km, [order for _, order in tours]
    if best_visits is None:
        raise RoutingError("no assignment of the stops fits the technicians' capacities and pins")
    return best_visits


def _allowed(stop: Stop, technicians: Sequence[Technician]) -> list[int]:
    pinned = [i for i, t in enumerate(technicians) if t.technician_id == stop.pinned_to]
    return pinned or list(range(len(technicians)))
