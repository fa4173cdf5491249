"""PostgreSQL down for a few seconds: telemetry is stored meanwhile, and the ledger event it held back is not lost.

Issue 10, item 1 (the reverse direction). A parcel is deposited with its code at the locker while the controller's
store is stopped: the locker's ledger event cannot be applied, so the control session leaves it unacknowledged and
the broker delivers it again. Telemetry comes on its own session and keeps reaching InfluxDB during the outage. Once
PostgreSQL is back the reservation is ``deposited`` and the ledger point is stored once.
"""

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto, Postgres
from node_agent.sim.fleet import SimFleet, background_fleet
from schemas import Channel, encode, topic
from tests import samples
from tests.controller.reservations.test_reservations_live import body, one_locker, reporting
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, wait_until

pytestmark = pytest.mark.integration

SITES = [{"site_id": "centre", "lat": 52.52, "lon": 13.405}]
DURING = 20
"""Telemetry messages published while PostgreSQL is down."""


def type_code(fleet: SimFleet, code: str) -> None:
    assert fleet.loop is not None
    typed = asyncio.run_coroutine_threadsafe(fleet.agents[0].enter_code(code), fleet.loop).result(10)
    assert typed.grant is not None


def test_ledger_events_wait_for_postgresql_without_stalling_telemetry_and_none_is_lost(
    mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.ingest.delivery")
    postgres = Postgres(tmp_path / "postgres").start()
    sites_file = tmp_path / "sites.json"
    sites_file.write_text(json.dumps(SITES))
    controller = ControllerThread(
        mosquitto.url,
        influx.url,
        influx.db,
        tmp_path / "store.sqlite3",
        reservations_url=postgres.url,
        sites_file=sites_file,
        batch_max_age_s=0.05,
    ).start()
    partner = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    headers = {"Authorization": f"Bearer {partner}"}
    publisher = connect(mosquitto.url)
    try:
        with background_fleet(one_locker(mosquitto, tmp_path)) as fleet:
            assert wait_until(lambda: reporting(controller), 20)
            created = controller.http.post(
                "/v1/reservations", json=body("P-pg"), headers=headers | {"Idempotency-Key": "pg-1"}
            )
            assert created.status_code == 201, created.text
            rid = created.json()["reservation_id"]
            assert wait_until(
                lambda: controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["state"] == "held", 10
            )
            node_id = controller.http.get("/v1/nodes").json()[0]["node_id"]
            deposited = f"SELECT seq FROM ledger WHERE node = '{node_id}' AND transition = 'deposited'"  # noqa: S608

            postgres.stop()
            try:
                type_code(fleet, created.json()["deposit_code"])  # the locker reports the deposit: it must wait
                for seq in range(DURING):
                    telemetry = samples.telemetry(node_id="load-1", seq=seq, ts=samples.T0 + timedelta(seconds=seq))
                    publisher.publish(topic("load-1", Channel.TELEMETRY), encode(telemetry), qos=1).wait_for_publish(5)
                # telemetry does not wait for the store: all of it is in InfluxDB while PostgreSQL is still down
                load = "SELECT seq FROM telemetry WHERE node = 'load-1'"
                assert wait_until(lambda: len(influx.query(load)) == DURING, 15)
                assert sorted(r["seq"] for r in influx.query(load)) == list(range(DURING))
                assert influx.query(deposited) == []
                held_back = [r for r in caplog.records if "store is unreachable session=control" in r.getMessage()]
                assert held_back, "the ledger event never met the stopped store"
            finally:
                postgres.start()

            def state() -> str:
                return str(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["state"])

            assert wait_until(lambda: state() == "deposited", 60), state()  # delivered again and applied
            assert wait_until(lambda: len(influx.query(deposited)) == 1, 15)
    finally:
        publisher.disconnect()
        controller.stop()
        postgres.remove()
