"""The control spool: lines committed to the store before their messages are acknowledged, in arrival order, then
drained into InfluxDB; while the store refuses, nothing is acknowledged."""

import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
import sqlalchemy as sa

from controller.fleet.registry import Fleet
from controller.influx.lineproto import ledger_line
from controller.influx.writer import InfluxWriter
from controller.ingest.dedup import MessageKey
from controller.ingest.spool import ControlSpool
from controller.metrics import Metrics
from controller.store.reservations import ReservationStore
from controller.store.spool import SpoolStore
from tests import samples
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until


@pytest.fixture
def store(store_url: str) -> Iterator[ReservationStore]:
    opened = ReservationStore(store_url)
    yield opened
    opened.close()


def test_the_store_keeps_lines_in_order_until_deleted(store: ReservationStore) -> None:
    spool = SpoolStore(store.engine)
    spool.add(["a 1", "b 2"], 100.0)
    spool.add(["c 3"], 101.0)
    rows, waiting = spool.take(2)
    assert [r.line for r in rows] == ["a 1", "b 2"] and waiting == 3 and rows[0].queued_at == 100.0
    spool.delete([r.id for r in rows])
    rows, waiting = spool.take(2)
    assert [r.line for r in rows] == ["c 3"] and waiting == 1


class RefusingStore(SpoolStore):
    """Refuses the first ``refusals`` writes as a database that is down would."""

    def __init__(self, engine: sa.Engine, refusals: int) -> None:
        super().__init__(engine)
        self.refusals = refusals
        self.refused = threading.Event()

    def add(self, lines: Sequence[str], now: float) -> None:
        if self.refusals:
            self.refusals -= 1
            self.refused.set()
            raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("database down"))
        super().add(lines, now)


def test_messages_are_acknowledged_in_order_once_spooled_and_their_lines_reach_influxdb(
    store: ReservationStore, influx: InfluxClient
) -> None:
    acked: list[int] = []
    remembered: list[MessageKey] = []
    spool_store = RefusingStore(store.engine, refusals=2)
    writer = InfluxWriter(influx.url, influx.db)
    spool: ControlSpool[int] = ControlSpool(
        spool_store, writer, Metrics(lambda: Fleet().counts(0)), acked.extend, remembered.extend
    )
    events = [
        samples.ledger_event().model_copy(update={"seq": seq, "ts": samples.T0 + timedelta(seconds=seq)})
        for seq in range(1, 6)
    ]
    spool.start()
    try:
        for token, event in enumerate(events):
            spool.submit([ledger_line(event)], token, MessageKey(event.node_id, event.boot_id, event.seq))
        spool.submit([], 5)  # a status: nothing to store, acknowledged in its turn
        assert spool_store.refused.wait(5)
        assert acked == []  # the store refused: nothing acknowledged
        assert wait_until(lambda: acked == [0, 1, 2, 3, 4, 5], 10), acked
        assert remembered == [MessageKey(e.node_id, e.boot_id, e.seq) for e in events]
        assert wait_until(lambda: influx.count("ledger") == len(events), 10)
        assert wait_until(lambda: spool.lines_waiting == 0 and spool_store.take(10)[0] == [], 10)
        assert spool.oldest_age_s() == 0.0
    finally:
        spool.stop()
        writer.close()
