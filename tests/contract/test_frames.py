"""The generated telemetry frame decodes what the model decodes, to the same values, and refuses the rest."""

import json
import re
from datetime import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import field_validator

from schemas import Channel, PayloadError, Telemetry, decode, encode, framegen
from schemas.envelope import NodeEnvelope
from schemas.framegen import FRAMES_FILE, FrameError, render
from schemas.frames import TelemetryFrame
from schemas.ingest_codec import as_model, decode_ingested, decode_telemetry
from schemas.patterns import Pattern

_FRAME = msgspec.json.Decoder(TelemetryFrame)

VALID: dict[str, Any] = {
    "schema_version": 1,
    "node_id": "locker-7",
    "boot_id": 3,
    "seq": 41,
    "ts": "2026-12-02T12:00:00.123456Z",
    "replayed": False,
    "battery": {"soc_pct": 55.5, "voltage_v": 12.4, "charging": True, "power_source": "battery", "cycle_count": 9},
    "enclosure_temp_c": 21.25,
    "compartments": [
        {"id": "A1", "door": "closed", "lock": "locked"},
        {"id": "B2", "door": "open", "lock": "unlocked"},
    ],
    "outbox_dropped": 0,
}

# Values each kind of field may take: valid ones, edges, wrong types, the lax inputs pydantic takes and msgspec
# does not, and the spellings where the two parsers could disagree.
ODD: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, "1", "", "x", [], {}, 2**63, 2**63 - 1, 2**64, -(2**63), 1e308]
INSTANTS = [
    "2026-12-02T12:00:00Z",
    "2026-12-02T12:00:00.1Z",
    "2026-12-02T12:00:00.123456Z",
    "2026-12-02T12:00:00.1234567Z",
    "2026-12-02T12:00:00.123456789+01:00",
    "2026-12-02T12:00:00.9999995Z",
    "2026-12-02T12:00:00+14:00",
    "2026-12-02T12:00:00-00:00",
    "2026-12-02T12:00:00+0100",
    "2026-12-02 12:00:00Z",
    "2026-12-02t12:00:00z",
    "2026-12-02T12:00Z",
    "2026-12-02T12:00:00,5Z",
    "2026-12-02T23:59:60Z",
    "2026-02-30T12:00:00Z",
    "2026-12-02T12:00:00",
    "2026-12-02",
    "1677-09-21T23:59:59Z",
    "1677-09-22T00:00:00Z",
    "2262-04-10T23:59:59.999999Z",
    "2262-04-11T00:00:00Z",
    "0001-01-01T00:00:00Z",
    1764676800,
    "1764676800",
]
IDS = ["A1", "a", "A" * 16, "A" * 17, "A1\n", "A 1", "_A", "A-_", "Ä1", "", "A1\u0000", "9" * 64]
NODE_IDS = ["locker-7", "n", "n." * 32, "n" * 64, "n" * 65, "locker-7\n", ".x", "a/b", "a+b", "ß"]
ENUMS = ["open", "closed", "locked", "unlocked", "shore", "battery", "portable", "OPEN", " open", "opened"]
NUMBERS = [0, 0.0, -0.0, 100, 100.0, 100.0000001, -60, 125, 125.5, 12.4, 1e-320, 999_999, 1_000_000, 0.1 + 0.2]


