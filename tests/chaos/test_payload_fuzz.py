"""100,000 random and mutated payloads on every uplink channel of a running controller: no crash, each one counted.

Issue 10, item 4. A seeded mutator turns valid messages (tests/samples.py, one or more per uplink channel) into bad
ones: bit flips, truncation, wrong types, huge numbers, odd unicode, deep nesting, out-of-range instants, missing
and extra fields, an unknown schema version, oversized payloads, random bytes, valid payloads on the wrong channel or
another node's topic, and topics whose node level is outside the grammar. Valid messages with keys of their own are
interleaved, one after every twenty. Everything is published at QoS 1 to a real mosquitto (the broker acknowledges
each, so none is lost on the way) and delivered to the controller's two sessions.

The pure decoder (:func:`schemas.decode_message`) says beforehand how each payload must end: refused for a reason,
or valid. The controller must agree exactly: its rejected counter per reason equals the predicted count, each
refused payload is one ``dead_letter`` point of that reason in InfluxDB, valid ones are counted as ingested or as
duplicates, and together they add up to what was published. Every interleaved valid message is stored exactly once
by (node, boot id, seq), the controller still takes a valid message afterwards and ``/healthz`` answers 200.
"""

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

from controller.devstack.services import Mosquitto
from schemas import (
    MAX_PAYLOAD_BYTES,
    Channel,
    Direction,
    OtaState,
    PayloadError,
    decode_message,
    encode,
    topic,
)
from schemas.topics import ROOT
from tests import samples
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import disconnect, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(300)]

SEED = 20261202
FUZZED = 100_000
VALID_EVERY = 20
"""One valid message with a key of its own after every this many fuzzed ones."""
VALID_BOOT = 77
BATCH = 10_000
"""Messages published before waiting for the broker's acknowledgements."""
KEPT_BYTES = 128
"""The controller's --dead-letter-max-bytes here: every refused payload is kept, its first bytes are enough."""

BASES: dict[Channel, list[Callable[[str], BaseModel]]] = {
    Channel.STATUS: [samples.birth, samples.death],
    Channel.TELEMETRY: [samples.telemetry],
    Channel.EVENT: [
        samples.door_event,
        samples.ledger_event,
        samples.keypad_event,
        lambda n: samples.ota_event(n, OtaState.FAILED, "checksum_mismatch"),
    ],
    Channel.RESULT: [samples.open_result],
}
"""Valid messages of every uplink channel, by the node they come from."""

UNICODE = [
    "\u0000",
    "\ud800",
    "\u202eevil",
    "é" * 300,
    "\U0001d54f\U0001f6aa\U0001f513",  # double-struck X, door, unlocked padlock
    "a\nb",
    'q"uote',
    "back\\slash",
    "tag=val,x y",
    "\u200b",
    "ﷺ" * 100,
    "",
    " ",
]
"""Strings a careless parser or line-protocol encoder trips over (NUL, a lone surrogate, bidi, escapes, length)."""
INSTANTS = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00", "2262-04-12T00:00:00Z", "1677-09-21T00:12:43Z"]
"""Valid RFC 3339 instants outside what InfluxDB can store."""
BAD_NODE_LEVELS = ["bad node", "ünï", "x" * 65, "", ".dot", "-dash", "semi;colon"]
"""Topic levels mosquitto accepts that are no node id."""
JSON_VALUES: list[Any] = [None, True, 0, -1, 1.5, "text", [], {}, [1, "a"], {"k": "v"}, 2**64, -(2**70)]

COUNTERS = (
    ("lockerfleet_messages_rejected", "reason"),
    ("lockerfleet_messages_ingested", "kind"),
    ("lockerfleet_messages_duplicate", "kind"),
)
"""Where every message a controller takes ends up counted."""

Published = tuple[str, bytes]


