"""A broker password typed into ``--mqtt-url`` never reaches a log line or an error message of the controller."""

import logging
from pathlib import Path

import pytest

from controller.cli import main
from controller.devstack.services import Mosquitto, free_port
from controller.influx.writer import InfluxWriter
from controller.mqtt.publisher import CommandLink
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient

PASSWORD = "hunter2-s3cret"


@pytest.mark.integration
def test_the_controllers_start_and_session_logs_mask_the_broker_password(
    mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"mqtt://lf-controller:{PASSWORD}@{mosquitto.host}:{mosquitto.port}"
    with caplog.at_level(logging.INFO):
        controller = ControllerThread(url, influx.url, influx.db, tmp_path / "controller.sqlite3").start()
        controller.stop()
    assert "controller running mqtt=mqtt://lf-controller:***@" in caplog.text
    assert "connected url=mqtt://lf-controller:***@" in caplog.text
    assert PASSWORD not in caplog.text


def test_an_invalid_setting_is_reported_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--mqtt-url", f"mqtt://lf-controller:{PASSWORD}@broker.example:99999"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "--mqtt-url / LOCKERFLEET_MQTT_URL: Input should be a valid URL, invalid port number" in err
    assert PASSWORD not in err


def test_the_command_publishers_errors_mask_the_broker_password() -> None:
    link = CommandLink(f"mqtt://lf-controller:{PASSWORD}@127.0.0.1:{free_port()}", "lf-test-commands")
    try:
        with pytest.raises(ConnectionError) as refused:
            link.start(timeout_s=0.2)  # nothing listens there
    finally:
        link.stop()
    assert "lf-controller:***@127.0.0.1" in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_the_influx_writers_logs_mask_a_password_in_the_influx_url(caplog: pytest.LogCaptureFixture) -> None:
    writer = InfluxWriter(f"http://lf:{PASSWORD}@127.0.0.1:{free_port()}", "lockerfleet", None)  # nothing there
    try:
        with caplog.at_level(logging.WARNING):
            writer.ensure_database()
    finally:
        writer.close()
    assert "could not create database" in caplog.text and "url=http://lf:***@127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text
