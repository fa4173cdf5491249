"""The delivery receipt: a downlink channel of sorted, non-overlapping, bounded seq ranges."""

import pytest

from schemas import MAX_RANGES, Channel, Direction, PayloadError, StoredReceipt, decode, decode_message, encode, topic


def test_the_stored_channel_goes_down_to_one_node_at_qos_1_and_is_never_retained() -> None:
    assert topic("n1", Channel.STORED) == "lockers/v1/n1/stored"
    assert Channel.STORED.direction is Direction.DOWN
    assert Channel.STORED.qos == 1
    assert not Channel.STORED.retained


def test_a_receipt_round_trips_through_its_topic() -> None:
    receipt = StoredReceipt(node_id="n1", boot_id=3, ranges=[(0, 9), (11, 11), (14, 20)])
    where, decoded = decode_message(topic("n1", Channel.STORED), encode(receipt))
    assert where.channel is Channel.STORED
    assert decoded == receipt


@pytest.mark.parametrize(
    "ranges",
    [
        [],  # says nothing
        [(5, 4)],  # ends before it starts
        [(0, 5), (5, 9)],  # overlaps
        [(10, 12), (0, 5)],  # not sorted
        [(-1, 2)],  # not a seq
        [(2 * i, 2 * i) for i in range(MAX_RANGES + 1)],  # too many
    ],
)
def test_receipts_out_of_order_overlapping_or_too_long_are_refused(ranges: list[tuple[int, int]]) -> None:
    payload = encode(StoredReceipt.model_construct(schema_version=1, node_id="n1", boot_id=1, ranges=ranges))
    with pytest.raises(PayloadError):
        decode(Channel.STORED, payload)


def test_the_largest_receipt_fits_the_payload_limit() -> None:
    top = 2**63 - 1 - 2 * MAX_RANGES
    receipt = StoredReceipt(
        node_id="n1", boot_id=2**63 - 1, ranges=[(top + 2 * i, top + 2 * i) for i in range(MAX_RANGES)]
    )
    assert decode(Channel.STORED, encode(receipt)) == receipt  # under MAX_PAYLOAD_BYTES, else oversized


def test_a_receipt_for_another_node_on_this_nodes_topic_is_refused() -> None:
    receipt = StoredReceipt(node_id="n2", boot_id=1, ranges=[(0, 0)])
    with pytest.raises(PayloadError, match="published on topic of node"):
        decode_message(topic("n1", Channel.STORED), encode(receipt))
