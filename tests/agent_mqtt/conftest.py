"""Agents on gpiozero mock pins, talking to the test's real mosquitto."""

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from controller.local_services import Mosquitto
from node_agent.agent import Agent
from node_agent.board import BoardProfile, default_sim_profile
from node_agent.hardware import Hardware
from node_agent.settings import AgentSettings
from node_agent.sim.physics import BatteryModel, ThermalModel
from schemas import PowerSource
from tests.harness.agent_runner import AgentThread
from tests.harness.mqtt import wait_until

PULSE_MS = 120
DOOR_TIMEOUT_MS = 400


def sim_profile(**changes: object) -> BoardProfile:
    """The shipped simulated board with short, test-friendly timings."""
    return default_sim_profile().model_copy(
        update={"pulse_ms": PULSE_MS, "door_timeout_ms": DOOR_TIMEOUT_MS, **changes}
    )


def build_hardware(profile: BoardProfile, working_doors: tuple[str, ...] = ()) -> Hardware:
    """Hardware on a fresh MockFactory; doors listed in ``working_doors`` are wired to open when their relay fires.

    A working door's relay pin is gpiozero's ``MockConnectedPin`` driving the door switch pin; all doors start closed.
    """
    factory = MockFactory()
    for pins in profile.compartments:
        if pins.id in working_doors:
            factory.pin(pins.relay_pin, pin_class=MockConnectedPin, input_pin=factory.pin(pins.door_pin))
    rng = random.Random(7)
    hardware = Hardware(
        profile,
        pin_factory=factory,
        battery=BatteryModel(
            capacity_wh=500,
            load_w=5,
            charge_w=50,
            power_source=PowerSource.BATTERY,
            soc_pct=80,
            cycle_count=3,
        ),
        temperature=ThermalModel(mean_c=20, amplitude_c=5, noise_c=0.1, rng=rng),
    )
    for pins in profile.compartments:
        factory.pin(pins.door_pin).drive_low()  # switch pressed: door closed
    return hardware


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
