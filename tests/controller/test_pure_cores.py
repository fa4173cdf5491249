"""The controller's pure cores: dedup window, write batches, fleet liveness, log throttle."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.commands.rate_limit import TokenBucket
from controller.fleet.registry import STALE_FACTOR, Fleet, NodeState
from controller.ingest.batching import Batcher
from controller.ingest.dedup import MessageKey, SeenWindow
from controller.log_throttle import Throttle
from schemas import StatusBirth, StatusDeath
from tests import samples

keys = st.builds(MessageKey, st.sampled_from(["a", "b"]), st.integers(0, 6), st.integers(0, 300))


@given(st.lists(keys, max_size=200), st.lists(keys, max_size=50))
def test_seen_window_never_forgets_inside_the_window_and_never_invents(
    added: list[MessageKey], probes: list[MessageKey]
) -> None:
    window = SeenWindow(window=64, boots=3)
    for key in added:
        window.add(key)
    for probe in probes + added:
        if window.contains(probe):
            assert probe in added  # never a false positive
    # With no more boots per node than it keeps, everything within the window below each boot's highest seq is kept.
    for key in added:
        boots_of_node = {k.boot_id for k in added if k.node_id == key.node_id}
        high = max(k.seq for k in added if k.node_id == key.node_id and k.boot_id == key.boot_id)
        if len(boots_of_node) <= 3 and high - key.seq < 64:
            assert window.contains(key)


def test_seen_window_ages_out_old_seqs_and_boots() -> None:
    window = SeenWindow(window=4, boots=1)
    window.add(MessageKey("n", 1, 1))
    window.add(MessageKey("n", 1, 5))
    assert not window.contains(MessageKey("n", 1, 1))  # slid out of the window: counts as new
    assert window.contains(MessageKey("n", 1, 5))
    window.add(MessageKey("n", 2, 0))
    assert not window.contains(MessageKey("n", 1, 5))  # only one boot kept


def test_batch_is_due_by_size_or_by_age_and_keeps_token_order() -> None:
    batcher: Batcher[int] = Batcher(max_lines=3, max_age_s=1.0)
    assert batcher.deadline() is None and not batcher.due(100.0)
    batcher.add(10.0, ["a"], token=1, key=MessageKey("n", 1, 1))
    batcher.add(10.2, [], token=2)  # a status: nothing to write, still acknowledged in order
    assert not batcher.due(10.5)
    assert batcher.due(11.0)  # by age
    batcher.add(10.6, ["b", "c"], token=3)
    batcher.add(10.7, ["d"], token=4)  # the first batch is full: this one starts the next
    assert batcher.due(10.7)  # by size
    batch = batcher.take()
    assert (batch.lines, batch.tokens, batch.keys) == (["a", "b", "c"], [1, 2, 3], [MessageKey("n", 1, 1)])
    assert not batcher.due(11.6) and batcher.due(11.7)  # the next one is due by its own age
    assert batcher.take().tokens == [4]
    assert batcher.empty


def test_batcher_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_lines"):
        Batcher(0, 1.0)


def birth(boot: int, seq: int, interval_s: float = 10) -> StatusBirth:
    return samples.birth(boot_id=boot, seq=seq).model_copy(update={"telemetry_interval_s": interval_s})


def death(boot: int, seq: int) -> StatusDeath:
    return samples.death(boot_id=boot).model_copy(update={"seq": seq})


def test_late_death_of_an_old_connection_does_not_override_a_newer_birth() -> None:
    fleet = Fleet()
    assert fleet.apply_status(birth(3, 0), now=100) is not None
    assert fleet.apply_status(birth(4, 0), now=101) is not None  # rebooted
    assert fleet.apply_status(death(3, 1), now=102) is None  # the old boot's will arrives late
    record = fleet.get("node-1")
    assert record is not None and record.state(now=102) is NodeState.ONLINE
    assert fleet.apply_status(death(4, 1), now=103) is not None
    assert fleet.get("node-1").state(now=103) is NodeState.OFFLINE  # type: ignore[union-attr]


def test_reconnect_birth_after_a_will_within_one_boot_is_online_again() -> None:
    fleet = Fleet()
    fleet.apply_status(birth(3, 0), now=0)
    fleet.apply_status(death(3, 1), now=1)
    fleet.apply_status(birth(3, 2), now=2)
    assert fleet.counts(now=2) == {NodeState.ONLINE: 1, NodeState.STALE: 0, NodeState.OFFLINE: 0}


def test_silent_node_turns_stale_after_one_and_a_half_intervals_and_back() -> None:
    fleet = Fleet()
    fleet.apply_status(birth(1, 0, interval_s=10), now=0)
    assert fleet.get("node-1").state(0 + 10 * STALE_FACTOR) is NodeState.ONLINE  # type: ignore[union-attr]
    assert fleet.get("node-1").state(0.01 + 10 * STALE_FACTOR) is NodeState.STALE  # type: ignore[union-attr]
    telemetry = samples.telemetry()
    fleet.seen("node-1", 20, telemetry)
    record = fleet.get("node-1")
    assert record is not None and record.state(21) is NodeState.ONLINE and record.telemetry == telemetry
    older = samples.telemetry(seq=0, ts=samples.T0 - timedelta(seconds=5))
    fleet.seen("node-1", 22, older)  # a replayed sample does not replace the newer one
    assert fleet.get("node-1").telemetry == telemetry  # type: ignore[union-attr]


def test_messages_of_a_node_never_born_here_are_ignored_by_the_registry() -> None:
    fleet = Fleet()
    assert fleet.apply_status(death(1, 1), now=0) is None
    fleet.seen("ghost", 0, samples.telemetry(node_id="ghost"))
    assert fleet.records() == []


statuses = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 5), st.booleans()), min_size=1, max_size=12, unique_by=lambda t: t[:2]
)


@given(statuses, st.randoms())
def test_any_delivery_order_settles_on_the_newest_status(items: list[tuple[int, int, bool]], rng: object) -> None:
    messages = [birth(b, s) if is_birth else death(b, s) for b, s, is_birth in items]
    fleet = Fleet()
    fleet.apply_status(birth(0, 0), now=0)  # known node
    order = list(messages)
    rng.shuffle(order)  # type: ignore[attr-defined]
    for m in order:
        fleet.apply_status(m, now=1)
    newest = max([birth(0, 0), *messages], key=lambda m: (m.boot_id, m.seq))
    record = fleet.get("node-1")
    assert record is not None
    assert (record.boot_id, record.seq, record.online) == (newest.boot_id, newest.seq, isinstance(newest, StatusBirth))


def test_throttle_lets_one_per_minute_and_counts_the_rest() -> None:
    throttle = Throttle(60)
    assert throttle.allow("malformed", 0) == 0
    assert throttle.allow("malformed", 10) is None
    assert throttle.allow("oversized", 10) == 0  # per reason
    assert throttle.allow("malformed", 30) is None
    assert throttle.allow("malformed", 61) == 2


@given(st.lists(st.floats(0, 5, allow_nan=False), max_size=200), st.floats(0.1, 20), st.integers(1, 10))
def test_token_bucket_never_allows_more_than_burst_plus_rate_over_time(
    gaps: list[float], rate: float, burst: int
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    allowed: list[float] = []
    for gap in gaps:
        now += gap
        wait = bucket.take(now)
        if wait == 0.0:
            allowed.append(now)
        else:
            assert wait > 0
            assert bucket.take(now + wait + 1e-9) == 0.0  # the promised wait is enough
            allowed.append(now + wait + 1e-9)
            now += wait + 1e-9
    for i, start in enumerate(allowed):
        in_window = [t for t in allowed[i:] if t - start <= 1.0]
        assert len(in_window) <= burst + rate * 1.0 + 1e-6


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=2, now=0)
    assert bucket.take(0) == 0.0 and bucket.take(0) == 0.0
    assert bucket.take(0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0, now=0)
