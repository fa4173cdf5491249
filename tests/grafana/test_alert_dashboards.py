"""The Alerts and Field KPIs dashboards: provisioned beside the others, and every query returns data from a live
controller whose alerts, reservations (one picked up while its locker was cut off) and opens are real; the work
orders are the swap queue's own events for one verified swap and one noise order, written as it will write them."""

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.devstack.services import Mosquitto
from controller.influx.lineproto import work_order_line
from controller.swapqueue import AlertNotice, Event, Severity, TelemetrySample, VerifyPolicy, WorkOrderBook
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from tests.controller.test_alerts_live import FAST_RULES, Lockers, metric
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.dashboard import DASHBOARD_PATH, load_dashboard, panel_queries
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

ALERTS_PATH = DASHBOARD_PATH.parent / "alerts.json"
KPIS_PATH = DASHBOARD_PATH.parent / "field-kpis.json"
DASHBOARDS = [
    (ALERTS_PATH, "lockerfleet-alerts", "Alerts", {"alert", "alert_open"}),
    (
        KPIS_PATH,
        "lockerfleet-field-kpis",
        "Field KPIs",
        {"kpi", "work_order", "ledger", "command_result", "courier_open", "event"},
    ),
]
QUIET_CENTRE = """
[sites.centre.operations]
offline_for_s = 3600  # the simulated locker's partition and clean stop stay pending: the alert counts are exact
"""
SWAP_S = 2100.0
"""First alert to verified swap of the order in :func:`swap_queue_events`."""


@pytest.mark.parametrize(("path", "uid", "title", "measurements"), DASHBOARDS)
def test_the_dashboard_is_provisioned_and_every_panel_explains_itself(
    path: Path, uid: str, title: str, measurements: set[str]
) -> None:
    dashboard = load_dashboard(path)
    assert (dashboard["uid"], dashboard["title"]) == (uid, title)
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)) >= 8
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "lockerfleet-influxdb"}, panel["title"]
        assert panel.get("description"), f"{panel['title']} tells the operator nothing"
    for query in panel_queries(dashboard):
        assert query.query.startswith("SELECT"), query
        named = set(re.findall(r'FROM "(\w+)"', query.query))
        assert named and named <= measurements, query


def swap_queue_events(t0: float) -> list[Event]:
    """The swap queue's events for one battery swap verified from telemetry and one order its alert made noise."""
    book = WorkOrderBook(VerifyPolicy(healthy_for_s=60))
    events = book.on_alert(AlertNotice("battery_swap:node-w", "battery_swap", "node-w", "s1", Severity.CRITICAL, 2, t0))
    order_id = events[0].order.order_id
    events += book.observe(TelemetrySample("node-w", t0 + 100, 12.0, 300, charging=False))
    events += book.assign(order_id, "tech-1", t0 + 600)
    events += book.arrive(order_id, "tech-1", t0 + 1800)
    events += book.observe(TelemetrySample("node-w", t0 + 2000, 96.0, 0, charging=False))  # a fresh pack
    events += book.done(order_id, "tech-1", t0 + SWAP_S)
    events += book.observe(TelemetrySample("node-w", t0 + SWAP_S, 96.0, 0, charging=False))
    events += book.on_alert(AlertNotice("battery_swap:node-v", "battery_swap", "node-v", "s1", Severity.WARNING, 5, t0))
    events += book.on_alert_resolved("battery_swap:node-v", t0 + 300)
    return events


def offline_episode(controller: ControllerThread, lockers: Lockers, node: str, *, ack: bool) -> None:
    """A crafted node dies (its alert fires), is acknowledged or not, and comes back (its alert resolves)."""
    alert_id = f"node_offline:{node}"

    def state() -> str | None:
        found = controller.http.get("/v1/alerts", params={"node": node}).json()
        return found[0]["state"] if found else None

    lockers.death(node, boot=3)
    assert wait_until(lambda: state() == "firing", 15)
    time.sleep(0.3)  # a time to acknowledge above zero
    if ack:
        assert controller.http.post(f"/v1/alerts/{alert_id}/ack").status_code == 200
    lockers.birth(node, boot=4)
    assert wait_until(lambda: state() == "resolved", 15)


def kpi(influx: InfluxClient, field: str) -> Any:
    rows = influx.query(f'SELECT last("{field}") FROM "kpi"')  # noqa: S608 - test helper
    return rows[0]["last"] if rows else None


