"""The operators' node API: operator keys only, and maintenance that takes a node out of the reservation pool."""

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.devstack.services import Mosquitto
from node_agent.sim.fleet import background_fleet
from tests.controller.reservations.test_reservations_live import body, one_locker, reporting, start
from tests.controller.test_controller_live import metric
from tests.harness.controller_runner import ControllerFactory
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration


def test_the_node_api_needs_an_operator_key(
    start_controller: ControllerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.service")
    controller, partner_key, _other = start(start_controller, tmp_path)  # a new store: no operator key yet
    told = [r.getMessage() for r in caplog.records if "no operator key" in r.getMessage()]
    assert told and "lockerfleet operator-key" in told[0]
    caplog.clear()
    controller.stop()
    controller = start_controller(sites_file=tmp_path / "sites.json")  # the runner issued one: nothing to say
    assert not [r for r in caplog.records if "no operator key" in r.getMessage()]
    url = controller.url
    routes = [("GET", "/v1/nodes"), ("GET", "/v1/nodes/node-1"), ("POST", "/v1/nodes/node-1/compartments/A1/open")]
    for method, path in routes:
        anonymous = httpx.request(method, url + path)
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer", path
        assert "missing API key" in anonymous.json()["detail"] and "operator key" in anonymous.json()["detail"]
        partner = httpx.request(method, url + path, headers={"Authorization": f"Bearer {partner_key}"})
        assert partner.status_code == 403 and "/v1/reservations" in partner.json()["detail"], path
        forged = httpx.request(method, url + path, headers={"Authorization": f"Bearer {controller.operator_key}x"})
        assert forged.status_code == 401, path
    assert controller.http.get("/v1/nodes").status_code == 200  # the runner's client carries an operator key

    operators = controller.controller.operators
    revoked = operators.create_key("mallory", datetime.now(UTC))
    assert httpx.get(f"{url}/v1/nodes", headers={"Authorization": f"Bearer {revoked}"}).status_code == 200
    key = operators.authenticate(revoked)
    assert key is not None and operators.revoke_key(key.key_id)
    assert httpx.get(f"{url}/v1/nodes", headers={"Authorization": f"Bearer {revoked}"}).status_code == 401

    schemes = controller.http.get("/openapi.json").json()["components"]["securitySchemes"]
    assert set(schemes) == {"OperatorKey", "PartnerKey", "TechnicianKey"}


def test_maintenance_keeps_reservations_away_survives_a_restart_and_its_end_serves_the_waitlist(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller, key, _other = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    with background_fleet(one_locker(mosquitto, tmp_path)):
        assert wait_until(lambda: reporting(controller), 20)
        node_id = controller.http.get("/v1/nodes").json()[0]["node_id"]
        assert controller.http.get(f"/v1/nodes/{node_id}").json()["maintenance"] is None
        put = controller.http.put(f"/v1/nodes/{node_id}/maintenance", json={"reason": "door B2 sticks, ticket 42"})
        assert put.status_code == 200, put.text
        assert put.json()["maintenance"]["reason"] == "door B2 sticks, ticket 42"
        assert put.json()["maintenance"]["set_by"] == "tests"
        assert metric(controller, "lockerfleet_nodes_in_maintenance") == 1

        def in_maintenance() -> Any:
            rows = influx.query('SELECT last("maintenance") FROM "fleet"')
            return rows[0]["last"] if rows else None

        assert wait_until(lambda: in_maintenance() == 1, 5)  # the fleet snapshot the dashboard draws

        refused = controller.http.post(
            "/v1/reservations", json=body("P-1"), headers=headers | {"Idempotency-Key": "refused"}
        )
        assert refused.status_code == 409, refused.text  # the only locker at the site is out of the pool

        controller.stop()
        controller = start_controller(sites_file=tmp_path / "sites.json")  # the same store: a restart
        assert wait_until(lambda: reporting(controller), 20)
        assert controller.http.get(f"/v1/nodes/{node_id}").json()["maintenance"]["set_by"] == "tests"
        waiting = controller.http.post(
            "/v1/reservations", json=body("P-2") | {"wait_s": 60}, headers=headers | {"Idempotency-Key": "waits"}
        )
        assert waiting.status_code == 202 and waiting.json()["state"] == "waitlisted", waiting.text
        rid = waiting.json()["reservation_id"]

        def reservation() -> dict[str, Any]:
            return dict(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json())

        ended = controller.http.delete(f"/v1/nodes/{node_id}/maintenance")
        assert ended.status_code == 200 and ended.json()["maintenance"] is None
        assert metric(controller, "lockerfleet_nodes_in_maintenance") == 0
        history = "SELECT operator, reason FROM maintenance GROUP BY action"
        assert wait_until(lambda: len(influx.query(history)) == 2, 5)  # the dashboard's annotations
        assert {(r["action"], r["reason"]) for r in influx.query(history)} == {
            ("start", "door B2 sticks, ticket 42"),
            ("end", "door B2 sticks, ticket 42"),
        }
        assert wait_until(lambda: reservation()["state"] == "held", 10), reservation()
        assert reservation()["node_id"] == node_id
        again = controller.http.delete(f"/v1/nodes/{node_id}/maintenance")
        assert again.status_code == 404 and "not under maintenance" in again.json()["detail"]
    unknown = controller.http.put("/v1/nodes/node-x/maintenance", json={"reason": "x"})
    assert unknown.status_code == 404
    empty = controller.http.put(f"/v1/nodes/{node_id}/maintenance", json={"reason": ""})
    assert empty.status_code == 422
