"""Every message survives a JSON round trip, and bad input is refused with a clear validation error."""

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    MAX_PAYLOAD_BYTES,
    Channel,
    CommandResult,
    CommandStatus,
    DoorEvent,
    NoCause,
    PayloadError,
    RejectReason,
    decode,
    decode_message,
    encode,
    topic,
)
from tests import samples

ALL = [
    (Channel.STATUS, samples.birth()),
    (Channel.STATUS, samples.death()),
    (Channel.TELEMETRY, samples.telemetry()),
    (Channel.EVENT, samples.door_event()),
    (Channel.EVENT, samples.ledger_event()),
    (Channel.EVENT, samples.keypad_event()),
    (Channel.EVENT, samples.ota_event()),
    (Channel.COMMAND, samples.open_command()),
    (Channel.COMMAND, samples.reserve_command()),
    (Channel.COMMAND, samples.cancel_command()),
    (Channel.COMMAND, samples.provision_key_command()),
    (Channel.COMMAND, samples.update_command()),
    (Channel.RESULT, samples.open_result()),
]
IDS = [type(m).__name__ for _, m in ALL]


@pytest.mark.parametrize(("channel", "message"), ALL, ids=IDS)
def test_round_trip_through_json(channel: Channel, message: BaseModel) -> None:
    payload = encode(message)
    decoded = decode(channel, payload)
    assert decoded == message
    assert type(decoded) is type(message)
    assert encode(decoded) == payload


@pytest.mark.parametrize(("channel", "message"), ALL, ids=IDS)
def test_unknown_schema_version_is_refused_by_reason(channel: Channel, message: BaseModel) -> None:
    doc = json.loads(encode(message))
    doc["schema_version"] = 2
    with pytest.raises(PayloadError) as info:
        decode(channel, json.dumps(doc).encode())
    assert info.value.reason is RejectReason.UNKNOWN_VERSION
    assert "unsupported schema_version 2" in str(info.value)


@pytest.mark.parametrize(("channel", "message"), ALL, ids=IDS)
def test_every_required_field_is_required(channel: Channel, message: BaseModel) -> None:
    doc = json.loads(encode(message))
    required = [name for name, f in type(message).model_fields.items() if f.is_required()]
    assert required, "each message has required fields"
    for name in required:
        broken = {k: v for k, v in doc.items() if k != name}
        with pytest.raises(PayloadError) as info:
            decode(channel, json.dumps(broken).encode())
        assert info.value.reason is RejectReason.INVALID
        assert name in info.value.detail and "Field required" in info.value.detail


@pytest.mark.parametrize(("channel", "message"), ALL, ids=IDS)
def test_unknown_fields_are_refused(channel: Channel, message: BaseModel) -> None:
    doc = {**json.loads(encode(message)), "surprise": 1}
    with pytest.raises(PayloadError, match="surprise"):
        decode(channel, json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "seven"),
        ("seq", -1),
        ("boot_id", 1.5),
        ("ts", "yesterday"),
        ("ts", "2026-11-24T12:00:00"),  # no UTC offset: ambiguous device time
        ("node_id", "a/b"),
        ("node_id", "x" * 65),
        ("enclosure_temp_c", "warm"),
        ("battery", {"soc_pct": 101}),
        ("compartments", [{"id": "A1", "door": "ajar", "lock": "locked"}]),
    ],
)
def test_wrong_types_and_ranges_are_refused(field: str, value: Any) -> None:
    doc = {**json.loads(encode(samples.telemetry())), field: value}
    with pytest.raises(PayloadError) as info:
        decode(Channel.TELEMETRY, json.dumps(doc).encode())
    assert info.value.reason is RejectReason.INVALID
    assert field in info.value.detail


def test_oversized_strings_are_refused() -> None:
    doc = json.loads(encode(samples.birth()))
    doc["firmware_version"] = "1." + "9" * 200
    with pytest.raises(PayloadError, match=r"firmware_version.*at most 64 characters"):
        decode(Channel.STATUS, json.dumps(doc).encode())


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(PayloadError) as info:
        decode(Channel.TELEMETRY, b"{" + b" " * MAX_PAYLOAD_BYTES + b"}")
    assert info.value.reason is RejectReason.OVERSIZED


@pytest.mark.parametrize("payload", [b"\xff\xfe garbage", b"", b"[1, 2", b"null", b"42", b'"text"'])
def test_garbage_is_malformed_or_invalid_never_a_crash(payload: bytes) -> None:
    with pytest.raises(PayloadError) as info:
        decode(Channel.TELEMETRY, payload)
    assert info.value.reason in (RejectReason.MALFORMED, RejectReason.INVALID)


def test_payload_node_must_match_topic_node() -> None:
    payload = encode(samples.telemetry(node_id="node-1"))
    with pytest.raises(PayloadError) as info:
        decode_message(topic("node-2", Channel.TELEMETRY), payload)
    assert info.value.reason is RejectReason.WRONG_NODE
    where, message = decode_message(topic("node-1", Channel.TELEMETRY), payload)
    assert where.node_id == "node-1"
    assert message == samples.telemetry(node_id="node-1")


def test_unknown_topic_is_a_payload_error_with_reason() -> None:
    with pytest.raises(PayloadError) as info:
        decode_message("lockers/v1/node-1/gossip", b"{}")
    assert info.value.reason is RejectReason.UNKNOWN_TOPIC


def test_command_must_expire_after_it_was_issued() -> None:
    cmd = samples.open_command()
    with pytest.raises(ValidationError, match="must be later than issued_at"):
        type(cmd).model_validate({**cmd.model_dump(), "expires_at": cmd.issued_at})


def test_status_is_told_apart_by_state() -> None:
    assert decode(Channel.STATUS, encode(samples.death())).state == "offline"
    doc = json.loads(encode(samples.death()))
    doc["state"] = "sleeping"
    with pytest.raises(PayloadError, match="state"):
        decode(Channel.STATUS, json.dumps(doc).encode())


def test_door_event_without_cause_is_an_uncommanded_open() -> None:
    event = samples.door_event().model_copy(update={"cause": NoCause()})
    decoded = decode(Channel.EVENT, encode(event))
    assert isinstance(decoded, DoorEvent)
    assert decoded.uncommanded_open
    assert not samples.door_event().uncommanded_open


def test_a_door_outcome_needs_an_executed_status() -> None:
    result = samples.open_result()
    with pytest.raises(ValidationError, match="only reported with status done or duplicate"):
        CommandResult.model_validate({**result.model_dump(), "status": CommandStatus.EXPIRED})


def test_a_reservation_window_must_be_in_order() -> None:
    doc = json.loads(encode(samples.reserve_command()))
    doc["pickup_until"] = doc["opens_at"]
    with pytest.raises(PayloadError, match="opens_at < hold_until <= pickup_until") as info:
        decode(Channel.COMMAND, json.dumps(doc).encode())
    assert info.value.reason is RejectReason.INVALID


def test_commands_and_events_are_told_apart_by_their_discriminator() -> None:
    doc = json.loads(encode(samples.cancel_command()))
    doc["type"] = "self_destruct"
    with pytest.raises(PayloadError) as info:
        decode(Channel.COMMAND, json.dumps(doc).encode())
    assert info.value.reason is RejectReason.INVALID
    assert isinstance(decode(Channel.EVENT, encode(samples.ledger_event())), type(samples.ledger_event()))
