"""The write pipeline against a real InfluxDB: a lone message is stored and acknowledged within the batch age."""

import threading
import time

from controller.fleet.registry import Fleet
from controller.influx.lineproto import telemetry_line
from controller.influx.writer import InfluxWriter
from controller.ingest.dedup import SeenWindow
from controller.ingest.pipeline import WritePipeline
from controller.metrics import Metrics
from tests import samples
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until


def test_a_single_message_into_an_idle_pipeline_is_written_after_the_batch_age(influx: InfluxClient) -> None:
    acked: list[int] = []
    done = threading.Event()

    def ack(tokens: list[int]) -> None:
        acked.extend(tokens)
        done.set()

    writer = InfluxWriter(influx.url, influx.db)
    pipeline: WritePipeline[int] = WritePipeline(
        writer, SeenWindow(), Metrics(lambda: Fleet().counts(0)), ack, max_lines=1000, max_age_s=0.05
    )
    pipeline.start()
    try:
        time.sleep(0.2)  # the writer is idle, waiting with no deadline
        started = time.monotonic()
        pipeline.submit([telemetry_line(samples.telemetry(seq=1))], token=41)
        assert done.wait(2), "the lone message was never written"
        assert time.monotonic() - started < 1.0
        assert acked == [41]
        assert wait_until(lambda: influx.count("telemetry") == 1, 2)
        assert pipeline.waiting == 0
    finally:
        pipeline.stop()
        writer.close()
