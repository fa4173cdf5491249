"""Fixtures that start real services: a mosquitto per test, one influxd per session with a database per test.

A missing binary fails the run with the Debian package to install; nothing is skipped silently.
"""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.local_services import Influxd, Mosquitto, ServiceError
from tests.harness.influx import InfluxClient

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


@pytest.fixture
def influx(influxd: Influxd) -> Iterator[InfluxClient]:
    """A fresh database on the session's InfluxDB, dropped after the test."""
    client = InfluxClient(influxd.url, f"test_{next(_db_numbers)}")
    client.create()
    yield client
    client.admin(f'DROP DATABASE "{client.db}"')
    client.close()