class Mutator:
    """Seeded: the same seed gives the same 100,000 payloads."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes = [f"fz-{i}" for i in range(20)]
        self.ops: list[Callable[[Channel, str, bytes, dict[str, Any]], Published]] = [
            self.bit_flip,
            self.truncate,
            self.wrong_type,
            self.huge_number,
            self.unicode,
            self.deep_nesting,
            self.instant,
            self.drop_field,
            self.extra_field,
            self.schema_version,
            self.oversized,
            self.random_bytes,
            self.wrong_channel,
            self.wrong_node,
            self.bad_topic,
            self.raw_json,
        ]

    def next(self) -> tuple[str, Published]:
        """One fuzzed message: the name of the mutation and what to publish."""
        channel = self.rng.choice(list(BASES))
        node = self.rng.choice(self.nodes)
        message = self.rng.choice(BASES[channel])(node)
        valid = encode(message)
        op = self.rng.choice(self.ops)
        return op.__name__, op(channel, node, valid, json.loads(valid))

    # -- helpers -------------------------------------------------------------------------------------------------

    def _paths(self, doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        paths: list[tuple[Any, ...]] = [prefix] if prefix else []
        if isinstance(doc, dict):
            for k, v in doc.items():
                paths += self._paths(v, (*prefix, k))
        elif isinstance(doc, list):
            for i, v in enumerate(doc):
                paths += self._paths(v, (*prefix, i))
        return paths

    def _set(self, doc: dict[str, Any], value: Any, path: tuple[Any, ...] | None = None) -> dict[str, Any]:
        path = path or self.rng.choice(self._paths(doc))
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return doc

    @staticmethod
    def _dump(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    # -- mutations -----------------------------------------------------------------------------------------------

    def bit_flip(self, channel: Channel, node: str, valid: bytes, _doc: dict[str, Any]) -> Published:
        data = bytearray(valid)
        for _ in range(self.rng.randint(1, 8)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return topic(node, channel), bytes(data)

    def truncate(self, channel: Channel, node: str, valid: bytes, _doc: dict[str, Any]) -> Published:
        return topic(node, channel), valid[: self.rng.randrange(len(valid))]

    def wrong_type(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        return topic(node, channel), self._dump(self._set(doc, self.rng.choice(JSON_VALUES)))

    def huge_number(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        huge = self.rng.choice(["1e400", "-1e400", "9" * 400, "-" + "9" * 30, "1e-400", "18446744073709551616"])
        text = self._dump(self._set(doc, "__HUGE__")).decode().replace('"__HUGE__"', huge)
        return topic(node, channel), text.encode()

    def unicode(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        strings = [p for p in self._paths(doc) if isinstance(self._get(doc, p), str)]
        value = self.rng.choice(UNICODE) + self.rng.choice(["", "x", "A1"])
        self._set(doc, value, self.rng.choice(strings) if strings else None)
        return topic(node, channel), json.dumps(doc, ensure_ascii=self.rng.random() < 0.5).encode(
            "utf-8", "surrogatepass"
        )

    def deep_nesting(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        depth = self.rng.choice([64, 256, 1000, 5000])
        if self.rng.random() < 0.5:
            return topic(node, channel), b"[" * depth + b"]" * depth
        text = self._dump(self._set(doc, "__DEEP__")).decode().replace('"__DEEP__"', "[" * depth + "]" * depth)
        return topic(node, channel), text.encode()

    def instant(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        doc["ts"] = self.rng.choice(INSTANTS)
        return topic(node, channel), self._dump(doc)

    def drop_field(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        del doc[self.rng.choice(list(doc))]
        return topic(node, channel), self._dump(doc)

    def extra_field(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        doc[self.rng.choice(["extra", "__proto__", "Seq", "node_id "])] = self.rng.choice(JSON_VALUES)
        return topic(node, channel), self._dump(doc)

    def schema_version(self, channel: Channel, node: str, _valid: bytes, doc: dict[str, Any]) -> Published:
        doc["schema_version"] = self.rng.choice([0, 2, "1", 1.0, None, 99999999999999999999])
        return topic(node, channel), self._dump(doc)

    def oversized(self, channel: Channel, node: str, valid: bytes, _doc: dict[str, Any]) -> Published:
        return topic(node, channel), valid + b" " * (MAX_PAYLOAD_BYTES + self.rng.randrange(1, 48_000) - len(valid))

    def random_bytes(self, channel: Channel, node: str, _valid: bytes, _doc: dict[str, Any]) -> Published:
        return topic(node, channel), self.rng.randbytes(self.rng.choice([0, 1, 2, 8, 64, 512, 4096]))

    def wrong_channel(self, channel: Channel, node: str, valid: bytes, _doc: dict[str, Any]) -> Published:
        return topic(node, self.rng.choice([c for c in BASES if c is not channel])), valid

    def wrong_node(self, channel: Channel, node: str, valid: bytes, _doc: dict[str, Any]) -> Published:
        return topic(self.rng.choice([n for n in self.nodes if n != node]), channel), valid

    def bad_topic(self, channel: Channel, _node: str, valid: bytes, _doc: dict[str, Any]) -> Published:
        return f"{ROOT}/{self.rng.choice(BAD_NODE_LEVELS)}/{channel.value}", valid

    def raw_json(self, channel: Channel, node: str, _valid: bytes, _doc: dict[str, Any]) -> Published:
        return topic(node, channel), self._dump(self.rng.choice(JSON_VALUES))

    @staticmethod
    def _get(doc: Any, path: tuple[Any, ...]) -> Any:
        for part in path:
            doc = doc[part]
        return doc


def valid_message(i: int) -> tuple[Published, tuple[str, str, int, int] | None]:
    """The ``i``-th interleaved valid message and its (measurement, node, boot, seq); births have no point."""
    node = f"ok-{i % 40}"
    kind = i % 6
    base: BaseModel
    if kind == 0:
        base = samples.telemetry(node, seq=i, ts=samples.T0 + timedelta(milliseconds=i))
        channel, measurement = Channel.TELEMETRY, "telemetry"
    elif kind == 1:
        base, channel, measurement = samples.door_event(node, seq=i), Channel.EVENT, "event"
    elif kind == 2:
        base, channel, measurement = samples.ledger_event(node), Channel.EVENT, "ledger"
    elif kind == 3:
        base, channel, measurement = samples.keypad_event(node), Channel.EVENT, "keypad"
    elif kind == 4:
        base, channel, measurement = samples.open_result(node), Channel.RESULT, "command_result"
    else:
        birth = samples.birth(f"okb-{i}", boot_id=VALID_BOOT, seq=0)
        return (topic(birth.node_id, Channel.STATUS), encode(birth)), None
    message = base.model_copy(update={"boot_id": VALID_BOOT, "seq": i, "ts": samples.T0 + timedelta(milliseconds=i)})
    return (topic(node, channel), encode(message)), (measurement, node, VALID_BOOT, i)


def predicted(where: str, payload: bytes) -> str:
    """How the contract ends this message: a reject reason, or ``valid``."""
    try:
        decode_message(where, payload)
    except PayloadError as exc:
        return exc.reason.value
    return "valid"


def counter_by_label(controller: ControllerThread, name: str, label: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for family in controller.controller.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == f"{name}_total":
                counts[sample.labels[label]] += int(sample.value)
    return counts


def test_a_hundred_thousand_bad_payloads_are_each_counted_by_reason_and_the_valid_ones_among_them_stored_once(
    mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    assert set(BASES) == {c for c in Channel if c.direction is Direction.UP}, "a new uplink channel: fuzz it too"
    mutator = Mutator(SEED)
    messages: list[Published] = []
    mutations: Counter[str] = Counter()
    expected_points: list[tuple[str, str, int, int]] = []
    births: list[str] = []
    for i in range(FUZZED):
        name, fuzzed = mutator.next()
        mutations[name] += 1
        messages.append(fuzzed)
        if i % VALID_EVERY == VALID_EVERY - 1:
            valid, point = valid_message(i // VALID_EVERY)
            messages.append(valid)
            if point is None:
                births.append(valid[0].split("/")[2])
            else:
                expected_points.append(point)
    outcomes = Counter(predicted(where, payload) for where, payload in messages)

    controller = ControllerThread(
        mosquitto.url,
        influx.url,
        influx.db,
        tmp_path / "store.sqlite3",
        dead_letter_max_bytes=KEPT_BYTES,
        batch_max_age_s=0.05,
    ).start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer", protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(1000)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        started = time.monotonic()
        infos: list[mqtt.MQTTMessageInfo] = []
        for start in range(0, len(messages), BATCH):  # paho's packet ids wrap at 65,535: never that many in flight
            batch = [publisher.publish(where, payload, qos=1) for where, payload in messages[start : start + BATCH]]
            for info in batch:
                info.wait_for_publish(60)
            infos += batch
        published_s = time.monotonic() - started
        assert all(info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published() for info in infos)

        def handled() -> int:
            counted = (counter_by_label(controller, name, label) for name, label in COUNTERS)
            return sum(c.total() for c in counted)

        assert wait_until(lambda: handled() >= len(messages), 180, 0.5), (handled(), len(messages))
        handled_s = time.monotonic() - started

        # still ingesting: one more valid message is stored, and the controller is alive
        after = samples.telemetry("after-fuzz", seq=1)
        publisher.publish(topic("after-fuzz", Channel.TELEMETRY), encode(after), qos=1).wait_for_publish(10)
        after_query = "SELECT seq FROM telemetry WHERE node = 'after-fuzz'"
        assert wait_until(lambda: len(influx.query(after_query)) == 1, 30)
        assert controller.http.get("/healthz").status_code == 200

        registry = controller.controller.metrics.registry
        refused_lines = registry.get_sample_value("lockerfleet_influx_lines_refused_total")
        rejected = counter_by_label(controller, "lockerfleet_messages_rejected", "reason")
        ingested = counter_by_label(controller, "lockerfleet_messages_ingested", "kind")
        duplicates = counter_by_label(controller, "lockerfleet_messages_duplicate", "kind")
        assert wait_until(lambda: controller.controller.spool.lines_waiting == 0, 60)

        def dead_letters() -> Counter[str]:
            rows = influx.query("SELECT count(size_bytes) FROM dead_letter GROUP BY reason")
            return Counter({r["reason"]: int(r["count"]) for r in rows})

        assert wait_until(lambda: dead_letters().total() >= rejected.total(), 60), (dead_letters(), rejected)
        stored_dead = dead_letters()
        known = [b for b in births if controller.controller.fleet.get(b) is not None]
    finally:
        disconnect(publisher)
        controller.stop()

    valid_handled = ingested.total() - 1 + duplicates.total()  # less the one sent after the fuzz
    refused = {reason: n for reason, n in outcomes.items() if reason != "valid"}
    print(  # the counts for the report
        f"\nchaos payload fuzz: published={len(messages)} in {published_s:.1f} s, handled by {handled_s:.1f} s; "
        f"mutations={dict(sorted(mutations.items()))}\n  predicted={dict(sorted(outcomes.items()))}\n"
        f"  rejected={dict(sorted(rejected.items()))} dead_letter_points={dict(sorted(stored_dead.items()))}\n"
        f"  ingested={dict(sorted(ingested.items()))} duplicates={dict(sorted(duplicates.items()))} "
        f"influx_lines_refused={refused_lines:g}"
    )
    assert dict(rejected) == refused  # each refused payload counted once, for the reason the contract gives
    assert dict(stored_dead) == refused  # and kept once as a dead letter of that reason
    assert valid_handled == outcomes["valid"]
    assert rejected.total() + valid_handled == len(messages)
    assert refused_lines == 0  # what the contract takes, InfluxDB stores
    for measurement in ("telemetry", "event", "ledger", "keypad", "command_result"):
        rows = influx.query(f"SELECT boot_id, seq FROM {measurement} WHERE boot_id = {VALID_BOOT} GROUP BY node")  # noqa: S608
        stored = Counter((measurement, r["node"], r["boot_id"], r["seq"]) for r in rows if r["node"].startswith("ok-"))
        wanted = {p for p in expected_points if p[0] == measurement}
        assert set(stored) == wanted, (measurement, len(stored), len(wanted))
        assert max(stored.values()) == 1
    assert len(known) == len(births)  # every valid birth made its node known
