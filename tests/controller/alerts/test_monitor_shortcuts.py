"""The monitor's per-sample shortcuts change no verdict: it announces and stores exactly what a monitor without them
does (every reading recorded again, every compartment evaluated, every clear checked against the engine)."""

import json
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.alerts import (
    AlertMonitor,
    CompartmentReading,
    DoorEdge,
    DoorOutcome,
    KeypadLockout,
    Liveness,
    NodeInfo,
    Notification,
    Silence,
    TelemetrySample,
    parse_rules,
)
from controller.alerts.inputs import OpenResult
from controller.alerts.monitor import NodeState
from controller.alerts.rules import battery, mechanical, operations, security, thermal
from controller.alerts.rules.base import Emitter
from tests.controller.alerts.helpers import sample

RULES = """
[defaults.mechanical]
jam_raise_count = 2
door_open_max_s = 30
stuck_unlocked_s = 20
latency_baseline_n = 3
latency_recent_n = 3
lock_fault_quiet_s = 120
[defaults.security]
uncommanded_quiet_s = 60
[defaults.operations]
outbox_quiet_s = 60
[sites.cold.thermal]
min_c = 2
max_c = 8
[sites.cold.mechanical]
door_open_max_s = 60
"""

NODES = ("a", "b", "c", "d")


def reading(compartment: str, door_open: bool = False, locked: bool = True) -> CompartmentReading:
    return CompartmentReading(compartment, door_open, locked)


READINGS = (
    (),
    (reading("A1"), reading("A2")),
    (reading("A1", door_open=True), reading("A2")),
    (reading("A1", locked=False), reading("A2")),
    (reading("A1"), reading("A2", door_open=True, locked=False)),
    (reading("A1"), reading("A1", locked=False)),  # a compartment read twice: recording again moves its time
    (reading("A1", door_open=True), reading("A1")),
    (reading("A1"), reading("A1", door_open=True)),
)


class Reference(AlertMonitor):
    """The monitor without its shortcuts."""

    def on_telemetry(self, sample: TelemetrySample, now: float) -> list[Notification]:
        node = self._ingest(sample, now)
        operations.record_sample(node.ops, sample, now)
        for r in sample.compartments:
            mechanical.record_reading(node.compartment(r.compartment), r, now)
        return self._evaluate(node, now)

    def _evaluate(
        self, node: NodeState, now: float, is_offline: bool | None = None, *, timer: bool = False
    ) -> list[Notification]:
        rules = self.rules.for_site(node.site_id)
        if is_offline is None:
            is_offline = operations.offline(node.ops, rules.operations, now)
        hold_offline = node.site_id in self._sites_down or (is_offline and not timer)
        emit = Emitter(
            self.engine.is_open, node.node_id, node.site_id, self._quiet_for(rules, node, is_offline, hold_offline)
        )
        operations.evaluate(node.ops, rules.operations, now, emit, is_offline)
        if not is_offline:
            battery.evaluate(node.battery, rules.battery, now, emit)
            thermal.evaluate(node.thermal, rules.thermal, now, emit, self._peers.get(node.site_id or ""))
            security.evaluate(node.security, rules.security, now, emit)
            for compartment, state in node.compartments.items():
                mechanical.evaluate(compartment, state, rules.mechanical, now, emit)
        return self.engine.apply(now, emit.observations)


@dataclass(frozen=True)
class Event:
    dt: float
    node: str
    kind: str
    value: float
    readings: int


events = st.lists(
    st.builds(
        Event,
        st.sampled_from([0.0, 0.0001, 1.0, 5.0, 25.0, 70.0, 400.0]),
        st.sampled_from(NODES),
        st.sampled_from(
            ["telemetry"] * 6
            + ["jam", "fault", "latency", "edge", "intruder", "keypad", "will", "birth", "site", "maintenance"]
            + ["silence", "tick", "tick"]
        ),
        st.floats(0, 100),
        st.integers(0, len(READINGS) - 1),
    ),
    max_size=120,
)


def feed(mon: AlertMonitor, e: Event, now: float) -> list[Notification]:
    node, v = e.node, e.value
    compartment = "A1" if v < 50 else "A2"
    notes: list[Notification] = []
    match e.kind:
        case "telemetry":
            temp = v / 2 - 10 + (30 if node == "d" else 0)
            skew_s = 200.0 if v > 90 else 0.0
            cycles = 2000 if v < 3 else 100
            dropped, readings = int(v) // 30, READINGS[e.readings]
            telemetry = sample(
                now,
                node,
                soc=v,
                charging=v > 95,
                temp=temp,
                dropped=dropped,
                skew_s=skew_s,
                cycles=cycles,
                compartments=readings,
            )
            notes = mon.on_telemetry(telemetry, now)
        case "jam" | "fault":
            result: OpenResult = "jammed" if e.kind == "jam" else "failed"
            notes = mon.on_door_outcome(DoorOutcome(node, compartment, now, result), now)
        case "latency":
            notes = mon.on_door_outcome(DoorOutcome(node, compartment, now, "opened", int(v * 10)), now)
        case "edge" | "intruder":
            edge = DoorEdge(node, compartment, now, opened=e.readings % 2 == 0, uncommanded=e.kind == "intruder")
            notes = mon.on_door_edge(edge, now)
        case "keypad":
            notes = mon.on_keypad_lockout(KeypadLockout(node, now, now + v, 5), now)
        case "will" | "birth":
            notes = mon.on_liveness(Liveness(node, online=e.kind == "birth"), now)
        case "site" | "maintenance":
            site = "cold" if v < 50 else "s1"
            mon.set_node(NodeInfo(node, site, maintenance=e.kind == "maintenance" and v > 30), now)
        case "silence":
            mon.add_silence(Silence(f"s{e.readings}", "ops", "test", now, now + 1 + v * 5, node_id=node))
        case _:
            notes = mon.tick(now)
    return notes


@settings(max_examples=300, deadline=None)
@given(events)
def test_the_shortcuts_change_no_announcement_and_no_stored_state(program: list[Event]) -> None:
    rules = parse_rules(RULES)
    fast, slow = AlertMonitor(rules), Reference(rules)
    for mon in (fast, slow):
        for node in NODES:
            mon.set_node(NodeInfo(node, "s1"), 0.0)
    now = 0.0
    for e in program:
        now += e.dt
        assert feed(fast, e, now) == feed(slow, e, now)
    assert json.dumps(fast.dump(), sort_keys=True) == json.dumps(slow.dump(), sort_keys=True)
    assert fast.forecasts(now) == slow.forecasts(now)
