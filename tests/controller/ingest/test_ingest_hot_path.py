"""The ingest hot path's cheaper parts keep their promises: per-thread message counts add up at every scrape, and
the write pipeline wakes its writer for a full batch long before the batch age."""

import threading
import time
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from controller.fleet.registry import Fleet
from controller.influx.lineproto import telemetry_line
from controller.influx.writer import InfluxWriter
from controller.ingest.batching import Batcher
from controller.ingest.dedup import MessageKey, SeenWindow
from controller.ingest.handler import Ingest
from controller.ingest.pipeline import WritePipeline
from controller.metrics import Metrics, ThreadCounts
from schemas import Channel, encode, topic
from tests import samples
from tests.harness.influx import InfluxClient


def test_thread_counts_sum_every_thread_and_export_declared_values_from_zero() -> None:
    registry = CollectorRegistry()
    counts = ThreadCounts("demo_messages", "Demo.", "kind", registry)
    counts.declare(["telemetry", "status"])

    def count(n: int) -> None:
        mine = counts.for_thread()
        for _ in range(n):
            mine[Channel.TELEMETRY] = mine.get(Channel.TELEMETRY, 0) + 1

    threads = [threading.Thread(target=count, args=(10_000,)) for _ in range(4)]
    for t in threads:
        t.start()
    count(5)
    for t in threads:
        t.join()
    counts.for_thread()[Channel.EVENT] = 1  # not declared: counted under the value, not the enum's name

    assert counts.totals() == {"telemetry": 40_005, "status": 0, "event": 1}
    assert registry.get_sample_value("demo_messages_total", {"kind": "telemetry"}) == 40_005
    text = generate_latest(registry).decode()
    assert "# TYPE demo_messages_total counter" in text
    assert 'demo_messages_total{kind="status"} 0.0' in text
    assert 'demo_messages_total{kind="event"} 1.0' in text


def test_ingest_counts_ingested_and_duplicate_messages_per_kind_from_two_threads() -> None:
    fleet = Fleet()
    metrics = Metrics(lambda: fleet.counts(0))
    stored: set[MessageKey] = set()
    ingest = Ingest(fleet, None, metrics, already_stored=stored.__contains__, on_result=lambda _r: None)  # type: ignore[arg-type]
    telemetry_topic = topic("node-1", Channel.TELEMETRY)

    def handle(seqs: range) -> None:
        for seq in seqs:
            handled = ingest.handle(telemetry_topic, encode(samples.telemetry(seq=seq)))
            assert handled.key is not None
            stored.add(handled.key)

    other = threading.Thread(target=handle, args=(range(100, 150),))
    other.start()
    handle(range(30))
    other.join()
    handle(range(10))  # already stored: duplicates

    def sample(name: str, kind: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"kind": kind})

    assert sample("lockerfleet_messages_ingested_total", "telemetry") == 80
    assert sample("lockerfleet_messages_duplicate_total", "telemetry") == 10
    assert sample("lockerfleet_messages_ingested_total", "status") == 0  # every upward kind exported from 0
    assert sample("lockerfleet_messages_ingested_total", "command") is None  # a downward channel is not counted


def test_batcher_add_says_when_the_writer_has_a_new_deadline_or_a_full_batch() -> None:
    batcher: Batcher[int] = Batcher(max_lines=3, max_age_s=1.0)
    assert batcher.add(10.0, ["a"], token=1)  # opened: a deadline to wait for
    assert not batcher.add(10.1, ["b"], token=2)  # same deadline
    assert not batcher.add(10.2, [], token=3)
    assert batcher.add(10.3, ["c"], token=4)  # closed full: a batch to take now
    assert batcher.add(10.4, [], token=5)  # a new open batch (only an acknowledgement) has its own deadline
    assert batcher.take().tokens == [1, 2, 3, 4]


def test_a_full_batch_is_written_at_once_not_after_the_batch_age(influx: InfluxClient) -> None:
    acked: list[int] = []
    done = threading.Event()

    def ack(tokens: list[int]) -> None:
        acked.extend(tokens)
        if len(acked) >= 3:
            done.set()

    writer = InfluxWriter(influx.url, influx.db)
    pipeline: WritePipeline[int] = WritePipeline(
        writer, SeenWindow(), Metrics(lambda: Fleet().counts(0)), ack, max_lines=3, max_age_s=60.0
    )
    pipeline.start()
    try:
        for seq in range(3):
            sample = samples.telemetry(seq=seq, ts=samples.T0 + timedelta(seconds=seq))
            pipeline.submit([telemetry_line(sample)], token=seq, key=MessageKey("node-1", 1, seq))
            if seq == 0:
                time.sleep(0.2)  # the writer now waits for the first message's 60 s deadline
        assert done.wait(10), "the full batch waited for its 60 s age"
        assert acked == [0, 1, 2]
        assert influx.count("telemetry") == 3
        assert pipeline.seen(MessageKey("node-1", 1, 2))
    finally:
        pipeline.stop()
        writer.close()


class _ReferenceWindow:
    """What SeenWindow promises, kept the slow way: every seq added per (node, boot), the last ``boots`` boots of a
    node by use, and a key counts as seen when it was added and lies within ``window`` below its boot's highest."""

    def __init__(self, window: int, boots: int) -> None:
        self.window = window
        self.boots = boots
        self.nodes: dict[str, dict[int, set[int]]] = {}

    def add(self, key: MessageKey) -> None:
        boots = self.nodes.setdefault(key.node_id, {})
        seqs = boots.pop(key.boot_id, set())
        seqs.add(key.seq)
        boots[key.boot_id] = seqs  # most recently used last
        if len(boots) > self.boots:
            del boots[next(iter(boots))]

    def contains(self, key: MessageKey) -> bool:
        seqs = self.nodes.get(key.node_id, {}).get(key.boot_id)
        return seqs is not None and key.seq in seqs and max(seqs) - key.seq < self.window


_keys = st.builds(
    MessageKey,
    st.sampled_from(["a", "b"]),
    st.integers(0, 4),
    st.one_of(st.integers(0, 40), st.integers(0, 2**63 - 1)),
)


@given(batches=st.lists(st.lists(_keys, max_size=12), max_size=8), probes=st.lists(_keys, max_size=20))
def test_a_batch_added_at_once_is_remembered_as_the_reference_window_says(
    batches: list[list[MessageKey]], probes: list[MessageKey]
) -> None:
    window = SeenWindow(window=16, boots=2)
    reference = _ReferenceWindow(window=16, boots=2)
    for batch in batches:
        window.add_all(batch)
        for key in batch:
            reference.add(key)
    for key in [k for batch in batches for k in batch] + probes:
        assert window.contains(key) == reference.contains(key), key
