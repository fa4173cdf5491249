"""A real controller (HTTP API in a thread) against the test's mosquitto and InfluxDB database."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.local_services import Mosquitto
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient

ControllerFactory = Callable[..., ControllerThread]


@pytest.fixture
def start_controller(mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path) -> Iterator[ControllerFactory]:
    """Start controllers (same store and session each time, so a second start is a restart); stopped after."""
    running: list[ControllerThread] = []

    def start(**settings: Any) -> ControllerThread:
        defaults: dict[str, Any] = {"fleet_snapshot_s": 0.5, "batch_max_age_s": 0.05, "open_timeout_s": 5.0}
        thread = ControllerThread(
            mosquitto.url, influx.url, influx.db, tmp_path / "controller.sqlite3", **(defaults | settings)
        ).start()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.stop()
