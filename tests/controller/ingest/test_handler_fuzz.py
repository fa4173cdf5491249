"""Ingest on arbitrary bytes: never raises, refuses for the contract's reason, and what it takes InfluxDB can store.

The fast, pure counterpart of tests/chaos/test_payload_fuzz.py: no broker, no InfluxDB, Hypothesis instead of a
seeded mutator. Every refused message is one ``dead_letter`` line of the reason :func:`schemas.decode_message`
gives; every line of a valid message has a timestamp and integer fields within InfluxDB's 64 bits.
"""

import json
import re
from datetime import UTC
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.fleet.registry import Fleet, NodeRecord
from controller.ingest.handler import Ingest
from controller.metrics import Metrics
from controller.store.fleet import FleetStore
from schemas import Channel, Direction, PayloadError, decode_message, encode, topic
from tests import samples

INT64 = 2**63
UPLINK = [c for c in Channel if c.direction is Direction.UP]
VALID = [
    samples.birth(),
    samples.death(),
    samples.telemetry(),
    samples.door_event(),
    samples.ledger_event(),
    samples.keypad_event(),
    samples.ota_event(),
    samples.open_result(),
]
_INTEGER_FIELD = re.compile(r"[,\s]\w+=(-?\d+)i(?=[,\s]|$)")


class NoStore:
    """Statuses are saved nowhere here."""

    def save(self, record: NodeRecord) -> None:
        pass


def ingest() -> tuple[Ingest, Metrics]:
    fleet = Fleet()
    metrics = Metrics(lambda: fleet.counts(0))
    handler = Ingest(
        fleet, cast(FleetStore, NoStore()), metrics, already_stored=lambda _k: False, on_result=lambda _r: None
    )
    return handler, metrics


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid payload with one field replaced by any JSON value (or removed), its instant moved, an integer made
    huge, or its bytes cut or flipped."""
    doc: dict[str, Any] = json.loads(encode(draw(st.sampled_from(VALID))))
    how = draw(st.sampled_from(["replace", "remove", "cut", "flip", "instant", "big"]))
    key = draw(st.sampled_from(sorted(doc)))
    if how == "instant":  # any year from 1 to 9999
        doc["ts"] = draw(st.datetimes(timezones=st.just(UTC))).isoformat()
    elif how == "big":  # an integer field beyond 64 bits, or near them
        key = draw(st.sampled_from(sorted(k for k, v in doc.items() if type(v) is int)))
        doc[key] = draw(st.integers(2**62, 2**66))
    elif how == "replace":
        doc[key] = draw(json_values)
    elif how == "remove":
        del doc[key]
    data = json.dumps(doc).encode()
    if how == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if how == "flip":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    return data


topics = st.sampled_from(UPLINK).map(lambda c: topic("node-1", c)) | st.text(max_size=40)
payloads = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | mutated()


@settings(max_examples=1500, deadline=None)
@given(topics, payloads)
def test_any_delivery_is_refused_for_the_contracts_reason_or_stored_within_64_bits(where: str, payload: bytes) -> None:
    handler, metrics = ingest()
    handled = handler.handle(where, payload)  # never raises
    try:
        decode_message(where, payload)
    except PayloadError as exc:
        [line] = handled.lines
        assert line.startswith(f"dead_letter,reason={exc.reason.value} ")
        assert metrics.registry.get_sample_value("lockerfleet_messages_rejected_total", {"reason": exc.reason.value})
        return
    for line in handled.lines:
        assert -INT64 < int(line.rsplit(" ", 1)[1]) < INT64, line
        assert all(-INT64 <= int(v) < INT64 for v in _INTEGER_FIELD.findall(line)), line
