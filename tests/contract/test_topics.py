"""The topic grammar: builders and parsers are inverse, and refuse node ids that don't fill one level."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import Channel, TopicError, check_node_id, fleet_filter, parse_topic, topic
from schemas.types import NODE_ID_PATTERN

node_ids = st.from_regex(NODE_ID_PATTERN, fullmatch=True)


@given(node_ids, st.sampled_from(Channel))
def test_parse_inverts_build(node_id: str, channel: Channel) -> None:
    built = topic(node_id, channel)
    parsed = parse_topic(built)
    assert (parsed.node_id, parsed.channel) == (node_id, channel)
    assert topic(parsed.node_id, parsed.channel) == built


@given(st.text(max_size=80).filter(lambda s: any(c in s for c in "+#/") or s == ""))
def test_builder_refuses_wildcards_separators_and_empty(node_id: str) -> None:
    with pytest.raises(TopicError, match="invalid node id"):
        topic(node_id, Channel.TELEMETRY)


@pytest.mark.parametrize("bad", ["", "+", "#", "a/b", "node+1", "node#", " node", "$SYS", "x" * 65])
def test_named_bad_node_ids(bad: str) -> None:
    with pytest.raises(TopicError):
        check_node_id(bad)
    with pytest.raises(TopicError):
        parse_topic(f"lockers/v1/{bad}/telemetry")


@pytest.mark.parametrize(
    "bad",
    [
        "lockers/v1/n1",
        "lockers/v2/n1/telemetry",
        "lockers/v1/n1/telemetry/extra",
        "x/v1/n1/status",
        "lockers/v1/n1/nope",
        "lockers/v1/n1/telemetry\n",
        "lockers/v1/n1\n/telemetry",
    ],
)
def test_parse_refuses_topics_outside_the_grammar(bad: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(bad)


@pytest.mark.parametrize("bad", ["node-1\n", "node-1\r\n", "\nnode-1"])
def test_a_node_id_with_a_newline_fills_no_topic_level(bad: str) -> None:
    with pytest.raises(TopicError, match="invalid node id"):
        check_node_id(bad)
    with pytest.raises(TopicError):
        topic(bad, Channel.TELEMETRY)


def test_every_channel_lives_under_the_node_subtree() -> None:
    for channel in Channel:
        assert topic("n1", channel).startswith("lockers/v1/n1/")


def test_fleet_filters_and_shared_subscriptions() -> None:
    assert fleet_filter(Channel.TELEMETRY) == "lockers/v1/+/telemetry"
    assert fleet_filter(Channel.EVENT, share_group="ingest") == "$share/ingest/lockers/v1/+/event"
    with pytest.raises(TopicError):
        fleet_filter(Channel.EVENT, share_group="a/b")


def test_channel_delivery_rules() -> None:
    assert Channel.STATUS.retained
    assert not Channel.COMMAND.retained
    assert all(c.qos == 1 for c in Channel)
