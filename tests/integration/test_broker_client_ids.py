"""compose.yaml's broker binds client ids to logins, on a real mosquitto: a locker's password, whatever client id it
asks for, can take over no other client's session: not another locker's, not the controller's persistent one."""

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from schemas import Channel, encode, topic
from tests import samples
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentThread
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, connect, disconnect, wait_until
from tests.integration.test_broker_acl import PASSWORDS, Broker

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    with broker.mosquitto:
        yield broker


def intrude(broker: Broker, client_id: str) -> None:
    """Log in with node-1's password under someone else's client id, clean start, and leave."""
    intruder = connect(broker.url("node-1"), client_id)  # not persistent: clean start
    disconnect(intruder)


def test_a_lockers_login_cannot_take_over_another_lockers_session(broker: Broker, tmp_path: Path) -> None:
    settings = AgentSettings(
        node_id="node-2",
        mqtt_url=broker.url("node-2"),
        data_dir=tmp_path / "node-2",
        telemetry_interval_s=0.3,
        reconnect_max_s=0.5,
    )
    agent = AgentThread(Agent(settings, build_hardware(sim_profile()))).start()
    reports = Capture(broker.url("controller"), topic("node-2", Channel.TELEMETRY))
    try:
        assert wait_until(lambda: agent.agent.link.connects == 1 and bool(reports.snapshot()), 10)
        intrude(broker, "node-2")
        before = len(reports.snapshot())
        # The second report after the intrusion was sent after it: on the same connection, or on a new one.
        assert len(reports.wait_for(before + 2, 10)) >= before + 2
        assert agent.agent.link.connects == 1  # never disconnected
    finally:
        reports.close()
        agent.stop()


def test_a_lockers_login_cannot_disconnect_the_controller_nor_reset_its_queued_session(
    broker: Broker, influx: InfluxClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.mqtt.ingest_session")
    password_file = tmp_path / "controller.password"
    password_file.write_text(PASSWORDS["controller"] + "\n")

    def start_controller() -> ControllerThread:
        return ControllerThread(
            f"mqtt://controller@127.0.0.1:{broker.port}",
            influx.url,
            influx.db,
            tmp_path / "controller.sqlite3",
            mqtt_password_file=password_file,
            batch_max_age_s=0.05,
        ).start()

    def report(seq: int) -> None:
        telemetry = samples.telemetry(node_id="node-1", seq=seq, ts=samples.T0 + timedelta(seconds=seq))
        node.publish(topic("node-1", Channel.TELEMETRY), encode(telemetry), qos=1).wait_for_publish(5)

    controller = start_controller()
    client_id = controller.settings.client_id
    try:
        intrude(broker, client_id)
        node = connect(broker.url("node-1"))
        report(1)
        assert wait_until(lambda: influx.count("telemetry") == 1, 10)
        connected = [
            r.getMessage()
            for r in caplog.records
            if r.name.endswith("ingest_session") and r.msg.startswith("connected ")
        ]
        for session in (client_id, f"{client_id}-control"):  # each session connected once, never taken over
            assert sum(f"client_id={session} " in m for m in connected) == 1, connected
    finally:
        controller.stop()
    for seq in (2, 3, 4):  # queued in the controller's session while it is away
        report(seq)
    disconnect(node)
    intrude(broker, client_id)
    controller = start_controller()
    try:
        assert wait_until(lambda: influx.count("telemetry") == 4, 10), influx.query("SELECT seq FROM telemetry")
        assert sorted(r["seq"] for r in influx.query("SELECT seq FROM telemetry")) == [1, 2, 3, 4]
    finally:
        controller.stop()
