"""A controller stopping acknowledges what its final write stored, so the broker delivers none of it again."""

from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from controller.devstack.services import Mosquitto
from schemas import Channel, encode, topic
from tests import samples
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, disconnect, wait_until

pytestmark = pytest.mark.integration

MESSAGES = 40


def test_the_final_write_at_stop_is_acknowledged_before_the_session_disconnects(
    mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller = ControllerThread(
        mosquitto.url,
        influx.url,
        influx.db,
        tmp_path / "store.sqlite3",
        client_id="stopping-controller",
        batch_max_age_s=60,  # nothing is written until the stop flushes it
    ).start()
    node = connect(mosquitto.url, "node-1")
    try:
        for seq in range(1, MESSAGES + 1):
            telemetry = samples.telemetry(node_id="node-1", seq=seq, ts=samples.T0 + timedelta(seconds=seq))
            node.publish(topic("node-1", Channel.TELEMETRY), encode(telemetry), qos=1).wait_for_publish(5)
        assert wait_until(lambda: controller.controller.pipeline.waiting == MESSAGES, 10)
        assert influx.count("telemetry") == 0
    finally:
        disconnect(node)
        controller.stop()
    assert influx.count("telemetry") == MESSAGES

    redelivered: list[mqtt.MQTTMessage] = []
    session = connect(
        mosquitto.url, "stopping-controller", persistent=True, on_message=lambda _c, _u, m: redelivered.append(m)
    )
    try:
        # The broker hands a resumed session its unacknowledged messages right after CONNACK.
        wait_until(lambda: bool(redelivered), 3)
    finally:
        disconnect(session)
    assert redelivered == []
