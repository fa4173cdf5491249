"""Encoding and decoding of payloads: the only place a payload is turned into a model or back."""

from typing import Final, Literal, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.command import Command
from schemas.errors import PayloadError, RejectReason, TopicError
from schemas.event import Event
from schemas.result import CommandResult
from schemas.status import Status
from schemas.stored import StoredReceipt
from schemas.telemetry import Telemetry
from schemas.topics import Channel, NodeTopic, parse_topic

MAX_PAYLOAD_BYTES: Final = 16 * 1024
"""Largest payload any channel accepts; larger ones are refused before parsing."""

Message = Status | Telemetry | Event | Command | CommandResult | StoredReceipt

ADAPTERS: Final[dict[Channel, TypeAdapter[Message]]] = {
    Channel.STATUS: TypeAdapter(Status),
    Channel.TELEMETRY: TypeAdapter(Telemetry),
    Channel.EVENT: TypeAdapter(Event),
    Channel.COMMAND: TypeAdapter(Command),
    Channel.RESULT: TypeAdapter(CommandResult),
    Channel.STORED: TypeAdapter(StoredReceipt),
}

_VALIDATORS: Final = {channel: adapter.validator for channel, adapter in ADAPTERS.items()}
"""The adapters' compiled validators, called directly: the ``TypeAdapter.validate_json`` wrapper runs Python code
per message for options this module never passes."""


def encode(message: BaseModel) -> bytes:
    """Serialise a contract model to its JSON payload."""
    return message.model_dump_json().encode()


@overload
def decode(channel: Literal[Channel.TELEMETRY], payload: bytes) -> Telemetry: ...
@overload
def decode(channel: Literal[Channel.STATUS], payload: bytes) -> Status: ...
@overload
def decode(channel: Literal[Channel.EVENT], payload: bytes) -> Event: ...
@overload
def decode(channel: Literal[Channel.COMMAND], payload: bytes) -> Command: ...
@overload
def decode(channel: Literal[Channel.RESULT], payload: bytes) -> CommandResult: ...
@overload
def decode(channel: Literal[Channel.STORED], payload: bytes) -> StoredReceipt: ...
@overload
def decode(channel: Channel, payload: bytes) -> Message: ...
def decode(channel: Channel, payload: bytes) -> Message:
    """Validate ``payload`` as the model of ``channel``; raise :class:`PayloadError` with a reason."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            RejectReason.OVERSIZED, f"{len(payload)} bytes on {channel.value}; limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        message: Message = _VALIDATORS[channel].validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(_reason(exc), _summary(exc)) from exc
    return message


def decode_message(topic: str, payload: bytes) -> tuple[NodeTopic, Message]:
    """Parse the topic, decode the payload and check the payload's node is the topic's node."""
    where = node_topic(topic)
    message = decode(where.channel, payload)
    check_node(where, message.node_id)
    return where, message


def node_topic(topic: str) -> NodeTopic:
    """The node and channel of a received message's topic; raise :class:`PayloadError` (``unknown_topic``)."""
    try:
        return parse_topic(topic)
    except TopicError as exc:
        raise PayloadError(RejectReason.UNKNOWN_TOPIC, str(exc)) from exc


def check_node(where: NodeTopic, node_id: str) -> None:
    """Raise :class:`PayloadError` (``wrong_node``) unless the payload's node is the topic's."""
    if node_id != where.node_id:
        raise PayloadError(
            RejectReason.WRONG_NODE, f"payload node {node_id!r} published on topic of node {where.node_id!r}"
        )


def _reason(exc: ValidationError) -> RejectReason:
    errors = exc.errors(include_url=False)
    if any(e["type"] in ("json_invalid", "json_type") for e in errors):
        return RejectReason.MALFORMED
    if any(e["loc"][-1:] == ("schema_version",) and e["type"] != "missing" for e in errors):
        return RejectReason.UNKNOWN_VERSION
    return RejectReason.INVALID


def _summary(exc: ValidationError, limit: int = 3) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:limit]]
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more
