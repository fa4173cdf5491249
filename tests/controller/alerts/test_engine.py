"""The alert state machine: lifecycle, hysteresis, one notification per episode transition, restarts, silences."""

import json
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.alerts.engine import AlertEngine, AlertNotOpenError, UnknownAlertError, UnknownSilenceError
from controller.alerts.model import AlertState, Notification, Observation, Severity, Silence, Transition


def up(node: str = "n1", *, sev: Severity = Severity.WARNING, for_s: float = 0, keep: float = 0) -> Observation:
    return Observation("temp_high", True, node_id=node, site_id="s1", severity=sev, for_s=for_s, keep_firing_for_s=keep)


def down(node: str = "n1") -> Observation:
    return Observation("temp_high", False, node_id=node, site_id="s1")


def kinds(notes: list[Notification]) -> list[tuple[str, int, Transition]]:
    return [(n.alert_id, n.episode, n.transition) for n in notes]


def test_pending_fires_after_for_and_resolves_after_keep_firing_for() -> None:
    engine = AlertEngine()
    assert engine.apply(0, [up(for_s=60, keep=30)]) == []
    assert engine.get("temp_high:n1").state is AlertState.PENDING  # type: ignore[union-attr]
    assert engine.apply(59, [up(for_s=60, keep=30)]) == []
    assert kinds(engine.apply(60, [up(for_s=60, keep=30)])) == [("temp_high:n1", 1, Transition.RAISED)]
    assert engine.apply(61, [up(for_s=60, keep=30)]) == []  # still firing: nothing new
    assert engine.apply(100, [down()]) == []  # clear starts the keep-firing clock
    assert engine.apply(120, [up(for_s=60, keep=30)]) == []  # raised again inside: clock reset, count grows
    assert engine.get("temp_high:n1").count == 2  # type: ignore[union-attr]
    assert engine.apply(140, [down()]) == []
    resolved = engine.apply(170, [down()])
    assert kinds(resolved) == [("temp_high:n1", 1, Transition.RESOLVED)]
    assert resolved[0].delivery_key == "temp_high:n1#1:resolved"
    assert engine.get("temp_high:n1").state is AlertState.RESOLVED  # type: ignore[union-attr]
    assert engine.apply(171, [down()]) == []


def test_pending_that_clears_is_never_announced_and_the_next_episode_counts_on() -> None:
    engine = AlertEngine()
    engine.apply(0, [up(for_s=60)])
    assert engine.apply(10, [down()]) == []
    assert engine.get("temp_high:n1").state is AlertState.INACTIVE  # type: ignore[union-attr]
    assert kinds(engine.apply(20, [up()])) == [("temp_high:n1", 2, Transition.RAISED)]


def test_escalation_is_announced_once_and_a_drop_is_silent() -> None:
    engine = AlertEngine()
    engine.apply(0, [up()])
    assert kinds(engine.apply(1, [up(sev=Severity.CRITICAL)])) == [("temp_high:n1", 1, Transition.ESCALATED)]
    assert engine.apply(2, [up(sev=Severity.WARNING)]) == []
    assert engine.apply(3, [up(sev=Severity.CRITICAL)]) == []  # critical was announced already


def test_occurrences_are_counted_not_re_raised() -> None:
    engine = AlertEngine()
    obs = Observation("jammed", True, node_id="n1", compartment="A1", occurrences=3)
    assert kinds(engine.apply(0, [obs])) == [("jammed:n1:A1", 1, Transition.RAISED)]
    assert engine.apply(1, [obs]) == []
    assert engine.get("jammed:n1:A1").count == 6  # type: ignore[union-attr]


def test_acknowledgement_is_once_per_episode_and_refused_when_closed() -> None:
    engine = AlertEngine()
    engine.apply(0, [up()])
    note = engine.acknowledge("temp_high:n1", "ops@x", 5)
    assert note is not None and note.transition is Transition.ACKNOWLEDGED and note.acked_by == "ops@x"
    assert engine.acknowledge("temp_high:n1", "other", 6) is None
    engine.apply(7, [down()])
    with pytest.raises(AlertNotOpenError):
        engine.acknowledge("temp_high:n1", "ops@x", 8)
    with pytest.raises(UnknownAlertError):
        engine.acknowledge("nope:n1", "ops@x", 8)
    engine.apply(9, [up()])
    assert engine.get("temp_high:n1").acked_by is None  # type: ignore[union-attr]  # a new episode is unacknowledged


def test_silence_mutes_the_raise_until_it_ends_then_announces_once() -> None:
    engine = AlertEngine()
    engine.add_silence(Silence("s1", "ops", "swap planned", 0, 100, site_id="s*"))
    assert engine.apply(10, [up()]) == []
    assert engine.silenced("temp_high:n1", 10)
    assert engine.sweep(50) == []
    assert kinds(engine.sweep(100)) == [("temp_high:n1", 1, Transition.RAISED)]
    assert engine.sweep(101) == []


def test_expiring_a_silence_announces_what_it_held_and_unsilenced_alerts_are_untouched() -> None:
    engine = AlertEngine()
    engine.add_silence(Silence("s1", "ops", "", 0, 1000, node_id="n1"))
    notes = engine.apply(10, [up("n1"), up("n2")])
    assert kinds(notes) == [("temp_high:n2", 1, Transition.RAISED)]
    assert kinds(engine.expire_silence("s1", 20)) == [("temp_high:n1", 1, Transition.RAISED)]
    assert engine.silences()[0].ends_at == 20
    with pytest.raises(UnknownSilenceError):
        engine.expire_silence("s9", 20)


