"""Fixtures: a mosquitto per test, one influxd per session with a database per test, agents and controllers.

A missing binary fails the run with the Debian package to install; nothing is skipped silently.
"""

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from controller.devstack.services import Influxd, Mosquitto, Postgres, ServiceError
from node_agent.agent import Agent
from node_agent.hardware import Hardware
from node_agent.settings import AgentSettings
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentFactory, AgentThread
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

_db_numbers = itertools.count()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private broker on a free port, stopped after the test."""
    try:
        broker = Mosquitto(tmp_path / "mosquitto").start()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One private InfluxDB for the whole run, on a free port."""
    try:
        server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One private PostgreSQL server for the whole run, on a free port."""
    try:
        server = Postgres(tmp_path_factory.mktemp("postgres")).start()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for a store: an SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    server: Postgres = request.getfixturevalue("postgres")
    name = f"test_{next(_db_numbers)}"
    admin = sqlalchemy.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield server.url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as db:
        db.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def influx(influxd: Influxd) -> Iterator[InfluxClient]:
    """A fresh database on the session's InfluxDB, dropped after the test."""
    client = InfluxClient(influxd.url, f"test_{next(_db_numbers)}")
    client.create()
    yield client
    client.admin(f'DROP DATABASE "{client.db}"')
    client.close()


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
