"""The KPI job against a real store: what it writes every snapshot, when it computes, what /metrics shows, and that
an InfluxDB outage costs the figures of one period, nothing else."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controller.influx.lineproto import alert_open_line, kpi_line, work_order_line
from controller.kpis.figures import FieldKpis
from controller.kpis.job import DAY_S, KpiJob
from controller.settings import reservations_sqlite_url
from controller.store.alerts import AlertStore, Notice, StateChanges
from controller.store.reservations import ReservationStore
from controller.swapqueue import AlertNotice, Severity, WorkOrderBook
from tests.controller.kpis.test_figures import notice

NOW = 1_750_000_000.0


class FakeInflux:
    """Answers the job's three queries with canned rows; ``down`` makes every query fail."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows
        self.down = False
        self.queries: list[str] = []

    def __call__(self, query: str) -> list[dict[str, Any]]:
        self.queries.append(query)
        if self.down:
            raise httpx.ConnectError("connection refused")
        if 'FROM "work_order"' in query:
            return self.rows.get("work_order", [])
        return self.rows.get("deposits" if "'deposited'" in query else "ledger", [])


@pytest.fixture
def store(tmp_path: Path) -> ReservationStore:
    reservations = ReservationStore(reservations_sqlite_url(tmp_path / "s.sqlite3"))
    announced = [
        notice("node_offline:n1", "raised", NOW - 600),
        notice("node_offline:n1", "acknowledged", NOW - 540, time_to_ack_s=60.0),
        notice("node_offline:n1", "resolved", NOW - 300, time_to_ack_s=60.0, time_to_resolve_s=300.0),
        notice("node_offline:n2", "raised", NOW - 200),
        notice("node_offline:n2", "resolved", NOW - 100, time_to_resolve_s=100.0),
    ]
    body = [Notice(n.delivery_key, n.alert_id, n.model_dump(mode="json")) for n in announced]
    AlertStore(reservations).commit(StateChanges(), body, NOW - 100)
    return reservations


def job(store: ReservationStore, influx: FakeInflux, clock: list[float], lines: list[str]) -> KpiJob:
    return KpiJob(
        store.engine,
        influx,
        state_of={"r1": "picked_up"}.get,
        nodes=lambda: 200,
        alert_counts=lambda: {("node_offline", "warning", "firing"): 2, ("lock_fault", "critical", "pending"): 1},
        registry=CollectorRegistry(),
        store_lines=lines.extend,
        clock=lambda: clock[0],
        every_s=300.0,
        spawn=lambda work: work(),  # inline: the test reads what it computed at once
    )


def influx_rows() -> FakeInflux:
    book = WorkOrderBook()
    created = book.on_alert(AlertNotice("battery_swap:n9", "battery_swap", "n9", "s", Severity.WARNING, 1.0, NOW))
    assert created and work_order_line(created[0]).startswith("work_order,node=n9,site=s,kind=battery_swap")
    ns = 1_000_000_000
    return FakeInflux(
        {
            "work_order": [
                {
                    "time": int((NOW - 50) * ns),
                    "event": "verified",
                    "kind": "battery_swap",
                    "cancel_reason": "",
                    "order_id": "wo-1",
                    "alert_ids": "battery_swap:n9",
                    "duration_s": 5400.0,
                },
            ],
            "deposits": [{"time": int((NOW - 3 * DAY_S) * ns), "reservation_id": "r1"}],
            "ledger": [
                {"time": int((NOW - 10) * ns), "transition": "picked_up", "reservation_id": "r1", "replayed": True},
                {"time": int((NOW - 10) * ns), "transition": "out_of_service", "reservation_id": None},
            ],
        }
    )


def test_every_snapshot_writes_open_alerts_and_the_kpis_when_due(store: ReservationStore) -> None:
    clock, lines = [NOW], list[str]()
    influx = influx_rows()
    kpis = job(store, influx, clock, lines)
    kpis.snapshot()
    expected = FieldKpis(
        window_s=DAY_S,
        nodes=200,
        alerts_raised=2,
        mean_time_to_swap_s=5400.0,
        mean_time_to_acknowledge_s=60.0,
        alerts_per_100_nodes_per_day=1.0,
        noise_share=0.5,
        fulfilment_mean_s=3 * DAY_S - 10,
        fulfilment_p90_s=3 * DAY_S - 10,
        sync_success_share=1.0,
    )
    assert kpis.latest == expected
    now_ns = round(NOW * 1e9)
    assert lines == [
        alert_open_line("info", 0, 0, now_ns),
        alert_open_line("warning", 0, 2, now_ns),
        alert_open_line("critical", 1, 0, now_ns),
        kpi_line(expected, now_ns),
    ]
    assert len(influx.queries) == 3

    clock[0] += 10  # a snapshot later: open alerts only
    lines.clear()
    kpis.snapshot()
    assert [line.split(",")[0].split(" ")[0] for line in lines] == ["alert_open"] * 3
    assert len(influx.queries) == 3


