"""Field KPIs from stored announcements, work-order points and ledger points: pure, checked by hand and by property."""

from datetime import UTC, datetime
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.kpis.figures import (
    LedgerPoint,
    WorkOrderPoint,
    acted_alerts,
    episodes,
    field_kpis,
    fulfilment,
    mean_time_to_swap,
    noise_share,
    sync_success,
)
from controller.swapqueue.kpis import AlertRecord
from schemas.alert import AlertNotice

DAY = 86_400.0


Transition = Literal["raised", "escalated", "acknowledged", "resolved"]


def notice(
    alert_id: str,
    transition: Transition,
    at: float,
    *,
    episode: int = 1,
    time_to_ack_s: float | None = None,
    time_to_resolve_s: float | None = None,
) -> AlertNotice:
    """An announcement as the controller stores it."""
    return AlertNotice(
        delivery_key=f"{alert_id}#{episode}:{transition}",
        alert_id=alert_id,
        episode=episode,
        transition=transition,
        at=datetime.fromtimestamp(at, UTC),
        rule=alert_id.split(":", maxsplit=1)[0],
        severity="warning",
        node_id=alert_id.split(":")[1],
        count=1,
        time_to_ack_s=time_to_ack_s,
        time_to_resolve_s=time_to_resolve_s,
    )


def test_an_episode_is_rebuilt_from_its_announcements() -> None:
    notices = [
        notice("node_offline:n1", "raised", 100.0),
        notice("node_offline:n1", "acknowledged", 160.0, time_to_ack_s=60.0),
        notice("node_offline:n1", "resolved", 400.0, time_to_ack_s=60.0, time_to_resolve_s=300.0),
        notice("node_offline:n1", "raised", 500.0, episode=2),
    ]
    assert episodes(notices) == [
        AlertRecord("node_offline:n1", "n1", 100.0, 160.0, 400.0),
        AlertRecord("node_offline:n1", "n1", 500.0, None, None),
    ]


def test_a_raise_before_the_notices_at_hand_comes_back_from_the_durations() -> None:
    acked_then_resolved = [notice("lock_fault:n2", "resolved", 1000.0, time_to_ack_s=50.0, time_to_resolve_s=900.0)]
    assert episodes(acked_then_resolved) == [AlertRecord("lock_fault:n2", "n2", 100.0, 150.0, 1000.0)]
    only_acked = [notice("lock_fault:n3", "acknowledged", 300.0, time_to_ack_s=200.0)]
    assert episodes(only_acked) == [AlertRecord("lock_fault:n3", "n3", 100.0, 300.0, None)]
    assert episodes([notice("lock_fault:n4", "escalated", 300.0)]) == []  # no raise time known: left out


def test_noise_is_the_share_resolved_unacknowledged_with_no_technician_sent() -> None:
    alerts = [
        AlertRecord("a:1", "1", 0.0, None, 10.0),  # noise
        AlertRecord("a:2", "2", 0.0, 5.0, 10.0),  # acknowledged
        AlertRecord("a:3", "3", 0.0, None, 10.0),  # a technician went
        AlertRecord("a:4", "4", 0.0, None, None),  # still open: not counted
        AlertRecord("a:5", "5", 0.0, None, 100.0),  # resolved after the window
    ]
    assert noise_share(alerts, {"a:3"}, 0.0, 50.0) == pytest.approx(1 / 3)
    assert noise_share(alerts[3:4], set(), 0.0, 50.0) is None


def test_orders_cancelled_as_noise_do_not_count_as_action() -> None:
    points = [
        WorkOrderPoint("wo-1", "created", "battery_swap", 0.0, ("battery_swap:n1",)),
        WorkOrderPoint("wo-2", "created", "field_repair", 0.0, ("lock_fault:n2", "lock_fault:n2:A1")),
        WorkOrderPoint("wo-3", "created", "battery_swap", 0.0, ("battery_swap:n3",)),
        WorkOrderPoint("wo-3", "cancelled", "battery_swap", 9.0, ("battery_swap:n3",), 9.0, "resolved_without_action"),
        WorkOrderPoint("wo-4", "cancelled", "battery_swap", 9.0, ("battery_swap:n4",), 9.0, "operator"),
    ]
    assert acted_alerts(points) == {"battery_swap:n1", "lock_fault:n2", "lock_fault:n2:A1", "battery_swap:n4"}


