"""Mechanical and security rules: jams, doors held open, lock faults, switch wear, intruders, keypad, breaker."""

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from controller.alerts import (
    AlertMonitor,
    BreakerState,
    CompartmentReading,
    DoorEdge,
    DoorOutcome,
    KeypadLockout,
    Notification,
    Severity,
    parse_rules,
)
from controller.alerts.rules import mechanical
from controller.alerts.rules.base import Emitter
from tests.controller.alerts.helpers import monitor, raised, resolved, sample


def alive(mon: AlertMonitor, t: float, **readings: tuple[bool, bool]) -> list[Notification]:
    """A telemetry sample at ``t`` (compartment=(door_open, locked)), then a tick."""
    comps = tuple(CompartmentReading(c, door, lock) for c, (door, lock) in readings.items())
    return mon.on_telemetry(sample(t, power="shore", compartments=comps), t) + mon.tick(t + 1)


def test_repeated_jams_raise_once_with_their_count_and_resolve_after_a_quiet_window() -> None:
    mon = monitor()
    notes: list[Notification] = []
    for t in (0, 100, 200, 300):
        notes += mon.on_door_outcome(DoorOutcome("n1", "A1", t, "jammed"), t)
    notes += mon.on_door_outcome(DoorOutcome("n1", "B2", 310, "jammed"), 310)  # one jam elsewhere: nothing
    assert raised(notes, "compartment_jammed") == ["compartment_jammed:n1:A1"]
    assert mon.engine.get("compartment_jammed:n1:A1").count == 4  # type: ignore[union-attr]
    notes = [n for t in range(330, 4000, 30) for n in alive(mon, t)]
    assert resolved(notes, "compartment_jammed") == ["compartment_jammed:n1:A1"]
    assert raised(notes, "compartment_jammed") == []


def test_a_door_held_open_raises_on_the_timer_and_closing_it_resolves() -> None:
    mon = monitor()
    notes = mon.on_door_edge(DoorEdge("n1", "A1", 0, opened=True), 0)
    notes += [n for t in range(30, 330, 30) for n in alive(mon, t, A1=(True, True))]
    assert raised(notes) == ["door_held_open:n1:A1"]
    notes = mon.on_door_edge(DoorEdge("n1", "A1", 340, opened=False), 340)
    assert resolved(notes) == ["door_held_open:n1:A1"]


def test_telemetry_catches_an_open_door_whose_event_was_lost() -> None:
    mon = monitor()
    notes = [n for t in range(0, 400, 30) for n in alive(mon, t, A1=(True, True))]
    assert raised(notes) == ["door_held_open:n1:A1"]
    assert resolved(alive(mon, 420, A1=(False, True))) == ["door_held_open:n1:A1"]


def test_a_failed_open_is_a_lock_fault_until_an_open_succeeds() -> None:
    mon = monitor()
    notes = mon.on_door_outcome(DoorOutcome("n1", "A1", 0, "failed"), 0)
    assert raised(notes) == ["lock_fault:n1:A1"]
    notes = mon.on_door_outcome(DoorOutcome("n1", "A1", 50, "opened", 120), 50)
    assert resolved(notes) == ["lock_fault:n1:A1"]


def test_a_lock_reading_unlocked_for_a_minute_is_a_stuck_relay() -> None:
    mon = monitor()
    notes = [n for t in range(0, 120, 30) for n in alive(mon, t, A1=(False, False))]
    assert raised(notes) == ["lock_fault:n1:A1"] and "stuck" in notes[0].summary
    assert resolved(alive(mon, 130, A1=(False, True))) == ["lock_fault:n1:A1"]


def test_door_switch_latency_creeping_up_raises_wear_and_a_new_switch_resolves_it() -> None:
    mon = monitor()
    notes: list[Notification] = []
    t = 0.0
    for latency in [100] * 20 + [130] * 10 + [220] * 10:  # baseline, normal spread, then wear
        t += 60
        notes += alive(mon, t) + mon.on_door_outcome(DoorOutcome("n1", "A1", t, "opened", latency), t)
    assert raised(notes) == ["door_switch_wear:n1:A1"] and notes[0].severity is Severity.INFO
    for _ in range(10):
        t += 60
        notes += mon.on_door_outcome(DoorOutcome("n1", "A1", t, "opened", 105), t)
    assert resolved(notes) == ["door_switch_wear:n1:A1"]


