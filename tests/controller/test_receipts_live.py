"""Delivery receipts from a running controller: what it stored, on the node's stored topic, duplicates included."""

from datetime import timedelta

import pytest

from controller.devstack.services import Mosquitto
from schemas import Channel, StoredReceipt, decode, encode, topic
from tests import samples
from tests.harness.controller_runner import ControllerFactory
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, Delivered, connect, disconnect, wait_until

pytestmark = pytest.mark.integration


def covered(deliveries: list[Delivered]) -> set[tuple[int, int]]:
    """(boot, seq) pairs the receipts delivered so far cover."""
    receipts = [decode(Channel.STORED, d.payload) for d in deliveries]
    assert all(isinstance(r, StoredReceipt) and r.node_id == "node-1" for r in receipts)
    return {(r.boot_id, seq) for r in receipts for first, last in r.ranges for seq in range(first, last + 1)}


def test_the_controller_receipts_telemetry_events_and_re_sends_once_stored(
    start_controller: ControllerFactory, mosquitto: Mosquitto
) -> None:
    mosquitto_url = mosquitto.url
    start_controller(stored_receipt_s=0.2)
    receipts = Capture(mosquitto_url, topic("node-1", Channel.STORED))
    node = connect(mosquitto_url)
    try:
        for seq in (1, 2, 3, 5):  # 4 is missing: a gap stays uncovered
            sample = samples.telemetry(seq=seq, ts=samples.T0 + timedelta(seconds=seq))
            node.publish(topic("node-1", Channel.TELEMETRY), encode(sample), qos=1).wait_for_publish(5)
        node.publish(topic("node-1", Channel.EVENT), encode(samples.door_event(seq=6)), qos=1).wait_for_publish(5)
        expected = {(3, 1), (3, 2), (3, 3), (3, 5), (3, 6)}
        assert covered(receipts.wait_until(lambda d: covered(d) >= expected, 10)) == expected
        before = len(receipts.snapshot())

        again = samples.telemetry(seq=2, ts=samples.T0 + timedelta(seconds=2))  # a re-send after a reconnect
        node.publish(topic("node-1", Channel.TELEMETRY), encode(again), qos=1).wait_for_publish(5)
        later = receipts.wait_until(lambda d: len(d) > before, 10)[before:]
        assert covered(later) == {(3, 2)}  # the duplicate is receipted again, nothing else
    finally:
        disconnect(node)
        receipts.close()


def test_no_receipts_when_turned_off(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient
) -> None:
    controller = start_controller(stored_receipt_s=0)
    receipts = Capture(mosquitto.url, topic("node-1", Channel.STORED))
    node = connect(mosquitto.url)
    try:
        node.publish(topic("node-1", Channel.TELEMETRY), encode(samples.telemetry()), qos=1).wait_for_publish(5)
        assert wait_until(lambda: influx.count("telemetry") == 1, 10)
        assert controller.controller.receipt_flusher is None
        assert receipts.wait_for(1, 1) == []
        assert len(controller.controller.receipts) == 0  # nothing accumulates either
    finally:
        disconnect(node)
        receipts.close()