def test_time_to_swap_counts_verified_swaps_in_the_window_only() -> None:
    points = [
        WorkOrderPoint("wo-1", "verified", "battery_swap", 100.0, duration_s=3600.0),
        WorkOrderPoint("wo-2", "verified", "pack_replacement", 200.0, duration_s=1800.0),
        WorkOrderPoint("wo-3", "verified", "field_repair", 200.0, duration_s=60.0),  # not a swap
        WorkOrderPoint("wo-4", "done", "battery_swap", 200.0, duration_s=60.0),  # tapped done, not verified
        WorkOrderPoint("wo-5", "verified", "battery_swap", 900.0, duration_s=60.0),  # after the window
    ]
    assert mean_time_to_swap(points, 0.0, 500.0) == 2700.0
    assert mean_time_to_swap(points[2:4], 0.0, 500.0) is None


def test_fulfilment_pairs_each_pickup_with_its_deposit() -> None:
    points = [LedgerPoint(f"r{i}", "deposited", 0.0) for i in range(10)]
    points += [LedgerPoint(f"r{i}", "picked_up", 100.0 * (i + 1)) for i in range(10)]
    points += [LedgerPoint("r-old", "picked_up", 50.0)]  # deposited before the look-back: left out
    points += [LedgerPoint("r0", "deposited", 20.0)]  # a repeated report keeps the first deposit
    assert fulfilment(points, 0.0, 2000.0) == (550.0, 900.0)
    assert fulfilment(points, 150.0, 250.0) == (200.0, 200.0)
    assert fulfilment(points, 5000.0, 6000.0) == (None, None)


def test_sync_success_compares_the_controller_with_the_nodes_last_word() -> None:
    points = [
        LedgerPoint("r1", "deposited", 10.0),
        LedgerPoint("r1", "picked_up", 20.0, replayed=True),
        LedgerPoint("r2", "held", 10.0, replayed=True),
        LedgerPoint("r2", "hold_expired", 30.0, replayed=True),
        LedgerPoint("r3", "picked_up", 20.0, replayed=True),
        LedgerPoint("r4", "deposited", 20.0),  # never cut off: not checked
        LedgerPoint("r5", "picked_up", 20.0, replayed=True),  # another controller's: not checked
    ]
    states = {"r1": "picked_up", "r2": "expired", "r3": "deposited", "r4": "held"}
    assert sync_success(points, states.get, 0.0, 100.0) == pytest.approx(2 / 3)
    assert sync_success(points, states.get, 500.0, 600.0) is None


def test_field_kpis_measure_nothing_as_none() -> None:
    kpis = field_kpis([], [], [], lambda _r: None, 0, 0.0, DAY)
    assert kpis.alerts_raised == 0 and kpis.window_s == DAY
    assert (kpis.mean_time_to_swap_s, kpis.mean_time_to_acknowledge_s, kpis.alerts_per_100_nodes_per_day) == (
        None,
        None,
        None,
    )
    assert (kpis.noise_share, kpis.fulfilment_mean_s, kpis.sync_success_share) == (None, None, None)


episode_times = st.tuples(
    st.floats(0, DAY), st.none() | st.floats(0, 3600), st.none() | st.floats(0, 7200), st.booleans()
)


@given(st.lists(episode_times, max_size=20))
def test_episodes_come_back_whichever_announcements_fall_in_the_window(
    drawn: list[tuple[float, float | None, float | None, bool]],
) -> None:
    notices, expected = [], []
    for i, (raised, drawn_ack, to_resolve, raise_seen) in enumerate(drawn):
        alert_id = f"node_offline:n{i}"
        closed_first = drawn_ack is not None and to_resolve is not None and drawn_ack > to_resolve
        to_ack = None if closed_first else drawn_ack  # acknowledged only while open
        if raise_seen:
            notices.append(notice(alert_id, "raised", raised))
        if to_ack is not None:
            notices.append(notice(alert_id, "acknowledged", raised + to_ack, time_to_ack_s=to_ack))
        if to_resolve is not None:
            end = raised + to_resolve
            notices.append(notice(alert_id, "resolved", end, time_to_ack_s=to_ack, time_to_resolve_s=to_resolve))
        if raise_seen or to_ack is not None or to_resolve is not None:
            acked = None if to_ack is None else raised + to_ack
            expected.append((alert_id, raised, acked, None if to_resolve is None else raised + to_resolve))
    got = {(a.alert_id, a.raised_at, a.acknowledged_at, a.resolved_at) for a in episodes(notices)}
    assert {a for a, *_ in got} == {a for a, *_ in expected}
    for (alert_id, raised, acked, resolved), found in zip(sorted(expected), sorted(got), strict=True):
        assert found[0] == alert_id
        assert found[1] == pytest.approx(raised, abs=1e-3)  # timestamps carry microseconds
        assert (found[2] is None) == (acked is None) and (found[3] is None) == (resolved is None)
    share = noise_share(episodes(notices), set(), 0.0, 2 * DAY)
    assert share is None or 0.0 <= share <= 1.0
