"""Routes: every kept stop once, capacity, pins, urgent first, and OR-Tools against the proven optimum."""

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.swapqueue import (
    DayPlan,
    GeoPoint,
    OrderState,
    RoutingError,
    Stop,
    Technician,
    haversine_km,
    plan_day,
    rank,
    stops_from_ranked,
)
from controller.swapqueue import exact as exact_sequencer
from controller.swapqueue.ortools_sequencer import sequence as ortools_sequence
from tests.controller.swapqueue.factories import order

OPTIMUM_FACTOR = 1.5
"""Stated bound: OR-Tools' total route length is within this factor of the optimum on days of ≤ 7 stops.
(benchmarks/swap_routing.py measures the real gap: mean ≈ 1.000.)"""

SOLVER = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

points = st.builds(GeoPoint, st.floats(52.35, 52.62), st.floats(13.2, 13.7))


@st.composite
def days(draw: st.DrawFn, max_stops: int) -> tuple[list[Stop], list[Technician]]:
    """Stops in priority order (urgent first) and 1 to 3 technicians."""
    techs = [Technician(f"t{i}", draw(points), draw(st.integers(0, 5))) for i in range(draw(st.integers(1, 3)))]
    pins = st.one_of(st.none(), st.sampled_from([t.technician_id for t in techs] + ["t-absent"]))
    stops = [
        Stop(f"wo-{i}", draw(points), draw(st.booleans()), draw(pins)) for i in range(draw(st.integers(0, max_stops)))
    ]
    stops.sort(key=lambda s: not s.urgent)
    return stops, techs


def check_plan(plan: DayPlan, stops: Sequence[Stop], techs: Sequence[Technician]) -> None:
    """Every rule a plan must keep, checked from the outside."""
    by_id = {s.order_id: s for s in stops}
    routed = [i for r in plan.routes for i in r.order_ids]
    assert len(routed) == len(set(routed)), "a stop is visited twice"
    assert sorted(routed + list(plan.deferred)) == sorted(by_id), "a stop is lost or invented"
    caps = {t.technician_id: t.max_stops for t in techs}
    assert [r.technician_id for r in plan.routes] == [t.technician_id for t in techs]
    for route in plan.routes:
        assert len(route.order_ids) <= caps[route.technician_id]
        urgent = [by_id[i].urgent for i in route.order_ids]
        assert urgent == sorted(urgent, reverse=True), "an urgent stop comes after a less urgent one"
        for i in route.order_ids:
            assert by_id[i].pinned_to in (None, route.technician_id) or by_id[i].pinned_to not in caps
    position = {s.order_id: n for n, s in enumerate(stops)}
    kept = set(routed)
    for d in plan.deferred:
        later_kept = [k for k in kept if position[k] > position[d]]
        if later_kept:
            tech = by_id[d].pinned_to
            assert tech in caps, f"{d} deferred while lower-ranked {later_kept} were kept"
            ahead = [k for k in kept if by_id[k].pinned_to == tech and position[k] < position[d]]
            assert len(ahead) == caps[tech], f"{d} deferred though {tech} had room"


@SOLVER
@given(days(max_stops=12))
def test_ortools_plans_keep_every_rule(day: tuple[list[Stop], list[Technician]]) -> None:
    stops, techs = day
    check_plan(plan_day(stops, techs, ortools_sequence), stops, techs)


@SOLVER
@given(days(max_stops=7))
def test_ortools_is_within_the_stated_factor_of_the_optimum(day: tuple[list[Stop], list[Technician]]) -> None:
    stops, techs = day
    solved = plan_day(stops, techs, ortools_sequence)
    best = plan_day(stops, techs, exact_sequencer.sequence)
    check_plan(best, stops, techs)
    assert best.deferred == solved.deferred
    assert best.km <= solved.km + 1e-6
    assert solved.km <= best.km * OPTIMUM_FACTOR + 1e-6


def test_the_exact_sequencer_finds_the_square() -> None:
    corners = [GeoPoint(52.50, 13.40), GeoPoint(52.50, 13.45), GeoPoint(52.53, 13.45), GeoPoint(52.53, 13.40)]
    stops = [Stop("c2", corners[2]), Stop("c1", corners[1]), Stop("c3", corners[3])]
    plan = plan_day(stops, [Technician("t", corners[0], 3)], exact_sequencer.sequence)
    perimeter = sum(haversine_km(a, b) for a, b in zip(corners, corners[1:] + corners[:1], strict=True))
    assert plan.km == pytest.approx(perimeter)
    assert plan.routes[0].order_ids in (("c1", "c2", "c3"), ("c3", "c2", "c1"))


