"""The receipt accumulator: each drain covers exactly the keys recorded since the last, in bounded receipts."""

from hypothesis import given
from hypothesis import strategies as st

from controller.ingest.dedup import MessageKey
from controller.ingest.receipts import Receipts
from schemas import MAX_RANGES, Channel, StoredReceipt, decode, encode

keys = st.lists(
    st.builds(MessageKey, st.sampled_from(["n1", "n2"]), st.integers(0, 2), st.integers(0, 3 * MAX_RANGES)),
    max_size=2000,
)


def covered(receipts: list[StoredReceipt]) -> set[MessageKey]:
    return {
        MessageKey(r.node_id, r.boot_id, seq)
        for r in receipts
        for first, last in r.ranges
        for seq in range(first, last + 1)
    }


@given(st.lists(keys, min_size=1, max_size=3))
def test_each_drain_covers_exactly_the_keys_recorded_since_the_last(batches: list[list[MessageKey]]) -> None:
    receipts = Receipts()
    for batch in batches:
        receipts.record(batch)
        drained = receipts.drain()
        assert covered(drained) == set(batch)
        for receipt in drained:  # each one valid on the wire: sorted, disjoint, at most MAX_RANGES
            assert decode(Channel.STORED, encode(receipt)) == receipt
            assert all(a[1] + 1 < b[0] for a, b in zip(receipt.ranges, receipt.ranges[1:], strict=False))
        pairs = [(r.node_id, r.boot_id) for r in drained]
        full = [r for r in drained if len(r.ranges) == MAX_RANGES]
        assert len(pairs) - len(set(pairs)) <= len(full)  # a second receipt for a pair only after a full one
        assert len(receipts) == 0 and receipts.drain() == []


def test_in_order_keys_make_one_range_and_gaps_split_them() -> None:
    receipts = Receipts()
    receipts.record(MessageKey("n1", 7, seq) for seq in [*range(0, 100), *range(101, 200)])
    receipts.record(
        [MessageKey("n1", 7, 205), MessageKey("n1", 7, 203), MessageKey("n1", 7, 204), MessageKey("n1", 8, 0)]
    )
    assert sorted(receipts.drain(), key=lambda r: r.boot_id) == [
        StoredReceipt(node_id="n1", boot_id=7, ranges=[(0, 99), (101, 199), (203, 205)]),
        StoredReceipt(node_id="n1", boot_id=8, ranges=[(0, 0)]),
    ]


def test_a_filled_gap_joins_its_neighbours() -> None:
    receipts = Receipts()
    receipts.record(MessageKey("n1", 1, seq) for seq in (0, 2, 4, 1, 3, 3, 0))
    assert receipts.drain() == [StoredReceipt(node_id="n1", boot_id=1, ranges=[(0, 4)])]


def test_more_ranges_than_one_receipt_holds_go_in_further_receipts() -> None:
    receipts = Receipts()
    receipts.record(MessageKey("n1", 1, 2 * i) for i in range(2 * MAX_RANGES + 1))
    drained = receipts.drain()
    assert [len(r.ranges) for r in drained] == [MAX_RANGES, MAX_RANGES, 1]
    assert covered(drained) == {MessageKey("n1", 1, 2 * i) for i in range(2 * MAX_RANGES + 1)}
