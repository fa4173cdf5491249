"""The outbox: FIFO on disk, bounded by dropping the oldest telemetry, never an event or a result."""

import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from node_agent.outbox import Outbox, OutboxItem

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outbox.sqlite3"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    store = Outbox(path, capacity=3)
    yield store
    store.close()


def payloads(outbox: Outbox) -> list[bytes]:
    """Everything held, oldest first."""
    return [i.payload for i in outbox.peek(1000)]


def test_fifo_peek_keeps_and_ack_removes(outbox: Outbox) -> None:
    outbox.put("lockers/v1/n1/telemetry", b"t1", droppable=True)
    outbox.put("lockers/v1/n1/status", b"s1", droppable=False, qos=0, retain=True)
    outbox.put("lockers/v1/n1/event", b"e1", droppable=False)

    first, second, third = outbox.peek(10)
    assert first.id < second.id < third.id
    assert first == OutboxItem(first.id, "lockers/v1/n1/telemetry", b"t1", 1, False)
    assert second == OutboxItem(second.id, "lockers/v1/n1/status", b"s1", 0, True)
    assert [i.payload for i in outbox.peek(2)] == [b"t1", b"s1"]
    assert outbox.peek(0) == []
    assert len(outbox) == 3  # peeking removes nothing

    outbox.ack([first.id, third.id, 10_000])  # any subset; unknown ids are ignored
    assert payloads(outbox) == [b"s1"]
    assert len(outbox) == 1
    outbox.ack([])
    assert len(outbox) == 1


def test_bad_arguments_are_refused(path: Path, outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="capacity"):
        Outbox(path.with_name("other.sqlite3"), 0)
    with pytest.raises(ValueError, match="qos"):
        outbox.put("t", b"x", droppable=False, qos=3)
    assert len(outbox) == 0


def test_items_survive_reopen_in_order_and_ids_keep_growing(path: Path) -> None:
    outbox = Outbox(path, 10)
    for n in range(4):
        outbox.put(f"t/{n}", f"p{n}".encode(), droppable=n % 2 == 0, retain=n == 3)
    before = outbox.peek(10)
    outbox.close()

    outbox = Outbox(path, 10)
    assert outbox.peek(10) == before
    assert len(outbox) == 4
    outbox.ack(i.id for i in before)  # empty now: a new id must still be larger than every id handed out
    outbox.close()

    outbox = Outbox(path, 10)
    outbox.put("t/4", b"p4", droppable=False)
    (item,) = outbox.peek(10)
    outbox.close()
    assert item.id > before[-1].id


def test_full_outbox_drops_the_oldest_telemetry_and_counts_it(outbox: Outbox) -> None:
    outbox.put("t", b"t1", droppable=True)
    outbox.put("e", b"e1", droppable=False)
    outbox.put("t", b"t2", droppable=True)
    outbox.put("t", b"t3", droppable=True)
    assert payloads(outbox) == [b"e1", b"t2", b"t3"]
    outbox.put("e", b"e2", droppable=False)
    assert payloads(outbox) == [b"e1", b"t3", b"e2"]
    assert len(outbox) == 3
    assert outbox.take_dropped() == 2
    assert outbox.take_dropped() == 0


def test_events_are_never_dropped_even_when_full_of_events(outbox: Outbox) -> None:
    for n in range(5):
        outbox.put("e", f"e{n}".encode(), droppable=False)
    assert payloads(outbox) == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert len(outbox) == 5  # over capacity, only by events
    assert outbox.take_dropped() == 0

    outbox.put("t", b"t0", droppable=True)  # no telemetry to make room: the new sample is the one dropped
    assert payloads(outbox) == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert outbox.take_dropped() == 1

    outbox.ack(i.id for i in outbox.peek(3))
    outbox.put("t", b"t1", droppable=True)
    assert payloads(outbox) == [b"e3", b"e4", b"t1"]
    assert outbox.take_dropped() == 0


def test_dropped_count_persists_across_reopen_until_taken(path: Path) -> None:
    outbox = Outbox(path, 1)
    for n in range(4):
        outbox.put("t", f"t{n}".encode(), droppable=True)
    outbox.close()

    outbox = Outbox(path, 1)
    assert payloads(outbox) == [b"t3"]
    assert outbox.take_dropped() == 3
    outbox.close()

    outbox = Outbox(path, 1)
    assert outbox.take_dropped() == 0
    outbox.close()


def test_reopening_with_a_smaller_capacity_trims_telemetry_on_the_next_put(path: Path) -> None:
    outbox = Outbox(path, 6)
    for name, droppable in [("t0", True), ("e0", False), ("t1", True), ("t2", True), ("e1", False)]:
        outbox.put("x", name.encode(), droppable=droppable)
    outbox.close()

    outbox = Outbox(path, 2)
    outbox.put("x", b"t3", droppable=True)
    assert payloads(outbox) == [b"e0", b"e1"]  # every old sample and the new one made way for the events
    assert outbox.take_dropped() == 4
    outbox.close()