def test_an_uncommanded_open_raises_at_once_counts_repeats_and_resolves_when_quiet() -> None:
    mon = monitor()
    notes = mon.on_door_edge(DoorEdge("n1", "A1", 0, opened=True, uncommanded=False), 0)
    assert notes == []  # commanded: fine
    notes = mon.on_door_edge(DoorEdge("n1", "A2", 5, opened=True, uncommanded=True), 5)
    assert raised(notes) == ["uncommanded_open:n1:A2"] and notes[0].severity is Severity.CRITICAL
    notes = mon.on_door_edge(DoorEdge("n1", "A2", 60, opened=True, uncommanded=True), 60)
    assert notes == [] and mon.engine.get("uncommanded_open:n1:A2").count == 2  # type: ignore[union-attr]
    notes = [n for t in range(90, 1000, 30) for n in alive(mon, t)]
    assert resolved(notes) == ["uncommanded_open:n1:A2"]


def test_a_keypad_lockout_lasts_until_its_end() -> None:
    mon = monitor()
    notes = mon.on_keypad_lockout(KeypadLockout("n1", 0, locked_until=900, wrong_attempts=10), 0)
    assert raised(notes) == ["keypad_lockout:n1"] and "10 wrong codes" in notes[0].summary
    notes = [n for t in range(30, 960, 30) for n in alive(mon, t)]
    assert resolved(notes) == ["keypad_lockout:n1"] and notes[0].at == 900


def test_the_fleet_breaker_is_one_fleet_alert() -> None:
    mon = monitor()
    notes = mon.set_breaker(BreakerState(tripped=True, detail="40 % of opens jammed"), 0)
    assert raised(notes) == ["open_breaker_tripped:*"] and notes[0].node_id is None and notes[0].site_id is None
    assert mon.tick(10) == []
    assert resolved(mon.set_breaker(BreakerState(tripped=False), 20)) == ["open_breaker_tripped:*"]


def test_a_breaker_tripped_until_its_limit_refills_resolves_on_the_timer() -> None:
    mon = monitor()
    assert raised(mon.set_breaker(BreakerState(tripped=True, until=30), 0)) == ["open_breaker_tripped:*"]
    assert mon.tick(29) == []
    assert raised(mon.set_breaker(BreakerState(tripped=True, until=60), 29)) == []  # refused again: same episode
    assert mon.tick(59) == []
    assert resolved(mon.tick(60)) == ["open_breaker_tripped:*"]


def test_a_disabled_rule_never_raises() -> None:
    mon = monitor(parse_rules('[defaults.suppression]\ndisabled = ["uncommanded_open"]\n'))
    assert mon.on_door_edge(DoorEdge("n1", "A2", 5, opened=True, uncommanded=True), 5) == []


@given(
    jams=st.lists(st.floats(0, 5000), max_size=5),
    open_since=st.none() | st.floats(0, 5000),
    unlocked_since=st.none() | st.floats(0, 5000),
    fault_at=st.none() | st.floats(0, 5000),
    baseline_ms=st.none() | st.floats(1, 500),
    recent_ms=st.lists(st.floats(1, 2000), max_size=12),
    now=st.floats(0, 10_000),
)
def test_a_quiet_compartment_has_nothing_to_raise(
    jams: list[float],
    open_since: float | None,
    unlocked_since: float | None,
    fault_at: float | None,
    baseline_ms: float | None,
    recent_ms: list[float],
    now: float,
) -> None:
    """What lets the monitor skip a compartment of a node with no open alert: ``quiet`` implies no verdict at all."""
    state = mechanical.CompartmentState(
        jams=deque(sorted(jams)),
        open_since=open_since,
        unlocked_since=unlocked_since,
        fault_at=fault_at,
        baseline_ms=baseline_ms,
        recent_ms=deque(recent_ms),
    )
    params = parse_rules("").defaults.mechanical
    quiet = mechanical.quiet(state, params)
    emit = Emitter(None, "n1", None)
    mechanical.evaluate("A1", state, params, now, emit)
    if quiet:
        assert emit.observations == []
