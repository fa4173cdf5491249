"""Properties of the whole monitor (rules and engine) under random inputs: no flapping, one notification per
episode transition, nothing announced twice across a restart, silences and maintenance honoured."""

import json
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.alerts import (
    AlertMonitor,
    DoorEdge,
    DoorOutcome,
    Liveness,
    NodeInfo,
    Notification,
    Silence,
    Transition,
    parse_rules,
)
from tests.controller.alerts.helpers import raised, sample

NODES = ("a", "b", "c", "d")


@dataclass(frozen=True)
class Event:
    dt: float
    node: str
    kind: str
    value: float


events = st.lists(
    st.builds(
        Event,
        st.sampled_from([1.0, 10.0, 30.0, 120.0, 400.0]),
        st.sampled_from(NODES),
        st.sampled_from(["telemetry", "telemetry", "will", "birth", "jam", "open", "intruder", "tick", "tick"]),
        st.floats(0, 100),
    ),
    max_size=80,
)


def feed(mon: AlertMonitor, event: Event, now: float) -> list[Notification]:
    node = event.node
    if event.kind == "telemetry":
        charging = event.value > 90
        return mon.on_telemetry(sample(now, node, soc=event.value, charging=charging, temp=event.value - 20), now)
    if event.kind in ("will", "birth"):
        return mon.on_liveness(Liveness(node, online=event.kind == "birth"), now)
    if event.kind == "jam":
        return mon.on_door_outcome(DoorOutcome(node, "A1", now, "jammed"), now)
    if event.kind in ("open", "intruder"):
        return mon.on_door_edge(
            DoorEdge(node, "A1", now, opened=event.value > 50, uncommanded=event.kind == "intruder"), now
        )
    return mon.tick(now)


def fresh() -> AlertMonitor:
    mon = AlertMonitor()
    for node in NODES:
        mon.set_node(NodeInfo(node, "s1"), 0)
    return mon


def run(program: list[Event], restart_at: int | None = None) -> list[Notification]:
    mon, now, out = fresh(), 0.0, []
    for i, event in enumerate(program):
        if i == restart_at:  # the process restarts: alert state from the store, rule windows start over
            mon = AlertMonitor.restore(mon.rules, json.loads(json.dumps(mon.dump())))
            for node in NODES:
                mon.set_node(NodeInfo(node, "s1", last_seen=now), now)
        now += event.dt
        out += feed(mon, event, now)
    return out


def check_episodes(notes: list[Notification]) -> None:
    keys = [n.delivery_key for n in notes]
    assert len(keys) == len(set(keys)), "a notification was announced twice"
    state: dict[str, tuple[int, bool]] = {}  # alert id -> (episode, firing)
    for note in notes:
        episode, firing = state.get(note.alert_id, (0, False))
        if note.transition is Transition.RAISED:
            assert not firing and note.episode > episode
            state[note.alert_id] = (note.episode, True)
        elif note.transition is Transition.RESOLVED:
            assert firing and note.episode == episode
            state[note.alert_id] = (episode, False)
        else:
            assert firing and note.episode == episode


@settings(max_examples=60, deadline=None)
@given(events)
def test_random_fleet_life_announces_each_transition_once_in_order(program: list[Event]) -> None:
    check_episodes(run(program))


@settings(max_examples=60, deadline=None)
@given(events, st.integers(0, 80))
def test_a_restart_anywhere_announces_nothing_twice(program: list[Event], restart_at: int) -> None:
    check_episodes(run(program, restart_at))


@settings(max_examples=60, deadline=None)
@given(st.floats(-5, 15), st.lists(st.tuples(st.floats(0, 0.999), st.sampled_from([10.0, 60.0, 200.0])), max_size=60))
def test_temperature_noise_narrower_than_the_clear_margin_never_flaps(
    centre: float, noise: list[tuple[float, float]]
) -> None:
    """Band 2…8 °C with a 1 °C clear margin: readings spread less than 1 °C make at most one transition."""
    mon = AlertMonitor(parse_rules("[defaults.thermal]\nmin_c = 2\nmax_c = 8\n"))
    mon.set_node(NodeInfo("n", "s"), 0)
    now, notes = 0.0, []
    for fraction, dt in noise:
        now += dt
        notes += mon.on_telemetry(sample(now, "n", temp=centre + fraction, power="shore"), now) + mon.tick(now)
    band = [n.transition for n in notes if n.rule == "temp_out_of_band"]
    assert band in ([], [Transition.RAISED])


@settings(max_examples=40, deadline=None)
@given(events)
def test_a_silence_over_everything_mutes_every_announcement(program: list[Event]) -> None:
    mon, now, notes = fresh(), 0.0, []
    mon.add_silence(Silence("all", "ops", "test", 0, 1e12, site_id="*"))
    mon.add_silence(Silence("fleet", "ops", "test", 0, 1e12, rule="open_breaker_tripped"))
    for event in program:
        now += event.dt
        notes += feed(mon, event, now)
    assert notes == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.sampled_from([30.0, 60.0, 600.0])), max_size=40))
def test_a_node_in_maintenance_never_raises_a_swap_alert(readings: list[tuple[float, float]]) -> None:
    mon = AlertMonitor()
    mon.set_node(NodeInfo("n", "s", maintenance=True), 0)
    now, notes = 0.0, []
    for soc, dt in readings:
        now += dt
        notes += mon.on_telemetry(sample(now, "n", soc=soc, cycles=5000), now) + mon.tick(now + 1)
    assert raised(notes, "battery_swap") == [] and raised(notes, "battery_replace") == []