def test_kill_9_keeps_every_put_ack_and_drop(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from node_agent.outbox import Outbox

        outbox = Outbox(Path({str(path)!r}), 2)
        outbox.put("t", b"t0", droppable=True)
        outbox.put("e", b"e0", droppable=False)
        outbox.put("t", b"t1", droppable=True)  # full: t0 makes room
        outbox.ack([outbox.peek(1)[0].id])  # e0 delivered
        outbox.put("e", b"e1", droppable=False)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=30, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()

    outbox = Outbox(path, 2)
    try:
        assert payloads(outbox) == [b"t1", b"e1"]
        assert outbox.take_dropped() == 1
    finally:
        outbox.close()


class OutboxMachine(RuleBasedStateMachine):
    """Any interleaving of puts, acks, reopens and drop reads against what must hold of the outbox."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-"))
        self.path = self.dir / "outbox.sqlite3"
        self.capacity = 1
        self.outbox = Outbox(self.path, self.capacity)
        self.put_order: list[tuple[bytes, bool]] = []  # every payload put, with its droppable flag
        self.delivered: set[bytes] = set()
        self.dropped_taken = 0

    @initialize(capacity=st.integers(1, 4))
    def open_with(self, capacity: int) -> None:
        self.outbox.close()
        self.capacity = capacity
        self.outbox = Outbox(self.path, capacity)

    @rule(droppable=st.booleans())
    def put(self, droppable: bool) -> None:
        before = len(self.outbox)
        payload = f"{'t' if droppable else 'e'}{len(self.put_order)}".encode()
        self.put_order.append((payload, droppable))
        self.outbox.put("x", payload, droppable=droppable)
        if before < self.capacity:  # room left: nothing may be dropped
            assert len(self.outbox) == before + 1
            assert self.held()[-1] == payload

    @precondition(lambda self: len(self.outbox) > 0)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        items = self.outbox.peek(len(self.outbox))
        chosen = data.draw(st.lists(st.sampled_from(items), unique=True))
        self.outbox.ack(i.id for i in chosen)
        self.delivered.update(i.payload for i in chosen)

    @rule()
    def reopen(self) -> None:
        self.outbox.close()
        self.outbox = Outbox(self.path, self.capacity)

    @rule()
    def take_dropped(self) -> None:
        self.dropped_taken += self.outbox.take_dropped()
        held = set(self.held())
        assert self.dropped_taken == sum(1 for p, d in self.put_order if d and p not in held | self.delivered)

    def held(self) -> list[bytes]:
        return payloads(self.outbox)

    @invariant()
    def order_is_preserved(self) -> None:
        items = self.outbox.peek(len(self.put_order) + 1)
        assert [i.id for i in items] == sorted({i.id for i in items})
        position = {p: n for n, (p, _) in enumerate(self.put_order)}
        assert [position[i.payload] for i in items] == sorted(position[i.payload] for i in items)
        assert not self.delivered & {i.payload for i in items}

    @invariant()
    def no_event_is_ever_lost(self) -> None:
        held = set(self.held())
        assert [p for p, d in self.put_order if not d and p not in self.delivered and p not in held] == []

    @invariant()
    def bound_is_exceeded_only_by_events(self) -> None:
        assert len(self.outbox) == len(self.held())
        if len(self.outbox) > self.capacity:
            assert all(p.startswith(b"e") for p in self.held())

    @invariant()
    def telemetry_is_dropped_oldest_first(self) -> None:
        held = set(self.held())
        lost = [n for n, (p, d) in enumerate(self.put_order) if d and p not in held | self.delivered]
        kept = [n for n, (p, d) in enumerate(self.put_order) if d and p in held]
        assert not lost or not kept or max(lost) < min(kept)

    def teardown(self) -> None:
        self.outbox.close()
        shutil.rmtree(self.dir)


OutboxMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_outbox_state_machine = OutboxMachine.TestCase


def test_items_being_sent_are_never_evicted(outbox: Outbox) -> None:
    """The broker may already have an item in flight: evicting it would count a drop that did not happen."""
    for n in range(3):
        outbox.put("t", f"t{n}".encode(), droppable=True)
    in_flight = outbox.peek(2, sending=True)
    outbox.put("t", b"t3", droppable=True)
    assert payloads(outbox) == [b"t0", b"t1", b"t3"]  # t2, the oldest not in flight, made room
    assert outbox.take_dropped() == 1
    outbox.ack(i.id for i in in_flight)
    outbox.put("t", b"t4", droppable=True)
    assert payloads(outbox) == [b"t3", b"t4"]
