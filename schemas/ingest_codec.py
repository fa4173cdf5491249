"""Decoding for the controller's ingest: telemetry into a frame (msgspec, in C), every other channel into its model.

Telemetry is nearly every ingested message, and its model decode was the largest share of the controller's CPU
per message (BENCHMARKS.md, issue 15). A frame holds the same values the model would; whatever the frame decoder
refuses goes to the model, which decides: its error (the reject reason), or its value as a frame (lax input such as
``"seq": 7.0`` that the model accepts and msgspec does not).
"""

import re
from typing import Final

import msgspec

from schemas.codec import MAX_PAYLOAD_BYTES, Message, check_node, decode, encode, node_topic
from schemas.frames import TelemetryFrame
from schemas.telemetry import Telemetry
from schemas.topics import Channel, NodeTopic

Ingested = TelemetryFrame | Message
"""A decoded node message as the ingest sees it."""

AnyTelemetry = TelemetryFrame | Telemetry
"""Telemetry as a frame (ingested) or a model (built in code): the same attributes and values."""

_TELEMETRY: Final = msgspec.json.Decoder(TelemetryFrame)

_MODEL_DECIDES: Final = re.compile(rb"\.[0-9]{7}")
"""Seven or more fractional digits: the model truncates an instant to microseconds where msgspec rounds, so such a
payload (and any with a ``\\`` escape, which could spell one) is decoded by the model."""


def decode_telemetry(payload: bytes) -> TelemetryFrame:
    """Validate ``payload`` as telemetry; raise :class:`~schemas.errors.PayloadError` with the model's reason (an
    oversized payload goes straight to the model, which refuses it unread)."""
    if len(payload) <= MAX_PAYLOAD_BYTES and b"\\" not in payload and _MODEL_DECIDES.search(payload) is None:
        try:
            return _TELEMETRY.decode(payload)
        except msgspec.DecodeError:
            pass
    return _frame_of(decode(Channel.TELEMETRY, payload))


def _frame_of(model: Message) -> TelemetryFrame:
    return _TELEMETRY.decode(encode(model))


def as_model(telemetry: AnyTelemetry) -> Telemetry:
    """The contract model of a telemetry frame (for answers that carry the model, such as the HTTP API's)."""
    if isinstance(telemetry, Telemetry):
        return telemetry
    return decode(Channel.TELEMETRY, msgspec.json.encode(telemetry))


def decode_ingested(topic: str, payload: bytes) -> tuple[NodeTopic, Ingested]:
    """Parse the topic, decode the payload (telemetry as a frame) and check the payload's node is the topic's."""
    where = node_topic(topic)
    message: Ingested = (
        decode_telemetry(payload) if where.channel is Channel.TELEMETRY else decode(where.channel, payload)
    )
    check_node(where, message.node_id)
    return where, message
