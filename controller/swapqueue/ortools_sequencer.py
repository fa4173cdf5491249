"""Sequencing with Google OR-Tools' vehicle-routing solver: a thin adapter, no I/O.

The rules of :mod:`controller.swapqueue.routes` map onto the solver as: one vehicle per technician with a closed tour
from its start; a ``stops`` dimension whose per-vehicle capacity is ``max_stops``; pins as allowed vehicles; and a
``later`` dimension counting the non-urgent stops visited so far, held at 0 at every urgent stop (so urgent stops
come first). Arc costs are haversine metres. Each of a few first-solution strategies is improved by greedy-descent local
search and the shortest result is kept: no time limit, so the same input always gives the same routes.
"""

from collections.abc import Sequence
from typing import Any

from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from controller.swapqueue.geo import haversine_km
from controller.swapqueue.routes import RoutingError, Stop, Technician

STRATEGIES = ("PATH_CHEAPEST_ARC", "SAVINGS", "PARALLEL_CHEAPEST_INSERTION", "CHRISTOFIDES")
"""First-solution strategies tried in turn, each improved by greedy descent; the shortest result wins."""


def sequence(technicians: Sequence[Technician], stops: Sequence[Stop]) -> list[tuple[int, ...]]:
    """Visits per technician (see :data:`controller.swapqueue.routes.Sequencer`)."""
    best: tuple[int, list[tuple[int, ...]]] | None = None
    for strategy in STRATEGIES:
        found = _solve(technicians, stops, strategy)
        if found is not None and (best is None or found[0] < best[0]):
            best = found
    if best is None:
        raise RoutingError(
            f"OR-Tools found no routes for {len(stops)} stops and {len(technicians)} technicians (capacity or pins)"
        )
    return best[1]


def _solve(
    technicians: Sequence[Technician], stops: Sequence[Stop], strategy: str
) -> tuple[int, list[tuple[int, ...]]] | None:
    """Total metres and visits with one first-solution strategy, or None if it finds nothing."""
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
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GREEDY_DESCENT
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
    return int(solution.ObjectiveValue()), visits
