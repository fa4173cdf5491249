"""The Rollouts dashboard: provisioned beside the fleet overview, and every query returns data from a real rollout."""

import re
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from schemas import OtaState
from tests.controller.rollouts.lockers import RELEASE, Lockers, published_release
from tests.harness.controller_runner import ControllerFactory
from tests.harness.dashboard import DASHBOARD_PATH, load_dashboard, panel_queries
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

ROLLOUTS_PATH = DASHBOARD_PATH.parent / "rollouts.json"
MEASUREMENTS = {"rollout", "ota", "firmware"}


def test_the_dashboard_is_provisioned_and_every_panel_explains_itself() -> None:
    dashboard = load_dashboard(ROLLOUTS_PATH)
    assert (dashboard["uid"], dashboard["title"]) == ("lockerfleet-rollouts", "Rollouts")
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)) >= 6
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "lockerfleet-influxdb"}, panel["title"]
        assert panel.get("description"), f"{panel['title']} tells the operator nothing"
    for query in panel_queries(dashboard):
        assert query.query.startswith("SELECT"), query
        named = set(re.findall(r'FROM "(\w+)"', query.query))
        assert named and named <= MEASUREMENTS, query


@pytest.mark.integration
def test_every_query_returns_data_from_a_rollout_with_a_failure(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller = start_controller(releases_dir=published_release(tmp_path), rollout_tick_s=0.1)
    lockers = Lockers(mosquitto.url)
    try:
        for node_id, site in (("n1", "a"), ("n2", "b"), ("n3", "c")):
            lockers.born(node_id, site)
        assert wait_until(lambda: len(controller.http.get("/v1/nodes", params={"state": "online"}).json()) == 3, 10)
        policy = {"canary": {"failure_count": 1, "success_percent": 0}, "waves": {"failure_count": 1}}
        created = controller.http.post("/v1/rollouts", json={"release_version": RELEASE, "policy": policy})
        rid = created.json()["rollout_id"]
        canary = lockers.wait_for_updates(1)[0]
        for state in (OtaState.DOWNLOADING, OtaState.VERIFYING, OtaState.INSTALLING, OtaState.RESTARTING):
            lockers.report(canary, state)
        lockers.report(canary, OtaState.ROLLED_BACK, "health_check_failed")
        lockers.wait_for_updates(2)
        assert controller.http.post(f"/v1/rollouts/{rid}/abort").status_code == 200
        assert wait_until(lambda: influx.count("ota", "command_id") == 5, 10)
        assert wait_until(lambda: influx.count("rollout", "size") >= 4, 10)
        assert wait_until(lambda: influx.count("firmware", "nodes") >= 1, 10)
    finally:
        lockers.close()
    empty = [query for query in panel_queries(load_dashboard(ROLLOUTS_PATH)) if not influx.query(query.query)]
    assert not empty, f"panels without data: {empty}"
