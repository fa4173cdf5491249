"""A broker password typed into ``--mqtt-url`` never reaches a log line or an error message of the agent."""

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto, free_port
from node_agent.agent import Agent
from node_agent.board import default_sim_profile
from node_agent.cli import main
from node_agent.settings import AgentSettings
from node_agent.sim import SimulatedBoard
from schemas.broker import redact_url
from tests.harness.agent_runner import AgentThread
from tests.harness.mqtt import wait_until

PASSWORD = "hunter2-s3cret"


def test_redact_url_masks_the_password_and_query_values_and_keeps_where() -> None:
    assert redact_url(f"mqtt://locker-1:{PASSWORD}@broker.example:8883") == "mqtt://locker-1:***@broker.example:8883"
    assert redact_url("https://hooks.example/lf?token=abc&x=") == "https://hooks.example/lf?token=***&x=***"
    assert redact_url("mqtt://broker.example") == "mqtt://broker.example"
    assert redact_url(f"http://[::1:{PASSWORD}") == "<unparseable URL>"


def run_until(agent: Agent, predicate: Callable[[], bool]) -> None:
    thread = AgentThread(agent).start()
    try:
        assert wait_until(predicate, 15)
    finally:
        thread.stop()


@pytest.mark.integration
def test_the_agents_connected_log_masks_the_password(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"mqtt://locker-1:{PASSWORD}@{mosquitto.host}:{mosquitto.port}"
    agent = Agent(
        AgentSettings(node_id="locker-1", mqtt_url=url, data_dir=tmp_path / "a"),
        SimulatedBoard(default_sim_profile()).hardware,
    )
    with caplog.at_level(logging.INFO):
        run_until(agent, lambda: agent.link.connected)
    assert f"url=mqtt://locker-1:***@{mosquitto.host}:{mosquitto.port}" in caplog.text
    assert PASSWORD not in caplog.text


def test_the_agents_unreachable_broker_log_masks_the_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"mqtt://locker-1:{PASSWORD}@127.0.0.1:{free_port()}"  # nothing listens there
    settings = AgentSettings(node_id="locker-1", mqtt_url=url, data_dir=tmp_path / "a", reconnect_max_s=0.2)
    agent = Agent(settings, SimulatedBoard(default_sim_profile()).hardware)
    with caplog.at_level(logging.WARNING):
        run_until(agent, lambda: "broker unreachable" in caplog.text)
    assert "url=mqtt://locker-1:***@127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text


def test_an_invalid_setting_is_reported_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--mqtt-url", f"mqtt://locker-1:{PASSWORD}@broker.example:99999"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "--mqtt-url / LOCKERFLEET_MQTT_URL: Input should be a valid URL, invalid port number" in err
    assert PASSWORD not in err
