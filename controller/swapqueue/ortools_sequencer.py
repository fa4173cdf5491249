"""Sequencing with Google OR-Tools' vehicle-routing solver: a thin adapter, no I/O.

The rules of :mod:`controller.swapqueue.routes` map onto the solver as: one vehicle per technician with a closed tour
from its start; a ``stops`` dimension whose per-vehicle capacity is ``max_stops``; pins as allowed vehicles; and a
``later`` dimension counting the non-urgent stops visited so far, held at 0 at every urgent stop (so urgent stops
come first). Arc costs are haversine metres. A cheapest-insertion first solution is improved by guided local search
for a time budget that grows with the day; the search stops on that budget, so on a busy machine a big day may
come out slightly longer than on an idle one (small days reach their optimum well within it).

The solver is imported at the first solve, not with this module: the controller imports it at start, and OR-Tools
costs about a tenth of a second of CPU to load, which a controller that never plans a day (or not yet) need not pay.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.swapqueue.geo import haversine_km
from controller.swapqueue.routes import RoutingError, Stop, Technician

STRATEGIES = ("PARALLEL_CHEAPEST_INSERTION", "LOCAL_CHEAPEST_INSERTION", "SEQUENTIAL_CHEAPEST_INSERTION")
"""First-solution strategies, tried in turn until one finds a solution (the first one always did here).

Insertion strategies cope with pins and urgent-first; arc-based ones (path cheapest arc, savings, global cheapest
arc) often fail or fall into a long exhaustive search under those constraints."""


@dataclass(frozen=True, slots=True)
class OrToolsSequencer:
    """A :data:`~controller.swapqueue.routes.Sequencer` backed by OR-Tools, with a search budget per day.

    The budget is ``base_ms + per_stop_ms·stops``, at most ``max_ms``, spent by guided local search after the first
    solution. With the defaults all 464 random days of ≤ 8 stops in ``benchmarks/swap_routing.py`` came out
    optimal, on a busy 2-core machine; a day of 80 stops and 6 technicians takes its budget, about 2 s.
    """

    base_ms: int = 100
    per_stop_ms: int = 25
    max_ms: int = 5000

    def __call__(self, technicians: Sequence[Technician], stops: Sequence[Stop]) -> list[tuple[int, ...]]:
        """Visits per technician (see :data:`controller.swapqueue.routes.Sequencer`)."""
        budget_ms = min(self.max_ms, self.base_ms + self.per_stop_ms * len(stops))
        for strategy in STRATEGIES:
            visits = _solve(technicians, stops, strategy, budget_ms)
            if visits is not None:
                return visits
        raise RoutingError(
            f"OR-Tools found no routes for {len(stops)} stops and {len(technicians)} technicians (capacity or pins)"
        )


sequence = OrToolsSequencer()
"""The sequencer with the default budget."""


def _solve(
    technicians: Sequence[Technician], stops: Sequence[Stop], strategy: str, budget_ms: int
) -> list[tuple[int, ...]] | None:
    """Visits found from one first-solution strategy within the budget, or None if it found nothing."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2  # noqa: PLC0415 - loaded at the first solve
    from ortools.util import optional_boolean_pb2  # noqa: PLC0415

    vehicles, n = len(technicians), len(stops)
    points = [t.start for t in technicians] + [s.at for s in stops]
    metres = [[round(haversine_km(a, b) * 1000) for b in points] for a in points]
    depots = list(range(vehicles))
    manager: Any = pywrapcp.RoutingIndexManager(len(points), vehicles, depots, depots)
    model: Any = pywrapcp.RoutingModel(manager)

    def node(index: int) -> int:
        return int(manager.IndexToNode(index))

    def arc(i: int, j: int) -> int:
        return metres[node(i)][node(j)]

    def one_stop(i: int) -> int:
        return int(node(i) >= vehicles)

    def not_urgent(i: int) -> int:
        return int(node(i) >= vehicles and not stops[node(i) - vehicles].urgent)

    model.SetArcCostEvaluatorOfAllVehicles(model.RegisterTransitCallback(arc))
    caps = [t.max_stops for t in technicians]
    model.AddDimensionWithVehicleCapacity(model.RegisterUnaryTransitCallback(one_stop), 0, caps, True, "stops")
    model.AddDimension(model.RegisterUnaryTransitCallback(not_urgent), 0, n, True, "later")
    later = model.GetDimensionOrDie("later")
    ids = [t.technician_id for t in technicians]
    for k, stop in enumerate(stops):
        index = manager.NodeToIndex(vehicles + k)
        if stop.urgent:
            later.CumulVar(index).SetMax(0)
        if stop.pinned_to in ids:
            model.VehicleVar(index).SetValues([ids.index(stop.pinned_to)])

    params: Any = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.Value.Value(strategy)
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    params.local_search_operators.use_cross_exchange = optional_boolean_pb2.BOOL_TRUE
    params.local_search_operators.use_relocate_neighbors = optional_boolean_pb2.BOOL_TRUE
    params.time_limit.FromMilliseconds(budget_ms)
    solution: Any = model.SolveWithParameters(params)
    if solution is None:
        return None
    visits = []
    for v in range(vehicles):
        route, index = [], model.Start(v)
        while not model.IsEnd(index):
            if node(index) >= vehicles:
                route.append(node(index) - vehicles)
            index = solution.Value(model.NextVar(index))
        visits.append(tuple(route))
    return visits