def _value(draw: st.DrawFn, choices: list[Any], valid: Any) -> Any:
    return draw(st.sampled_from([valid, valid, *choices, *ODD]))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A telemetry document with some fields changed, removed or added."""
    doc: dict[str, Any] = json.loads(json.dumps(VALID))
    for key in list(doc):
        if draw(st.integers(0, 9)) == 0:
            del doc[key]
            continue
        if draw(st.booleans()):
            continue
        if key == "ts":
            doc[key] = _value(draw, INSTANTS, doc[key])
        elif key == "node_id":
            doc[key] = _value(draw, NODE_IDS, doc[key])
        elif key == "compartments":
            items: list[dict[str, Any]] = draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "id": st.sampled_from(IDS),
                            "door": st.sampled_from(ENUMS),
                            "lock": st.sampled_from(ENUMS),
                        }
                    ),
                    max_size=4,
                )
            )
            odd_item: bool = draw(st.booleans())
            if items and odd_item:  # one item gets an odd value or an unknown key
                items[0][draw(st.sampled_from(["id", "door", "lock", "extra"]))] = draw(st.sampled_from(ODD))
            doc[key] = _value(draw, [items], items)
        elif key == "battery":
            battery = dict(doc[key])
            field = draw(st.sampled_from([*battery, "extra"]))
            battery[field] = draw(st.sampled_from([*NUMBERS, *ENUMS, *ODD]))
            doc[key] = _value(draw, [battery], battery)
        else:
            doc[key] = _value(draw, NUMBERS, doc[key])
    if draw(st.integers(0, 9)) == 0:
        doc["unknown"] = 1
    return doc


def _same(frame: TelemetryFrame, model: Telemetry) -> None:
    got = msgspec.structs.asdict(frame)
    want = {name: getattr(model, name) for name in type(model).model_fields}
    assert got.keys() == want.keys()
    for name, value in want.items():
        if name == "battery":
            assert msgspec.structs.asdict(got[name]) == value.model_dump()
            assert [type(v) for v in msgspec.structs.asdict(got[name]).values()] == [
                type(v) for v in value.model_dump().values()
            ]
        elif name == "compartments":
            assert [msgspec.structs.asdict(c) for c in got[name]] == [c.model_dump() for c in value]
        elif isinstance(value, datetime):
            assert got[name] == value and got[name].utcoffset() == value.utcoffset()
            assert got[name].microsecond == value.microsecond
        else:
            assert got[name] == value and type(got[name]) is type(value), name


def _model(payload: bytes) -> Telemetry | PayloadError:
    try:
        return decode(Channel.TELEMETRY, payload)
    except PayloadError as exc:
        return exc


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_what_the_frame_accepts_the_model_accepts_with_the_same_values(doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()
    model = _model(payload)
    try:
        frame = _FRAME.decode(payload)
    except msgspec.DecodeError:
        return  # refused: the ingest asks the model (next test)
    assert isinstance(model, Telemetry), f"frame accepted what the model refuses: {model}"
    if _sub_microsecond(doc.get("ts")):  # msgspec rounds it; the ingest routes such payloads to the model
        _same(decode_telemetry(payload), model)
    else:
        _same(frame, model)


def _sub_microsecond(instant: object) -> bool:
    fraction = re.search(r"\.([0-9]+)", instant) if isinstance(instant, str) else None
    return fraction is not None and len(fraction.group(1)) > 6


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_ingest_decoder_answers_as_the_model(doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()
    model = _model(payload)
    if isinstance(model, PayloadError):
        with pytest.raises(PayloadError) as raised:
            decode_telemetry(payload)
        assert (raised.value.reason, raised.value.detail) == (model.reason, model.detail)
    else:
        _same(decode_telemetry(payload), model)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"a":1}',
        json.dumps(VALID).encode() + b"x",
        json.dumps(VALID).encode().replace(b'"seq": 41', b'"seq": 41, "seq": 42'),
        json.dumps(VALID).encode().replace(b"locker-7", b"locker\\u002d7"),
        json.dumps(VALID).encode().replace(b".123456Z", b".123456\\u0037Z"),
        json.dumps(VALID).encode().replace(b".123456Z", b".1234565Z"),
        json.dumps(VALID).encode() + b" " * 20_000,
        b"\xff\xfe",
    ],
)
def test_raw_bytes_are_answered_as_the_model_answers(payload: bytes) -> None:
    model = _model(payload)
    if isinstance(model, PayloadError):
        with pytest.raises(PayloadError) as raised:
            decode_telemetry(payload)
        assert raised.value.reason == model.reason
    else:
        _same(decode_telemetry(payload), model)


def test_a_sub_microsecond_instant_is_truncated_as_the_model_does() -> None:
    payload = json.dumps({**VALID, "ts": "2026-12-02T12:00:00.9999999Z"}).encode()
    assert decode_telemetry(payload).ts.microsecond == 999_999
    assert _FRAME.decode(payload).ts.second == 1  # what msgspec alone would have stored


def test_ingested_telemetry_is_a_frame_and_the_topic_is_checked() -> None:
    payload = json.dumps(VALID).encode()
    where, message = decode_ingested("lockers/v1/locker-7/telemetry", payload)
    assert isinstance(message, TelemetryFrame) and where.node_id == "locker-7" and message.seq == 41
    with pytest.raises(PayloadError) as raised:
        decode_ingested("lockers/v1/locker-8/telemetry", payload)
    assert raised.value.reason.value == "wrong_node"


def test_the_committed_frames_are_what_the_models_generate() -> None:
    assert FRAMES_FILE.read_text() == render(), "run `python -m schemas.export`"


def test_a_model_feature_the_generator_does_not_know_fails_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    class Checked(NodeEnvelope):
        """A model with a validator of its own."""

        level: int

        @field_validator("level")
        @classmethod
        def _odd(cls, value: int) -> int:
            return value

    monkeypatch.setattr(framegen, "ROOTS", (Checked,))
    with pytest.raises(FrameError, match="_odd"):
        render()


def test_a_pattern_ends_only_at_the_end_of_the_text_and_remembers_matches() -> None:
    pattern = Pattern(r"^[a-z]{1,3}$")
    pattern.check("abc")
    assert "abc" in pattern.matched
    for bad in ("abc\n", "abcd", "", "ab1"):
        with pytest.raises(ValueError, match="does not match"):
            pattern.check(bad)
    assert pattern.matched == {"abc"}


def test_a_frame_turns_back_into_its_model_for_answers_that_carry_the_model() -> None:
    model = decode(Channel.TELEMETRY, json.dumps({**VALID, "ts": "2026-12-02T12:00:00.5+02:00"}).encode())
    assert as_model(decode_telemetry(encode(model))) == model
    assert as_model(model) is model