def test_a_silence_needs_a_matcher_and_an_end_after_its_start() -> None:
    with pytest.raises(ValueError, match="at least one matcher"):
        Silence("s", "ops", "", 0, 10)
    with pytest.raises(ValueError, match="ends_at"):
        Silence("s", "ops", "", 10, 10, rule="x")


def test_a_silenced_episode_that_resolves_says_nothing_at_all() -> None:
    engine = AlertEngine()
    engine.add_silence(Silence("s1", "ops", "", 0, 1000, rule="temp_*"))
    assert engine.apply(1, [up()]) == [] and engine.apply(2, [down()]) == []


def test_prune_forgets_closed_alerts_and_ended_silences() -> None:
    engine = AlertEngine()
    engine.add_silence(Silence("s1", "ops", "", 0, 5, rule="x"))
    engine.apply(0, [up("n1"), up("n2")])
    engine.apply(1, [down("n1")])
    assert engine.prune(10) == 2
    assert [r.id for r in engine.records()] == ["temp_high:n2"] and engine.silences() == []


def test_load_refuses_an_unknown_state_version() -> None:
    with pytest.raises(Exception, match="version"):
        AlertEngine.load({"version": 99, "records": [], "silences": []})


# -- properties --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    dt: float
    node: str
    action: str  # raise | clear | tick | ack
    severity: Severity
    for_s: float
    keep: float


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from([0.0, 1.0, 5.0, 30.0, 61.0]),
        st.sampled_from(["n1", "n2"]),
        st.sampled_from(["raise", "clear", "tick", "ack"]),
        st.sampled_from(list(Severity)),
        st.sampled_from([0.0, 10.0, 60.0]),
        st.sampled_from([0.0, 30.0]),
    ),
    max_size=60,
)


def run(engine: AlertEngine, now: float, step: Step) -> list[Notification]:
    if step.action == "raise":
        return engine.apply(now, [up(step.node, sev=step.severity, for_s=step.for_s, keep=step.keep)])
    if step.action == "clear":
        return engine.apply(now, [down(step.node)])
    if step.action == "ack":
        try:
            note = engine.acknowledge(f"temp_high:{step.node}", "ops", now)
        except (UnknownAlertError, AlertNotOpenError):
            return []
        return [] if note is None else [note]
    return engine.sweep(now)


def play(program: list[Step], restart_at: int | None = None) -> list[Notification]:
    engine, now, out = AlertEngine(), 0.0, []
    for i, step in enumerate(program):
        if i == restart_at:  # the store round-trips the state through JSON; the process starts over
            engine = AlertEngine.load(json.loads(json.dumps(engine.dump())))
        now += step.dt
        out += run(engine, now, step)
    return out


@given(steps)
def test_each_episode_is_raised_once_resolved_once_and_resolved_only_after_its_raise(program: list[Step]) -> None:
    notes = play(program)
    keys = [n.delivery_key for n in notes]
    assert len(keys) == len(set(keys))
    seen: dict[tuple[str, int], list[Transition]] = {}
    for note in notes:
        seen.setdefault((note.alert_id, note.episode), []).append(note.transition)
    for transitions in seen.values():
        assert transitions[0] is Transition.RAISED
        assert Counter(transitions)[Transition.RAISED] == 1
        if Transition.RESOLVED in transitions:
            assert transitions[-1] is Transition.RESOLVED and transitions.count(Transition.RESOLVED) == 1
    for node in ("n1", "n2"):  # episodes of one alert never overlap and grow
        episodes = [n.episode for n in notes if n.alert_id == f"temp_high:{node}"]
        assert episodes == sorted(episodes)


@given(steps, st.integers(0, 60))
def test_a_restart_anywhere_announces_exactly_what_an_uninterrupted_run_announces(
    program: list[Step], restart_at: int
) -> None:
    assert play(program, restart_at) == play(program)


@given(
    st.floats(-50, 50),
    st.lists(st.tuples(st.floats(0, 0.999), st.sampled_from([1.0, 10.0, 60.0])), min_size=1, max_size=80),
)
def test_noise_narrower_than_the_hysteresis_band_never_flaps(centre: float, noise: list[tuple[float, float]]) -> None:
    """A rule raising at >= 10 and clearing at <= 8 sees values spread less than 2 wide: at most one transition."""
    engine, now, notes = AlertEngine(), 0.0, []
    for fraction, dt in noise:
        value = centre + 2 * fraction
        now += dt
        if value >= 10:
            notes += engine.apply(now, [up(for_s=30)])
        elif value <= 8:
            notes += engine.apply(now, [down()])
    transitions = [n.transition for n in notes]
    assert transitions in ([], [Transition.RAISED])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["n1", "n2"]),
            st.sampled_from(["temp_high", "lock_fault"]),
            st.booleans(),
            st.integers(0, 2),
        ),
        max_size=40,
    )
)
def test_open_rules_follow_every_change(steps: list[tuple[str, str, bool, int]]) -> None:
    """The per-node and per-rule counts behind ``open_rules`` (which let a node skip the clears of rules with
    nothing open) follow every change, and a restart rebuilds them."""
    engine = AlertEngine()

    def expected(n: str) -> set[str]:
        return {r.rule for r in engine.records() if r.node_id == n and r.open}

    for t, (node, rule, raising, hold) in enumerate(steps):
        obs = replace(up(node, for_s=hold, keep=hold), rule=rule) if raising else replace(down(node), rule=rule)
        engine.apply(float(t), [obs])
        for n in ("n1", "n2"):
            assert set(engine.open_rules(n)) == expected(n)
    restarted = AlertEngine(engine.records())
    for n in ("n1", "n2"):
        assert set(restarted.open_rules(n)) == set(engine.open_rules(n))
