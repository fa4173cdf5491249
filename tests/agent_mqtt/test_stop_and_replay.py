"""A clean stop says offline at once; a replay is one log line, not one per batch (issue 13, points 3 and 10)."""

import logging
import re
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.outbox import Outbox
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, StatusDeath, decode, topic
from tests.agent_mqtt.helpers import wait_online
from tests.harness.agent_runner import AgentFactory
from tests.harness.mqtt import Capture, wait_until

pytestmark = pytest.mark.integration


def test_a_clean_stop_publishes_a_retained_offline_status_that_outranks_the_birth(
    mosquitto: Mosquitto, start_agent: AgentFactory
) -> None:
    capture = Capture(mosquitto.url, topic("node-1", Channel.STATUS))
    agent = start_agent()
    birth = wait_online(capture)
    agent.stop()  # cancelled as SIGINT/SIGTERM cancel the process: a clean DISCONNECT, so no last will
    delivered = capture.wait_until(lambda ds: any(decode(Channel.STATUS, d.payload).state == "offline" for d in ds))
    [death] = [s for s in (decode(Channel.STATUS, d.payload) for d in delivered) if isinstance(s, StatusDeath)]
    assert (death.boot_id, death.seq) == (birth.boot_id, birth.seq + 1)
    capture.close()
    later = Capture(mosquitto.url, topic("node-1", Channel.STATUS))  # what a controller starting now is told
    [retained] = later.wait_for(1)
    assert retained.retain and decode(Channel.STATUS, retained.payload) == death
    later.close()


def test_a_simulated_fleet_that_stops_leaves_every_node_offline(mosquitto: Mosquitto, tmp_path: Path) -> None:
    capture = Capture(mosquitto.url, "lockers/v1/+/status")
    settings = SimSettings(nodes=3, mqtt_url=mosquitto.url, data_dir=tmp_path / "sim", ramp_s=0.3)
    with background_fleet(settings):
        capture.wait_until(lambda ds: len(ds) == 3, timeout_s=10)
    latest = {d.topic: decode(Channel.STATUS, d.payload) for d in capture.wait_for(6)}
    assert sorted(s.node_id for s in latest.values() if isinstance(s, StatusDeath)) == [
        "sim-0000",
        "sim-0001",
        "sim-0002",
    ]
    capture.close()


def test_a_replayed_backlog_logs_one_summary_line_and_no_pending_call_warnings(
    mosquitto: Mosquitto, start_agent: AgentFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "node-1"
    data_dir.mkdir()
    outbox = Outbox(data_dir / "outbox.sqlite3", capacity=1000)
    for i in range(24):  # what a locker kept while its broker was away
        outbox.put(topic("node-1", Channel.EVENT), f'{{"kept": {i}}}'.encode(), droppable=False)
    outbox.close()
    capture = Capture(mosquitto.url, topic("node-1", Channel.EVENT))
    caplog.set_level(logging.INFO)
    start_agent(data_dir=data_dir)
    capture.wait_until(lambda ds: len(ds) >= 24, timeout_s=10)

    def replay_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("replay ")]

    assert wait_until(lambda: bool(replay_lines()), 10), "no replay summary"
    [line] = replay_lines()
    found = re.match(r"replay done client_id=node-1 messages=(\d+) backlog_at_connect=(\d+) outbox_ids=1\.\.\d+ ", line)
    assert found, line
    messages, backlog = map(int, found.groups())
    assert messages >= backlog >= 24  # the kept events, and the first telemetry sample if it came before the connect
    assert [r.getMessage() for r in caplog.records if "pending publish calls" in r.getMessage()] == []
    capture.close()