def test_the_gauges_show_the_last_figures_and_leave_out_what_nothing_measured(store: ReservationStore) -> None:
    registry = CollectorRegistry()
    influx = FakeInflux({})
    kpis = KpiJob(
        store.engine,
        influx,
        state_of=lambda _r: None,
        nodes=lambda: 0,
        alert_counts=dict,
        registry=registry,
        store_lines=lambda _l: None,
        clock=lambda: NOW,
        every_s=300.0,
        spawn=lambda work: work(),
    )
    before = generate_latest(registry).decode()
    assert "# TYPE lockerfleet_kpi_noise_ratio gauge" in before and "\nlockerfleet_kpi_noise_ratio " not in before
    kpis.snapshot()
    text = generate_latest(registry).decode()
    assert "\nlockerfleet_kpi_noise_ratio 0.5\n" in text
    assert "\nlockerfleet_kpi_mean_time_to_acknowledge_seconds 60.0\n" in text
    assert "\nlockerfleet_kpi_mean_time_to_swap_seconds " not in text  # no swap verified
    assert "\nlockerfleet_kpi_alerts_per_100_nodes_per_day " not in text  # no node known


def test_influxdb_away_costs_one_period_of_figures_and_says_what_to_do(
    store: ReservationStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock, lines = [NOW], list[str]()
    influx = influx_rows()
    influx.down = True
    kpis = job(store, influx, clock, lines)
    with caplog.at_level(logging.WARNING):
        kpis.snapshot()
    assert kpis.latest is None
    assert len(lines) == 3  # the open alerts are written all the same
    assert "field KPIs not computed" in caplog.text and "action=check InfluxDB" in caplog.text
    influx.down = False
    clock[0] += 60
    kpis.snapshot()
    assert kpis.latest is None  # not due yet: no retry storm against a struggling InfluxDB
    clock[0] += 300
    kpis.snapshot()
    assert kpis.latest is not None and kpis.latest.noise_share == 0.5


def test_kpi_and_work_order_lines_leave_out_what_is_unknown() -> None:
    nothing = FieldKpis(DAY_S, 3, 0, None, None, None, None, None, None, float("nan"))
    assert kpi_line(nothing, 7) == "kpi window_s=86400.0,nodes=3i,alerts_raised=0i 7"
    book = WorkOrderBook()
    [created] = book.on_alert(AlertNotice("battery_swap:n 1", "battery_swap", "n 1", "s,1", Severity.CRITICAL, 1, 10))
    [cancelled] = book.on_alert_resolved("battery_swap:n 1", 70.5)
    assert work_order_line(created) == (
        r"work_order,node=n\ 1,site=s\,1,kind=battery_swap,event=created,severity=critical "
        f'order_id="{created.order.order_id}",alert_ids="battery_swap:n 1",created_at_s=10.0,duration_s=0.0 '
        "10000000000"
    )
    assert ",cancel_reason=resolved_without_action " in work_order_line(cancelled)
    assert work_order_line(cancelled).endswith("duration_s=60.5 70500000000")


def test_a_computation_still_running_is_not_started_again(store: ReservationStore) -> None:
    started: list[Callable[[], None]] = []
    clock = [NOW]
    kpis = KpiJob(
        store.engine,
        influx_rows(),
        state_of=lambda _r: None,
        nodes=lambda: 1,
        alert_counts=dict,
        registry=CollectorRegistry(),
        store_lines=lambda _l: None,
        clock=lambda: clock[0],
        every_s=300.0,
        spawn=started.append,  # held "running" until the test runs it
    )
    kpis.snapshot()
    clock[0] += 600  # due again, but the first one has not finished
    kpis.snapshot()
    assert len(started) == 1
    started[0]()
    kpis.snapshot()
    assert len(started) == 2 and kpis.latest is not None


def test_a_work_order_of_a_node_without_a_site_has_no_site_tag() -> None:
    """InfluxDB refuses a point with an empty tag value (``site=``): the order's history would be lost."""
    book = WorkOrderBook()
    [created] = book.on_alert(AlertNotice("lock_fault:n1:B1", "lock_fault", "n1", "", Severity.WARNING, None, 10))
    line = work_order_line(created)
    assert line.startswith("work_order,node=n1,kind=field_repair,event=created,severity=warning ")
    assert "site=" not in line
