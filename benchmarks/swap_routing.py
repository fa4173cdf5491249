"""Swap-queue routes: OR-Tools against the proven optimum on small days, and its time on full days.

Random days in a 30 km x 35 km city box: 1 to 3 technicians with 0 to 5 stops of capacity each, up to
``--max-stops`` work orders, about 30 % of them urgent and 15 % pinned to a technician. For each day both
sequencers plan the same selected stops (``plan_day``) and the gap ratio ``ortools_km / optimum_km`` is reported
per number of stops. Then OR-Tools alone plans larger days (no optimum known) to show its time.

    .venv/bin/python -m benchmarks.swap_routing [--cases 300] [--max-stops 8] [--seed 1]
"""

import argparse
import random
import statistics
import time
from collections import defaultdict

from controller.swapqueue import exact, ortools_sequencer
from controller.swapqueue.geo import GeoPoint
from controller.swapqueue.routes import DayPlan, Sequencer, Stop, Technician, plan_day

BOX = (52.35, 13.20, 0.27, 0.50)
"""South-west corner lat/lon and size in degrees (about 30 km x 35 km)."""


def _point(rng: random.Random) -> GeoPoint:
    lat, lon, dlat, dlon = BOX
    return GeoPoint(lat + rng.random() * dlat, lon + rng.random() * dlon)


def random_day(rng: random.Random, stops: int, technicians: int, max_cap: int) -> tuple[list[Stop], list[Technician]]:
    """A random day: stops in priority order (urgent first) and technicians."""
    techs = [Technician(f"t{i}", _point(rng), rng.randint(0, max_cap)) for i in range(technicians)]
    day = []
    for i in range(stops):
        pinned = f"t{rng.randrange(technicians)}" if rng.random() < 0.15 else None
        day.append(Stop(f"wo-{i}", _point(rng), rng.random() < 0.3, pinned))
    day.sort(key=lambda s: not s.urgent)
    return day, techs


def _timed(stops: list[Stop], techs: list[Technician], sequencer: Sequencer) -> tuple[DayPlan, float]:
    t0 = time.perf_counter()
    plan = plan_day(stops, techs, sequencer)
    return plan, (time.perf_counter() - t0) * 1000


def compare(cases: int, max_stops: int, seed: int) -> None:
    """Print the gap ratio to the optimum per number of routed stops."""
    rng = random.Random(seed)
    ratios: dict[int, list[float]] = defaultdict(list)
    ms: dict[str, list[float]] = defaultdict(list)
    ortools_sequencer.sequence([Technician("warm", _point(rng), 1)], [Stop("warm", _point(rng))])
    for _ in range(cases):
        stops, techs = random_day(rng, rng.randint(1, max_stops), rng.randint(1, 3), 5)
        solved, t_solver = _timed(stops, techs, ortools_sequencer.sequence)
        best, t_exact = _timed(stops, techs, exact.sequence)
        routed = sum(len(r.order_ids) for r in best.routes)
        if routed == 0:
            continue
        ratios[routed].append(solved.km / best.km if best.km > 0 else 1.0)
        ms["ortools"].append(t_solver)
        ms["exact"].append(t_exact)
    print(f"seed={seed} cases={cases} max_stops={max_stops}")
    print(f"{'stops':>5} {'days':>5} {'optimal':>8} {'mean gap':>9} {'worst gap':>10}")
    every = []
    for n in sorted(ratios):
        rs = ratios[n]
        every.extend(rs)
        optimal = sum(r <= 1 + 1e-9 for r in rs) / len(rs)
        print(f"{n:>5} {len(rs):>5} {optimal:>8.0%} {statistics.fmean(rs):>9.4f} {max(rs):>10.4f}")
    print(f"all   {len(every):>5} mean gap ratio {statistics.fmean(every):.4f}, worst {max(every):.4f}")
    for name, values in ms.items():
        print(f"{name}: median {statistics.median(values):.1f} ms, max {max(values):.1f} ms per day")


def full_days(seed: int) -> None:
    """Print OR-Tools' time and distance on days too big for the exact search."""
    rng = random.Random(seed)
    for stops, techs, cap in ((20, 2, 12), (40, 4, 12), (80, 6, 15)):
        day, crew = random_day(rng, stops, techs, cap)
        crew = [Technician(t.technician_id, t.start, cap) for t in crew]
        plan, t = _timed(day, crew, ortools_sequencer.sequence)
        routed = sum(len(r.order_ids) for r in plan.routes)
        print(f"ortools full day: {stops} stops, {techs} technicians: {routed} routed, {plan.km:.1f} km, {t:.0f} ms")


def main() -> None:
    """Run the comparison and the full-day timing."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--max-stops", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    compare(args.cases, args.max_stops, args.seed)
    full_days(args.seed)


if __name__ == "__main__":
    main()
