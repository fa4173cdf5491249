"""The ingest session's protocol against a scripted broker, byte by byte, on a clock the test moves (no sockets)."""

import pytest

from controller.mqtt import wire
from controller.mqtt.ingest_protocol import IngestProtocol, SessionError, SessionParams
from tests.controller.mqtt.test_mqtt_wire import publish_packet

FILTERS = ["lockers/v1/+/status", "lockers/v1/+/telemetry"]
CONNACK = b"\x20\x03\x00\x00\x00"
SUBACK = b"\x90\x05\x00\x01\x00\x01\x01"
PINGRESP = b"\xd0\x00"


def connack(keepalive_s: int) -> bytes:
    props = b"\x13" + keepalive_s.to_bytes(2)
    return b"\x20" + wire.varint(3 + len(props)) + b"\x01\x00" + wire.varint(len(props)) + props


def session(keepalive_s: int = 30, unknown: list[str] | None = None) -> IngestProtocol:
    """A protocol past CONNECT, CONNACK and SUBSCRIBE at t=0 (its sends drained)."""
    protocol = IngestProtocol(
        SessionParams("ctl", FILTERS, keepalive_s=keepalive_s, max_packet_size=4096),
        0.0,
        (unknown if unknown is not None else []).append,
    )
    protocol.data_to_send()
    protocol.sent(0.0)
    assert protocol.receive(CONNACK + SUBACK, 0.0) == []
    protocol.data_to_send()
    return protocol


def test_connect_then_subscribe_then_deliveries() -> None:
    protocol = IngestProtocol(SessionParams("ctl", FILTERS, receive_maximum=100, max_packet_size=4096), 0.0)
    assert protocol.data_to_send() == wire.connect(
        "ctl", keepalive_s=30, session_expiry_s=3600, receive_maximum=100, max_packet_size=4096
    )
    assert protocol.receive(CONNACK, 0.1) == []
    assert protocol.data_to_send() == wire.subscribe(1, FILTERS)
    assert not protocol.subscribed
    publish = publish_packet("lockers/v1/n1/telemetry", b"{}", 1, 42)
    assert protocol.receive(SUBACK + publish[:5], 0.2) == []
    assert protocol.subscribed
    assert protocol.receive(publish[5:], 0.3) == [wire.Publish("lockers/v1/n1/telemetry", b"{}", 1, 42)]


def test_a_ping_goes_out_after_half_the_keepalive_without_sending() -> None:
    protocol = session(keepalive_s=30)
    protocol.poll(14.9)
    assert protocol.data_to_send() == b""
    protocol.poll(15.0)
    assert protocol.data_to_send() == wire.PINGREQ


def test_acknowledgements_sent_count_for_the_keepalive() -> None:
    protocol = session(keepalive_s=30)
    protocol.sent(10.0)
    protocol.poll(24.9)
    assert protocol.data_to_send() == b""
    protocol.poll(25.0)
    assert protocol.data_to_send() == wire.PINGREQ


def test_the_brokers_server_keep_alive_replaces_ours() -> None:
    protocol = IngestProtocol(SessionParams("ctl", FILTERS, keepalive_s=60), 0.0)
    protocol.data_to_send()
    protocol.receive(connack(10) + SUBACK, 0.0)
    assert protocol.keepalive_s == 10
    protocol.data_to_send()
    protocol.poll(5.0)
    assert protocol.data_to_send() == wire.PINGREQ
    with pytest.raises(SessionError) as raised:
        protocol.poll(10.0)  # half of the broker's keep-alive, not of ours (30 s)
    assert raised.value.reason == "keepalive_timeout"


def test_no_pingresp_within_the_deadline_ends_the_connection() -> None:
    protocol = session(keepalive_s=30)
    protocol.poll(15.0)
    assert protocol.data_to_send() == wire.PINGREQ
    protocol.poll(29.9)  # still within the deadline
    with pytest.raises(SessionError) as raised:
        protocol.poll(30.0)
    assert raised.value.reason == "keepalive_timeout"
    assert "PINGRESP" in str(raised.value)
    assert "half-open" in raised.value.action


