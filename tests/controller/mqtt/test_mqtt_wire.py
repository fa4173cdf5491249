"""The hand-framed MQTT 5 subset: packets split anywhere still parse, and what is encoded is what MQTT says."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.mqtt import wire


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 0, properties: bytes = b"") -> bytes:
    """A PUBLISH as a broker sends it (MQTT 5, with a property block)."""
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", packet_id)
    body += wire.varint(len(properties)) + properties + payload
    return bytes([0x30 | qos << 1]) + wire.varint(len(body)) + body


def feed_in_chunks(data: bytes, cuts: list[int], max_packet_size: int = wire.MAX_PACKET_SIZE) -> list[wire.Packet]:
    parser = wire.Parser(max_packet_size)
    packets: list[wire.Packet] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        packets.extend(parser.feed(data[start:cut]))
        start = cut
    return packets


messages = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40),
        st.binary(max_size=300),
        st.sampled_from([0, 1]),
        st.integers(1, 65535),
        st.sampled_from([b"", b"\x02\x00\x00\x00\x05", b"\x01\x01"]),  # no props, message expiry, format indicator
    ),
    min_size=1,
    max_size=20,
)


@given(messages, st.lists(st.integers(0, 10_000), max_size=30))
def test_publishes_survive_any_split(batch: list[tuple[str, bytes, int, int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(publish_packet(t, p, q, pid, props) for t, p, q, pid, props in batch)
    packets = feed_in_chunks(stream, cuts)
    assert packets == [wire.Publish(t, p, q, pid if q else None) for t, p, q, pid, _props in batch]


def test_large_payload_needs_a_multi_byte_length() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    packet = publish_packet("lockers/v1/n/telemetry", payload, 1, 7)
    assert packet[1] & 0x80 and packet[2] & 0x80  # remaining length spans several bytes
    assert feed_in_chunks(packet, [3, 100, 70_000], 2 << 20) == [wire.Publish("lockers/v1/n/telemetry", payload, 1, 7)]


def test_control_packets_parse() -> None:
    stream = (
        b"\x20\x03\x01\x00\x00"  # CONNACK session present, success
        + b"\x90\x06\x00\x01\x00\x01\x80\x00"  # SUBACK id 1: granted 1, refused, granted 0
        + b"\xd0\x00"  # PINGRESP
        + b"\xe0\x01\x8e"  # DISCONNECT session taken over
    )
    assert wire.Parser().feed(stream) == [
        wire.ConnAck(session_present=True, reason=0),
        wire.SubAck(1, b"\x01\x80\x00"),
        wire.PingResp(),
        wire.Disconnect(0x8E),
    ]


def test_connect_carries_session_expiry_receive_maximum_packet_size_and_credentials() -> None:
    packet = wire.connect(
        "ctl",
        keepalive_s=30,
        session_expiry_s=3600,
        receive_maximum=5000,
        max_packet_size=65536,
        username="u",
        password="p",
    )
    assert packet[0] == 0x10
    body = packet[2:]
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0xC0  # username + password, clean start off
    assert body[8:10] == b"\x00\x1e"
    assert body[10:24] == b"\x0d\x11\x00\x00\x0e\x10\x21\x13\x88\x27\x00\x01\x00\x00"
    assert body[24:] == b"\x00\x03ctl\x00\x01u\x00\x01p"


def test_subscribe_and_pubacks() -> None:
    assert wire.subscribe(1, ["a/+", "$share/g/b"]) == (
        b"\x82\x16\x00\x01\x00" + b"\x00\x03a/+\x01" + b"\x00\x0a$share/g/b\x01"
    )
    assert wire.pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


@pytest.mark.parametrize("value", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455])
def test_varint_round_trip(value: int) -> None:
    encoded = wire.varint(value)
    packet = b"\xd0" + encoded + bytes(value if value < 100_000 else 0)
    if value < 100_000:
        assert len(wire.Parser().feed(packet)) == 1
    assert len(encoded) == 1 + (value > 127) + (value > 16_383) + (value > 2_097_151)


def test_a_length_longer_than_four_bytes_is_a_protocol_error() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.Parser().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(ValueError, match="does not fit"):
        wire.varint(268_435_456)


def test_connack_and_disconnect_properties_are_read() -> None:
    keepalive = b"\x13\x00\x0a"  # Server Keep Alive 10 s
    assigned = b"\x12\x00\x03abc"  # Assigned Client Identifier, skipped
    user = b"\x26\x00\x01k\x00\x01v"  # User Property, skipped
    props = keepalive + assigned + user
    connack = b"\x20" + wire.varint(2 + 1 + len(props)) + b"\x00\x00" + wire.varint(len(props)) + props
    reason = b"\x1f\x00\x05moved"
    disconnect = b"\xe0" + wire.varint(2 + len(reason)) + b"\x8b" + wire.varint(len(reason)) + reason
    assert wire.Parser().feed(connack + disconnect) == [
        wire.ConnAck(session_present=False, reason=0, server_keepalive=10),
        wire.Disconnect(0x8B, "moved"),
    ]


def test_packet_types_a_subscriber_does_not_expect_are_skipped_as_unknown() -> None:
    unsuback = b"\xb0\x03\x00\x01\x00"
    auth = b"\xf0\x00"
    ping = b"\xd0\x00"
    assert wire.Parser().feed(unsuback + auth + ping) == [wire.Unknown(11), wire.Unknown(15), wire.PingResp()]


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"\x32\x03\x00\x09a", "truncated"),  # topic length 9 in a 3-byte packet
        (b"\x32\x05\x00\x01a\x00", "truncated"),  # packet id cut in half
        (b"\x32\x06\x00\x01a\x00\x01\x05", "truncated"),  # 5 bytes of properties announced, none there
        (b"\x30\x04\x00\x02\xff\xfe", "malformed"),  # topic not UTF-8
        (b"\x36\x05\x00\x01a\x00\x01", "malformed"),  # QoS 3
        (b"\x00\x00", "malformed"),  # reserved packet type
        (b"\x20\x01\x00", "truncated"),  # CONNACK without its reason code
        (b"\x20\x05\x00\x00\x02\x13\x00", "truncated"),  # Server Keep Alive cut in half
        (b"\x20\x05\x00\x00\x02\x7e\x00", "malformed"),  # unknown property
        (b"\x90\x04\x00\x01\x05\x00", "truncated"),  # SUBACK properties past its end
        (b"\xe0\x04\x8e\x02\x1f\x00", "truncated"),  # DISCONNECT reason string cut
        (b"\x30\xff\xff\xff\xff\x01", "malformed"),  # remaining length of 5 bytes
    ],
)
def test_bad_packets_raise_one_protocol_error_with_a_reason(stream: bytes, reason: str) -> None:
    with pytest.raises(wire.ProtocolError) as raised:
        wire.Parser().feed(stream + b"\xd0\x00")
    assert raised.value.reason == reason


def test_a_packet_over_the_maximum_size_is_refused_before_it_is_buffered() -> None:
    parser = wire.Parser(max_packet_size=1000)
    header = b"\x30" + wire.varint(2_000_000)
    with pytest.raises(wire.ProtocolError) as raised:
        parser.feed(header + b"\x00\x01a" + bytes(100))
    assert raised.value.reason == "oversize"
    assert parser.buffered == 0
    at_limit = publish_packet("t", bytes(991), 1, 1)
    assert len(at_limit) == 1000
    assert wire.Parser(max_packet_size=1000).feed(at_limit) == [wire.Publish("t", bytes(991), 1, 1)]
    with pytest.raises(wire.ProtocolError, match="1001-byte packet"):
        wire.Parser(max_packet_size=1000).feed(publish_packet("t", bytes(992), 1, 1)[:10])


def test_only_the_incomplete_tail_is_kept() -> None:
    parser = wire.Parser()
    packet = publish_packet("a/b", b"x" * 500, 1, 3)
    assert parser.feed(packet + packet[:100]) == [wire.Publish("a/b", b"x" * 500, 1, 3)]
    assert parser.buffered == 100
    assert parser.feed(packet[100:300]) == []
    assert parser.buffered == 300
    assert parser.feed(packet[300:] + packet[:1]) == [wire.Publish("a/b", b"x" * 500, 1, 3)]
    assert parser.buffered == 1


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_give_packets_or_a_protocol_error_and_stay_bounded(data: bytes, cuts: list[int]) -> None:
    parser = wire.Parser(max_packet_size=256)
    start = 0
    try:
        for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
            parser.feed(data[start:cut])
            start = cut
            assert parser.buffered < 256
    except wire.ProtocolError as exc:
        assert exc.reason in {"malformed", "truncated", "oversize"}
