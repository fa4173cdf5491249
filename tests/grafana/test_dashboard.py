"""The Fleet overview dashboard: provisioned right, and every panel's query returns data from a real fleet."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.devstack.services import Mosquitto
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, topic
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentFactory
from tests.harness.controller_runner import ControllerFactory
from tests.harness.dashboard import DASHBOARD_PATH, load_dashboard, panel_queries
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, wait_until

ROOT = Path(__file__).parents[2]
MEASUREMENTS = {
    "telemetry",
    "event",
    "command_result",
    "courier_open",
    "dead_letter",
    "fleet",
    "reservation",
    "ledger",
    "keypad",
    "maintenance",
}


def test_dashboard_is_provisioned_from_the_mounted_directory() -> None:
    dashboard = load_dashboard()
    assert (dashboard["uid"], dashboard["title"]) == ("lockerfleet-fleet-overview", "Fleet overview")
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/lockerfleet.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert DASHBOARD_PATH.parent == ROOT / "grafana/dashboards"


def test_every_panel_queries_the_provisioned_influxql_source() -> None:
    dashboard = load_dashboard()
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)) >= 10
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "lockerfleet-influxdb"}, panel["title"]
        assert panel.get("description"), f"{panel['title']} tells the operator nothing"
    for query in panel_queries(dashboard):
        assert query.query.startswith(("SELECT", "SHOW")), query
        named = set(re.findall(r'FROM "(\w+)"', query.query))
        assert named and named <= MEASUREMENTS, query


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"panels": [{"title": "empty", "targets": []}]}, "no query"),
        ({"panels": [{"title": "builder", "targets": [{"refId": "A", "query": "SELECT 1"}]}]}, "not a raw"),
        (
            {"panels": [{"title": "macro", "targets": [{"rawQuery": True, "query": "SELECT x FROM y WHERE $site"}]}]},
            r"\$site",
        ),
    ],
)
def test_queries_that_cannot_be_checked_are_refused(broken: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        panel_queries(broken)


@pytest.mark.integration
def test_every_panel_returns_data_from_a_simulated_fleet(
    start_controller: ControllerFactory,
    start_agent: AgentFactory,
    mosquitto: Mosquitto,
    influx: InfluxClient,
    tmp_path: Path,
) -> None:
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps([{"site_id": "centre", "lat": 52.52, "lon": 13.405}]))
    controller = start_controller(sites_file=sites)
    key = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    profile = sim_profile()
    hardware = build_hardware(profile, working_doors=("A1", "A2"))
    agent = start_agent("node-u", hardware, site="centre")
    sim = SimSettings(nodes=3, mqtt_url=mosquitto.url, data_dir=tmp_path / "sim", telemetry_interval_s=0.5, ramp_s=0.3)
    with background_fleet(sim):
        assert wait_until(lambda: len(controller.http.get("/v1/nodes", params={"state": "online"}).json()) == 4, 15)
        assert controller.http.post("/v1/nodes/node-u/compartments/A1/open").json()["outcome"]["result"] == "opened"
        assert controller.http.post("/v1/nodes/sim-0000/compartments/A1/open").status_code == 200
        hardware.pin_factory.pin(profile.compartments[2].door_pin).drive_high()  # forced open: uncommanded
        # A reservation decided, deposited through the API (the ledger), and a keypad locked by wrong codes.
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "dash"}
        arrival = datetime.now(UTC).isoformat()
        body = {"site": "centre", "size": "S", "parcel_ref": "P1", "expected_arrival": arrival}
        reservation = controller.http.post("/v1/reservations", json=body, headers=headers).json()
        rid = reservation["reservation_id"]
        assert wait_until(
            lambda: controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["state"] == "held", 10
        )
        opened = controller.http.post(f"/v1/reservations/{rid}/open", json={"step": "deposit"}, headers=headers)
        assert opened.status_code == 200
        assert wait_until(lambda: agent.agent.keypad is not None, 5)
        for _ in range(10):
            agent.await_(agent.agent.enter_code("00000000"))
        assert wait_until(lambda: influx.count("keypad", "wrong_attempts") == 1, 5)
        publisher = connect(mosquitto.url)
        publisher.publish(topic("sim-0001", Channel.TELEMETRY), b"not json", qos=1).wait_for_publish(5)
        publisher.disconnect()
        assert wait_until(lambda: influx.count("dead_letter", "size_bytes") == 1, 5)
        maintenance = controller.http.put("/v1/nodes/sim-0002/maintenance", json={"reason": "lock relay swap"})
        assert maintenance.status_code == 200
        assert wait_until(lambda: influx.count("maintenance", "reason") == 1, 5)
        assert wait_until(lambda: influx.count("telemetry") >= 12, 10)
    empty = []
    for query in panel_queries(load_dashboard()):
        if not influx.query(query.query):
            empty.append(query)
    assert not empty, f"panels without data: {empty}"
