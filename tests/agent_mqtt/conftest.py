"""Agents on gpiozero mock pins, talking to the test's real mosquitto."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.local_services import Mosquitto
from node_agent.agent import Agent
from node_agent.hardware import Hardware
from node_agent.settings import AgentSettings
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentThread
from tests.harness.mqtt import wait_until

AgentFactory = Callable[..., AgentThread]


@pytest.fixture
def start_agent(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[AgentFactory]:
    """Start agents against the test broker; every agent started is stopped after the test."""
    running: list[AgentThread] = []

    def start(
        node_id: str = "node-1",
        hardware: Hardware | None = None,
        data_dir: Path | None = None,
        **settings: Any,
    ) -> AgentThread:
        agent_settings = AgentSettings(
            node_id=node_id,
            mqtt_url=mosquitto.url,
            data_dir=data_dir or tmp_path / node_id,
            telemetry_interval_s=settings.pop("telemetry_interval_s", 60.0),
            reconnect_max_s=1.0,
            **settings,
        )
        thread = AgentThread(Agent(agent_settings, hardware or build_hardware(sim_profile()))).start()
        running.append(thread)
        assert wait_until(lambda: thread.agent.link.connected, 10), "agent did not connect to the broker"
        return thread

    yield start
    for thread in running:
        thread.stop()
