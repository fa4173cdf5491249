"""A controller SIGKILLed mid-flood and started again stores every telemetry message exactly once (issue 10, item 4).

Twenty simulated lockers send telemetry every 0.1 s to a real ``lockerfleet controller`` process, which writes to
InfluxDB every 0.5 s: at the kill, messages are delivered and unacknowledged, some written but not yet
acknowledged. The broker keeps the controller's persistent session; the restart (same client id) gets what was
never acknowledged again, and whatever was already written is written again onto the same point. Every
(node, boot, seq) the lockers generated is then in InfluxDB once.
"""

from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from tests.chaos.exactly_once import ControllerProcess, Generated, controller_env, quiesce, stored_telemetry, tally
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

NODES = 20
INTERVAL_S = 0.1
BUFFERED = "lockerfleet_ingest_buffer_messages"
INGESTED = "lockerfleet_messages_ingested_total"


def test_controller_killed_mid_flood_and_restarted_stores_every_message_exactly_once(
    mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated = Generated(monkeypatch)
    controller = ControllerProcess(
        "controller",
        controller_env(mosquitto.url, influx, tmp_path / "store.sqlite3", "chaos-controller", batch_max_age_s="0.5"),
        tmp_path / "controller.log",
        f"sqlite:///{tmp_path / 'store-reservations.sqlite3'}",
    ).start()
    sim = SimSettings(
        nodes=NODES, mqtt_url=mosquitto.url, data_dir=tmp_path / "sim", telemetry_interval_s=INTERVAL_S, ramp_s=0.5
    )
    try:
        with background_fleet(sim) as fleet:
            assert wait_until(lambda: influx.count("telemetry") >= 300, 30, 0.1), controller.log_tail()
            # kill while messages are delivered and not yet stored (acknowledged only once InfluxDB has them)
            assert wait_until(lambda: controller.metric(BUFFERED) >= 20, 30, 0.05), controller.log_tail()
            controller.kill()
            at_kill = len(generated)
            assert wait_until(lambda: len(generated) >= at_kill + 400, 30, 0.1)  # the flood goes on meanwhile
            while_dead = len(generated) - at_kill
            controller.start()  # same client id: the broker hands the session's messages over again
            assert wait_until(lambda: len(generated) >= at_kill + while_dead + 400, 30, 0.1)
            quiesce(fleet)
            expected = generated.snapshot()
            assert wait_until(lambda: len(stored_telemetry(influx)) >= len(expected), 60, 0.5)
            result = tally(expected, stored_telemetry(influx))
            again = controller.metric(INGESTED, 'kind="telemetry"') - (len(expected) - at_kill)
            print(f"controller kill -9: {result} generated_while_dead={while_dead} unacknowledged_at_kill={again:.0f}")
            assert result.exact, str(result)
            nodes = controller.get("/v1/nodes").json()
            assert len(nodes) == NODES  # the restarted controller knows every node
    finally:
        controller.stop()