@pytest.mark.integration
def test_every_query_of_both_dashboards_returns_data_from_a_live_controller(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    influx.write([work_order_line(e) for e in swap_queue_events(time.time() - 3 * 3600)])
    rules = tmp_path / "alerts.toml"
    rules.write_text(FAST_RULES + QUIET_CENTRE)
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps([{"site_id": "centre", "lat": 52.52, "lon": 13.405}]))
    controller = start_controller(sites_file=sites, alert_rules_file=rules, alert_eval_s=0.2, kpi_every_s=0.5)
    key = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    headers = {"Authorization": f"Bearer {key}"}

    lockers = Lockers(mosquitto.url)
    for node in ("node-a", "node-b"):
        lockers.birth(node, boot=3)
    assert wait_until(lambda: controller.controller.fleet.get("node-b") is not None, 10)
    offline_episode(controller, lockers, "node-a", ack=True)
    offline_episode(controller, lockers, "node-b", ack=False)  # resolved by itself: noise
    lockers.death("node-a", boot=4)  # still firing when the dashboards are read
    assert wait_until(lambda: influx.count("alert", "episode") == 6, 10)
    lockers.close()

    sim = SimSettings(
        nodes=1,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=1,
        ramp_s=0.1,
        sites=["centre"],
        jam_share=0,
        door_dwell_s=0.2,
    )
    with background_fleet(sim) as fleet:
        assert wait_until(lambda: bool(controller.http.get("/v1/nodes/sim-0000").json().get("telemetry")), 20)
        assert wait_until(lambda: fleet.agents[0].keypad is not None, 10)
        arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
        body = {"site": "centre", "size": "S", "parcel_ref": "P-1", "expected_arrival": arrival}
        created = controller.http.post("/v1/reservations", json=body, headers=headers | {"Idempotency-Key": "one"})
        assert created.status_code == 201, created.text
        rid = created.json()["reservation_id"]

        def state() -> str:
            return str(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["state"])

        assert wait_until(lambda: state() == "held", 10)
        deposit = controller.http.post(
            f"/v1/reservations/{rid}/open", json={"step": "deposit"}, headers=headers | {"Idempotency-Key": "dep"}
        )
        assert deposit.status_code == 200 and deposit.json()["outcome"]["result"] == "opened", deposit.text
        assert wait_until(lambda: state() == "deposited", 10)
        pickup_code = controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["pickup_code"]
        time.sleep(0.5)  # a fulfilment latency above zero
        mosquitto.stop()  # the locker is cut off: the pickup is served at the node and sent later
        assert fleet.loop is not None
        typed = asyncio.run_coroutine_threadsafe(fleet.agents[0].enter_code(pickup_code), fleet.loop).result(10)
        assert typed.grant is not None
        mosquitto.start()
        assert wait_until(lambda: state() == "picked_up", 40)

    assert wait_until(lambda: kpi(influx, "sync_success_share") is not None, 20)
    assert kpi(influx, "alerts_raised") == 3
    assert kpi(influx, "sync_success_share") == 1.0  # the controller holds what the locker did while cut off
    assert 0.5 <= kpi(influx, "fulfilment_mean_s") < 60
    assert kpi(influx, "mean_time_to_swap_s") == SWAP_S
    assert kpi(influx, "noise_share") == 0.5  # node-b's alert; node-a's was acknowledged
    assert 0.3 <= kpi(influx, "mean_time_to_acknowledge_s") < 15
    assert kpi(influx, "alerts_per_100_nodes_per_day") == pytest.approx(3 / (3 / 100))  # 3 alerts, 3 nodes, a day
    rows = influx.query('SELECT last("firing") FROM "alert_open" GROUP BY "severity"')
    assert {r["severity"]: r["last"] for r in rows} == {"info": 0, "warning": 1, "critical": 0}
    assert metric(controller, "lockerfleet_kpi_noise_ratio") == 0.5
    assert metric(controller, "lockerfleet_kpi_mean_time_to_swap_seconds") == SWAP_S
    assert metric(controller, "lockerfleet_kpi_reservation_sync_ratio") == 1.0

    empty = [
        query
        for path, *_ in DASHBOARDS
        for query in panel_queries(load_dashboard(path), time_range="24h")
        if not influx.query(query.query)
    ]
    assert not empty, f"panels without data: {empty}"