def test_a_pingresp_in_time_keeps_the_connection_and_the_next_ping_follows() -> None:
    protocol = session(keepalive_s=30)
    protocol.poll(15.0)
    protocol.sent(15.0)
    assert protocol.data_to_send() == wire.PINGREQ
    protocol.receive(PINGRESP, 16.0)
    protocol.poll(29.9)
    assert protocol.data_to_send() == b""
    protocol.poll(30.0)
    assert protocol.data_to_send() == wire.PINGREQ


def test_deliveries_arriving_while_a_pingresp_is_owed_keep_the_connection() -> None:
    protocol = session(keepalive_s=30)
    protocol.poll(15.0)
    protocol.receive(publish_packet("t", b"x", 1, 1), 28.0)  # the PINGRESP queued behind a flood
    protocol.poll(42.9)
    with pytest.raises(SessionError):
        protocol.poll(43.0)


def test_a_broker_that_never_answers_connect_is_dropped() -> None:
    protocol = IngestProtocol(SessionParams("ctl", FILTERS, keepalive_s=30), 0.0)
    protocol.data_to_send()
    protocol.poll(14.0)
    with pytest.raises(SessionError) as raised:
        protocol.poll(15.0)
    assert raised.value.reason == "keepalive_timeout" and "CONNACK" in str(raised.value)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"\x32\x03\x00\x09t", "truncated"),  # topic runs past the packet
        (b"\x32\x04\x00\x01t\x00", "truncated"),  # packet id cut in half
        (publish_packet("t", b"x", 1, 1).replace(b"t", b"\xff"), "malformed"),  # topic not UTF-8
        (b"\x30\xff\xff\xff\xff\x01", "malformed"),
        (publish_packet("t", bytes(5000), 1, 1)[:100], "oversize"),  # over the 4096 bytes announced
    ],
)
def test_a_bad_packet_is_one_session_error_with_its_reason(stream: bytes, reason: str) -> None:
    protocol = session()
    good = publish_packet("t", b"ok", 1, 1)
    with pytest.raises(SessionError) as raised:
        protocol.receive(good + stream, 1.0)
    assert raised.value.reason == reason
    assert isinstance(raised.value, ConnectionError)


def test_a_session_takeover_is_reported_with_what_to_do() -> None:
    protocol = session()
    with pytest.raises(SessionError) as raised:
        protocol.receive(b"\xe0\x01\x8e", 1.0)
    assert raised.value.reason == "session_taken_over"
    assert "'ctl'" in str(raised.value)
    assert "--client-id" in raised.value.action


def test_other_disconnects_carry_the_reason_code_and_string() -> None:
    protocol = session()
    with pytest.raises(SessionError) as raised:
        protocol.receive(b"\xe0\x0a\x8b\x08\x1f\x00\x05bye!!", 1.0)
    assert raised.value.reason == "broker_disconnect"
    assert "0x8b (bye!!)" in str(raised.value)


def test_unexpected_packet_types_are_counted_and_skipped() -> None:
    unknown: list[str] = []
    protocol = session(unknown=unknown)
    delivered = protocol.receive(b"\xb0\x03\x00\x01\x00" + b"\xf0\x00" + publish_packet("t", b"x", 1, 2), 1.0)
    assert unknown == ["unsuback", "auth"]
    assert delivered == [wire.Publish("t", b"x", 1, 2)]


def test_refusals_of_connect_and_subscribe_are_session_errors() -> None:
    protocol = IngestProtocol(SessionParams("ctl", FILTERS), 0.0)
    with pytest.raises(SessionError) as raised:
        protocol.receive(b"\x20\x03\x00\x87\x00", 0.0)  # not authorized
    assert raised.value.reason == "refused" and "0x87" in str(raised.value)
    protocol = IngestProtocol(SessionParams("ctl", FILTERS), 0.0)
    protocol.receive(CONNACK, 0.0)
    with pytest.raises(SessionError, match="lockers/v1/\\+/telemetry"):
        protocol.receive(b"\x90\x05\x00\x01\x00\x01\x87", 0.0)
