"""Field KPIs over work orders and alerts, computed by hand on small sets."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.swapqueue import AlertRecord, CancelReason, OrderState, ProblemKind, WorkOrder, field_kpis
from controller.swapqueue.kpis import (
    alerts_per_100_nodes_per_day,
    mean_time_to_acknowledge,
    mean_time_to_swap,
    noise_share,
)
from tests.controller.swapqueue.factories import order

DAY = 86_400.0


def verified(order_id: str, created: float, closed: float, kind: ProblemKind = ProblemKind.BATTERY_SWAP) -> WorkOrder:
    return replace(order(order_id, created_at=created, kind=kind), state=OrderState.VERIFIED, closed_at=closed)


def test_mean_time_to_swap_counts_swaps_verified_in_the_window() -> None:
    orders = [
        verified("wo-1", 0.0, 3600.0),
        verified("wo-2", 1000.0, 1000.0 + 7200.0, ProblemKind.PACK_REPLACEMENT),
        verified("wo-jam", 0.0, 60.0, ProblemKind.FIELD_REPAIR),
        verified("wo-late", 0.0, DAY + 1),
        order("wo-open"),
    ]
    assert mean_time_to_swap(orders, 0.0, DAY) == pytest.approx(5400.0)
    assert mean_time_to_swap(orders, DAY + 10, 2 * DAY) is None


def test_mean_time_to_acknowledge() -> None:
    alerts = [
        AlertRecord("a1", "n1", raised_at=0.0, acknowledged_at=120.0),
        AlertRecord("a2", "n2", raised_at=100.0, acknowledged_at=400.0),
        AlertRecord("a3", "n3", raised_at=0.0),
    ]
    assert mean_time_to_acknowledge(alerts, 0.0, DAY) == pytest.approx(210.0)
    assert mean_time_to_acknowledge(alerts[2:], 0.0, DAY) is None


def test_alerts_per_100_nodes_per_day() -> None:
    alerts = [AlertRecord(f"a{i}", "n1", raised_at=i * 3600.0) for i in range(30)]
    assert alerts_per_100_nodes_per_day(alerts, 200, 0.0, DAY) == pytest.approx(12.0)
    assert alerts_per_100_nodes_per_day(alerts, 200, 0.0, 2 * DAY) == pytest.approx(7.5)
    assert alerts_per_100_nodes_per_day(alerts, 0, 0.0, DAY) is None
    assert alerts_per_100_nodes_per_day(alerts, 10, DAY, DAY) is None


def test_noise_share_counts_alerts_nobody_acted_on() -> None:
    noise_order = replace(order("wo-n"), state=OrderState.CANCELLED, cancel_reason=CancelReason.RESOLVED_WITHOUT_ACTION)
    worked = verified("wo-w", 0.0, 500.0)
    alerts = [
        AlertRecord("alert-wo-n", "n1", 0.0, resolved_at=100.0),  # its order was cancelled as noise
        AlertRecord("alert-wo-w", "n2", 0.0, resolved_at=200.0),  # a technician swapped the pack
        AlertRecord("a-acked", "n3", 0.0, acknowledged_at=10.0, resolved_at=300.0),
        AlertRecord("a-alone", "n4", 0.0, resolved_at=400.0),  # no order, never acknowledged
        AlertRecord("a-open", "n5", 0.0),
    ]
    assert noise_share(alerts, [noise_order, worked], 0.0, DAY) == pytest.approx(0.5)
    assert noise_share(alerts[-1:], [], 0.0, DAY) is None


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_noise_share_is_the_unacknowledged_share_without_orders(acked: list[bool]) -> None:
    alerts = [
        AlertRecord(f"a{i}", "n", 0.0, acknowledged_at=1.0 if a else None, resolved_at=5.0) for i, a in enumerate(acked)
    ]
    assert noise_share(alerts, [], 0.0, DAY) == pytest.approx(acked.count(False) / len(acked))


def test_field_kpis_bundles_all_four() -> None:
    alerts = [AlertRecord("a1", "n1", 0.0, acknowledged_at=60.0, resolved_at=600.0)]
    kpis = field_kpis([verified("wo-1", 0.0, 1800.0)], alerts, 100, 0.0, DAY)
    assert kpis.mean_time_to_swap_s == 1800.0
    assert kpis.mean_time_to_acknowledge_s == 60.0
    assert kpis.alerts_per_100_nodes_per_day == pytest.approx(1.0)
    assert kpis.noise_share == 0.0
