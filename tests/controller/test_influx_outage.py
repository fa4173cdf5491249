"""InfluxDB down for 30 s under load: the broker holds what the controller cannot store, nothing is lost or doubled."""

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from controller.devstack.services import Influxd, Mosquitto
from schemas import Channel, encode, topic
from tests import samples
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, wait_until

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
RATE_PER_S = 50


def test_influx_outage_under_load_loses_nothing_and_stores_nothing_twice(mosquitto: Mosquitto, tmp_path: Path) -> None:
    influxd = Influxd(tmp_path / "influxd").start()
    influx = InfluxClient(influxd.url, "outage")
    influx.create()
    controller = ControllerThread(
        mosquitto.url, influxd.url, "outage", tmp_path / "store.sqlite3", receive_maximum=200, batch_max_age_s=0.05
    ).start()
    publisher = connect(mosquitto.url)
    published: list[int] = []
    stop = threading.Event()

    def load() -> None:
        seq = 0
        while not stop.is_set():
            message = samples.telemetry(node_id="load-1", seq=seq, ts=samples.T0 + timedelta(seconds=seq))
            publisher.publish(topic("load-1", Channel.TELEMETRY), encode(message), qos=1).wait_for_publish(5)
            published.append(seq)
            seq += 1
            time.sleep(1 / RATE_PER_S)

    loader = threading.Thread(target=load, daemon=True)
    try:
        loader.start()
        assert wait_until(lambda: influx.count("telemetry") > 20, 10)
        influxd.stop()
        down_at = len(published)
        time.sleep(OUTAGE_S)
        during = len(published) - down_at
        buffered = controller.controller.pipeline.waiting
        influxd.start()
        time.sleep(2.0)
        stop.set()
        loader.join(10)
        total = len(published)
        assert wait_until(lambda: influx.count("telemetry") == total, 60), (influx.count("telemetry"), total)
        seqs = sorted(r["seq"] for r in influx.query("SELECT seq FROM telemetry"))
        assert seqs == list(range(total))  # every message once, none twice
        assert during >= OUTAGE_S * RATE_PER_S * 0.5  # the load really kept going during the outage
        assert buffered == 200  # back-pressure: the receive maximum filled, the broker held the rest
        metrics = controller.http.get("/metrics").text
        retries = next(
            line for line in metrics.splitlines() if line.startswith("lockerfleet_influx_write_retries_total")
        )
        assert float(retries.split()[1]) > 0
    finally:
        stop.set()
        publisher.disconnect()
        controller.stop()
        influxd.stop()
        influx.close()
