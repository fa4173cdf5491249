"""Reconciliation settles to the node's word, in the node's order, and tells the courier each change once."""

from hypothesis import given
from hypothesis import strategies as st

from controller.reservations.reconcile import NOTIFIED, Report, View, apply
from controller.store.reservations import ReservationState as S
from schemas import LedgerTransition as T


def test_an_offline_deposit_overrides_a_cancel_the_controller_believed() -> None:
    view = View(S.CANCELLED)  # the courier cancelled through the API while the node was cut off ...
    outcome = apply(view, Report(1, 7, T.DEPOSITED))  # ... but had already deposited at the locker
    assert outcome.view.state is S.DEPOSITED and outcome.notify is S.DEPOSITED


def test_a_refused_hold_and_a_hold_expired_at_the_node_are_told() -> None:
    assert apply(View(S.PENDING), Report(1, 1, None)).notify is S.REFUSED
    held = apply(View(S.PENDING), Report(1, 1, T.HELD))
    assert held.notify is S.HELD
    assert apply(held.view, Report(1, 2, T.HOLD_EXPIRED)).notify is S.EXPIRED


def test_repeats_and_older_reports_change_nothing() -> None:
    held = apply(View(S.PENDING), Report(2, 5, T.HELD)).view
    assert apply(held, Report(2, 5, T.HELD)).notify is None
    older = apply(held, Report(1, 99, T.HOLD_EXPIRED))  # an earlier boot's report arriving late
    assert older.view == held and older.notify is None


reports = st.lists(
    st.builds(Report, st.integers(0, 2), st.integers(0, 20), st.one_of(st.none(), st.sampled_from(list(T)))),
    max_size=25,
)


@given(reports, st.randoms())
def test_any_delivery_order_ends_where_the_newest_report_says(items: list[Report], rng: object) -> None:
    unique = list({(r.boot_id, r.seq): r for r in items}.values())
    shuffled = list(unique)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    view = View(S.PENDING)
    for report in shuffled:
        outcome = apply(view, report)
        if outcome.notify is not None:  # news only when the state really changed, and only what couriers hear about
            assert outcome.notify is outcome.view.state is not view.state and outcome.notify in NOTIFIED
        view = outcome.view
    if unique:
        newest = max(unique, key=lambda r: (r.boot_id, r.seq))
        assert view.last == (newest.boot_id, newest.seq)