def test_urgent_stops_go_first_into_a_route_even_when_a_detour() -> None:
    home = GeoPoint(52.50, 13.40)
    near, far = GeoPoint(52.501, 13.401), GeoPoint(52.60, 13.60)
    stops = [Stop("far-urgent", far, urgent=True), Stop("near", near)]
    plan = plan_day(stops, [Technician("t", home, 2)], ortools_sequence)
    assert plan.routes[0].order_ids == ("far-urgent", "near")


def test_from_ranked_orders_urgent_ones_fill_today_first() -> None:
    sites = {f"s{i}": GeoPoint(52.5 + i / 100, 13.4) for i in range(4)}
    orders = [
        order("wo-later-big", node="n0", site="s0", hours=30.0),
        order("wo-soon", node="n1", site="s1", hours=2.0),
        order("wo-later", node="n2", site="s2", hours=20.0),
        order("wo-pinned", node="n3", site="s3", hours=6.0, state=OrderState.ASSIGNED, technician="t2"),
        order("wo-done", node="n3", site="s3", state=OrderState.AWAITING_VERIFICATION, technician="t1"),
    ]
    ranked = rank(orders, {"n0": 50}, now=0.0, day_ends_at=8 * 3600.0)
    stops = stops_from_ranked(ranked, sites)
    assert [s.order_id for s in stops][:2] == ["wo-soon", "wo-pinned"]
    assert stops[1].pinned_to == "t2" and stops[1].urgent
    techs = [Technician("t1", GeoPoint(52.5, 13.4), 1), Technician("t2", GeoPoint(52.5, 13.4), 1)]
    plan = plan_day(stops, techs, ortools_sequence)
    assert {r.technician_id: r.order_ids for r in plan.routes} == {"t1": ("wo-soon",), "t2": ("wo-pinned",)}
    assert plan.deferred == ("wo-later-big", "wo-later")


def test_a_site_without_coordinates_is_named() -> None:
    ranked = rank([order(site="s-unknown")], {}, now=0.0, day_ends_at=1.0)
    with pytest.raises(RoutingError, match="s-unknown"):
        stops_from_ranked(ranked, {})


def test_bad_inputs_are_refused() -> None:
    here = GeoPoint(52.5, 13.4)
    tech = Technician("t", here, 2)
    with pytest.raises(RoutingError, match="twice"):
        plan_day([Stop("a", here), Stop("a", here)], [tech], ortools_sequence)
    with pytest.raises(RoutingError, match="twice"):
        plan_day([], [tech, tech], ortools_sequence)
    with pytest.raises(RoutingError, match="max_stops"):
        plan_day([], [Technician("t", here, -1)], ortools_sequence)
    with pytest.raises(RoutingError, match="≤ 9"):
        exact_sequencer.sequence([Technician("t", here, 20)], [Stop(f"s{i}", here) for i in range(10)])
    with pytest.raises(ValueError, match="lat"):
        GeoPoint(91.0, 0.0)


def test_a_sequencer_that_breaks_a_rule_is_refused() -> None:
    here = GeoPoint(52.5, 13.4)
    stops = [Stop("a", here), Stop("b", here, urgent=True)]
    with pytest.raises(RoutingError, match="exactly once"):
        plan_day(stops, [Technician("t", here, 2)], lambda techs, kept: [(0,)])
    with pytest.raises(RoutingError, match="urgent-first"):
        plan_day(stops, [Technician("t", here, 2)], lambda techs, kept: [(0, 1)])


def test_no_technician_defers_everything() -> None:
    plan = plan_day([Stop("a", GeoPoint(52.5, 13.4))], [], ortools_sequence)
    assert plan.routes == () and plan.deferred == ("a",) and plan.km == 0


def test_haversine_matches_a_known_distance() -> None:
    berlin, paris = GeoPoint(52.5200, 13.4050), GeoPoint(48.8566, 2.3522)
    assert haversine_km(berlin, paris) == pytest.approx(877.5, abs=1.0)
    assert haversine_km(berlin, berlin) == 0.0
