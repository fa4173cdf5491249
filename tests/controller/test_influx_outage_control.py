"""InfluxDB hanging with the telemetry window full: opens and reservations carry on, nothing is lost or doubled.

Issue 10, item 1. InfluxDB is frozen (SIGSTOP: writes hang, neither succeed nor fail) and crafted telemetry fills the
controller's telemetry receive window, so telemetry waits at the broker. The control traffic (statuses, command
results, ledger events) comes on its own session, acknowledged once acted on and spooled in the controller's store:
an operator open answers 200 and a reservation is granted (201) and held at the locker, all while InfluxDB is
frozen. Once it runs again, every telemetry point and every spooled control point is stored exactly once by
(node, boot id, seq). Before the control session existed this open answered 504.
"""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.devstack.services import Influxd, Mosquitto
from node_agent.sim.fleet import background_fleet
from schemas import Channel, encode, topic
from tests import samples
from tests.controller.reservations.test_reservations_live import body, one_locker, reporting
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, wait_until

pytestmark = pytest.mark.integration

WINDOW = 50
"""The controller's telemetry receive maximum: small, so a few hundred messages fill it."""
FLOOD = 300
SITES = [{"site_id": "centre", "lat": 52.52, "lon": 13.405}]
CONTROL_MEASUREMENTS = ("event", "ledger", "command_result")


def metric(controller: ControllerThread, name: str) -> float:
    line = next(m for m in controller.http.get("/metrics").text.splitlines() if m.startswith(f"{name} "))
    return float(line.split()[1])


def keys_of(influx: InfluxClient, measurement: str, node_id: str) -> list[tuple[int, int]]:
    rows = influx.query(f"SELECT boot_id, seq FROM \"{measurement}\" WHERE node = '{node_id}'")  # noqa: S608
    return [(r["boot_id"], r["seq"]) for r in rows]


def test_opens_and_reservations_succeed_while_influxdb_hangs_and_every_point_is_stored_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    influxd = Influxd(tmp_path / "influxd").start()
    influx = InfluxClient(influxd.url, "outage")
    influx.create()
    sites_file = tmp_path / "sites.json"
    sites_file.write_text(json.dumps(SITES))
    controller = ControllerThread(
        mosquitto.url,
        influxd.url,
        "outage",
        tmp_path / "store.sqlite3",
        receive_maximum=WINDOW,
        batch_max_age_s=0.05,
        sites_file=sites_file,
    ).start()
    partner = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    flooder = connect(mosquitto.url)
    try:
        with background_fleet(one_locker(mosquitto, tmp_path)) as _fleet:
            assert wait_until(lambda: reporting(controller), 20)
            [node] = controller.http.get("/v1/nodes").json()
            node_id = node["node_id"]
            assert wait_until(lambda: influx.count("telemetry") > 0, 10)

            influxd.pause()
            try:
                for seq in range(FLOOD):
                    message = samples.telemetry(node_id="load-1", seq=seq, ts=samples.T0 + timedelta(seconds=seq))
                    flooder.publish(topic("load-1", Channel.TELEMETRY), encode(message), qos=1).wait_for_publish(5)
                # the telemetry window is full: no telemetry is acknowledged until InfluxDB runs again
                assert wait_until(lambda: controller.controller.pipeline.waiting == WINDOW, 20)

                compartment = node["compartments"][-1]["id"]
                opened = controller.http.post(
                    f"/v1/nodes/{node_id}/compartments/{compartment}/open", json={"timeout_s": 5}
                )
                assert opened.status_code == 200, opened.text
                assert opened.json()["outcome"]["result"] == "opened"
                command_id = opened.json()["command_id"]

                reserved = controller.http.post(
                    "/v1/reservations",
                    json=body("P-outage"),
                    headers={"Authorization": f"Bearer {partner}", "Idempotency-Key": "outage-1"},
                )
                assert reserved.status_code == 201, reserved.text
                rid = reserved.json()["reservation_id"]

                def state() -> Any:
                    view = controller.http.get(
                        f"/v1/reservations/{rid}", headers={"Authorization": f"Bearer {partner}"}
                    )
                    return view.json()["state"]

                assert wait_until(lambda: state() == "held", 10), state()  # the locker's ledger event, acted on

                def readiness() -> Any:
                    return controller.http.get("/readyz").json()["readiness"]

                assert wait_until(lambda: readiness() == "degraded", 15)  # a write hangs: InfluxDB is unreachable
                ready = controller.http.get("/readyz")
                assert ready.status_code == 200, ready.text  # still taking traffic
                assert "InfluxDB unreachable for" in ready.json()["status"]
                assert ready.json()["messages_waiting"] >= WINDOW
                assert controller.http.get("/healthz").status_code == 200  # alive
                assert metric(controller, "lockerfleet_oldest_unstored_age_seconds") > 0
                assert metric(controller, "lockerfleet_influx_spool_lines") > 0  # acknowledged, waiting for InfluxDB
                assert controller.controller.pipeline.waiting == WINDOW  # telemetry still waits: nothing was lost
            finally:
                influxd.resume()

            assert wait_until(lambda: len(keys_of(influx, "telemetry", "load-1")) == FLOOD, 60)
            assert wait_until(lambda: controller.controller.spool.lines_waiting == 0, 30)
            assert wait_until(lambda: readiness() == "serving", 30)
    finally:
        flooder.disconnect()
        controller.stop()

    assert sorted(keys_of(influx, "telemetry", "load-1")) == [(samples.telemetry().boot_id, s) for s in range(FLOOD)]
    with controller.controller.reservation_store.engine.connect() as db:  # every spooled line went to InfluxDB
        assert db.execute(sa.text("SELECT count(*) FROM influx_spool")).scalar_one() == 0
    results = influx.query(f"SELECT seq FROM command_result WHERE command_id = '{command_id}'")  # noqa: S608
    assert results  # the open's results (accepted, then the outcome), spooled while InfluxDB hung
    ledger = influx.query(f"SELECT seq FROM ledger WHERE node = '{node_id}' AND transition = 'held'")  # noqa: S608
    assert ledger
    for measurement in ("telemetry", *CONTROL_MEASUREMENTS):  # the locker's points: each (boot, seq) once
        stored = Counter(keys_of(influx, measurement, node_id))
        assert stored and max(stored.values()) == 1, (measurement, stored.most_common(3))
    influx.close()
    influxd.stop()
