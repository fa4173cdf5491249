"""Priority: the score's shape and the ranking's urgency rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.swapqueue import OrderState, Severity, rank, score
from tests.controller.swapqueue.factories import order

DAY_END = 10 * 3600.0
hours = st.floats(min_value=0, max_value=240, allow_nan=False)
parcels = st.integers(min_value=0, max_value=200)
severities = st.sampled_from(list(Severity))


@given(hours, hours, parcels, severities)
def test_sooner_empty_scores_higher(h1: float, h2: float, held: int, severity: Severity) -> None:
    if h2 - h1 < 0.01:
        return
    assert score(h1, held, severity) > score(h2, held, severity)


@given(hours, parcels, parcels, severities)
def test_more_parcels_never_score_lower(h: float, a: int, b: int, severity: Severity) -> None:
    low, high = sorted((a, b))
    assert score(h, low, severity) <= score(h, high, severity)


def test_score_bounds_and_weights() -> None:
    assert score(0.0, 0, Severity.INFO) == pytest.approx(60.0)
    assert score(12.0, 5, Severity.WARNING) == pytest.approx(30.0 + 12.5 + 7.5)
    assert score(None, 0, Severity.CRITICAL) == pytest.approx(15.0)
    assert score(-3.0, 10**6, Severity.CRITICAL) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="parcels"):
        score(1.0, -1, Severity.INFO)


orders_st = st.lists(
    st.tuples(st.one_of(st.none(), st.floats(-5, 100, allow_nan=False)), parcels, severities),
    min_size=1,
    max_size=12,
)


@given(orders_st)
def test_ranking_puts_urgent_first_and_sooner_before_later(specs: list[tuple[float | None, int, Severity]]) -> None:
    orders = [order(f"wo-{i}", node=f"n{i}", hours=h, severity=sev) for i, (h, _, sev) in enumerate(specs)]
    held = {f"n{i}": p for i, (_, p, _) in enumerate(specs)}
    ranked = rank(orders, held, now=0.0, day_ends_at=DAY_END)
    assert sorted(r.order.order_id for r in ranked) == sorted(o.order_id for o in orders)
    flags = [r.urgent for r in ranked]
    assert flags == sorted(flags, reverse=True)
    for r in ranked:
        assert r.urgent == (r.order.hours_to_empty is not None and r.order.hours_to_empty * 3600 <= DAY_END)
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            same = a.urgent == b.urgent and a.parcels == b.parcels and a.order.severity == b.order.severity
            if same and a.hours_left is not None and b.hours_left is not None:
                assert a.hours_left <= b.hours_left


def test_an_urgent_stop_outranks_a_bigger_but_later_one() -> None:
    soon = order("wo-soon", node="n1", hours=3.0, severity=Severity.INFO)
    later = order("wo-later", node="n2", hours=11.0, severity=Severity.CRITICAL)
    ranked = rank([later, soon], {"n2": 40}, now=0.0, day_ends_at=DAY_END)
    assert [r.order.order_id for r in ranked] == ["wo-soon", "wo-later"]
    assert ranked[1].score > ranked[0].score


def test_closed_orders_are_not_ranked() -> None:
    assert rank([order(state=OrderState.VERIFIED)], {}, now=0.0, day_ends_at=DAY_END) == []
