"""Battery rules: forecast swap, floor, charging cancels, too few points, replacement, maintenance, restarts."""

import json

from controller.alerts import AlertMonitor, AlertState, NodeInfo, Notification, Severity, Transition, parse_rules
from tests.controller.alerts.helpers import monitor, raised, resolved, sample

STEP = 600.0  # one sample every 10 min
NOISE = [0.4, -0.3, 0.1, -0.5, 0.2, 0.0, -0.1, 0.3]


def drain(mon: AlertMonitor, start: float, t0: float, hours: float, rate_per_h: float = 2.0) -> list[Notification]:
    """Samples of a pack draining at ``rate_per_h`` with sensor noise and one glitch; a tick after each."""
    notes: list[Notification] = []
    for i in range(int(hours * 3600 / STEP)):
        t = t0 + i * STEP
        soc = start - rate_per_h * (t - t0) / 3600 + NOISE[i % len(NOISE)]
        if i == 7:
            soc -= 15  # a glitch the robust slope shrugs off
        notes += mon.on_telemetry(sample(t, soc=soc), t)
        notes += mon.tick(t + 1)
    return notes


def test_swap_alert_fires_once_from_the_forecast_and_resolves_after_a_verified_swap() -> None:
    mon = monitor()
    notes = drain(mon, 60.0, 0.0, 14.0)  # 60 % → 32 %: empty (5 %) is forecast within 24 h from about 53 %
    assert raised(notes) == ["battery_swap:n1"]
    first = next(n for n in notes if n.transition is Transition.RAISED)
    assert first.severity is Severity.WARNING and 51.0 <= first.details["soc_pct"] <= 56.0  # type: ignore[operator]
    forecast = mon.forecast("n1", 14 * 3600.0)
    assert forecast is not None and forecast.hours_to_empty is not None
    assert -2.2 <= forecast.slope_pct_per_h <= -1.8
    assert 12.0 <= forecast.hours_to_empty <= 14.5  # about (33 - 5) / 2
    t = 14 * 3600.0
    after = mon.on_telemetry(sample(t, soc=100.0), t)  # the new pack
    after += mon.on_telemetry(sample(t + 300, soc=100.0), t + 300) + mon.on_telemetry(
        sample(t + 601, soc=99.9), t + 601
    )
    assert resolved(after) == ["battery_swap:n1"] and raised(after) == []


def test_forecast_within_the_critical_horizon_escalates_once() -> None:
    mon = monitor()
    notes = drain(mon, 30.0, 0.0, 6.0)
    transitions = [n.transition for n in notes if n.rule == "battery_swap"]
    assert transitions == [Transition.RAISED, Transition.ESCALATED]  # warning, then critical below 6 h and at 20 %


def test_no_forecast_from_too_few_points_or_too_short_a_span_and_no_alert_from_it() -> None:
    mon = monitor()
    notes: list[Notification] = []
    for i in range(12):  # 12 points over 110 min: enough points, not min_span_h (2 h), though the pack falls 10 %/h
        t = i * STEP
        notes += mon.on_telemetry(sample(t, soc=80 - 10 * t / 3600), t)
    assert mon.forecast("n1", 11 * STEP) is None and notes == []
    notes += mon.on_telemetry(sample(12 * STEP, soc=60.0), 12 * STEP)
    forecast = mon.forecast("n1", 12 * STEP)
    assert forecast is not None and forecast.points == 13 and forecast.slope_pct_per_h == -10.0


def test_charging_or_shore_power_cancels_the_forecast_and_clears_the_alert() -> None:
    mon = monitor()
    notes = drain(mon, 40.0, 0.0, 3.0, rate_per_h=5.0)
    assert raised(notes) == ["battery_swap:n1"]
    t = 3 * 3600.0
    notes = mon.on_telemetry(sample(t, soc=26.0, charging=True), t)
    assert mon.forecast("n1", t) is None
    notes += mon.on_telemetry(sample(t + 700, soc=27.0, power="shore"), t + 700)
    assert resolved(notes) == ["battery_swap:n1"]


def test_at_the_floor_the_swap_alert_is_critical_without_any_forecast() -> None:
    mon = monitor()
    notes = mon.on_telemetry(sample(0, soc=15.0), 0) + mon.on_telemetry(sample(300, soc=15.0), 300)
    assert raised(notes) == ["battery_swap:n1"] and notes[0].severity is Severity.CRITICAL
    assert notes[0].value is None  # no hours to empty without a forecast


def test_between_floor_and_clear_level_the_floor_alert_holds() -> None:
    mon = monitor()
    mon.on_telemetry(sample(0, soc=19.0), 0)
    mon.on_telemetry(sample(300, soc=19.0), 300)
    notes = mon.on_telemetry(sample(400, soc=22.0), 400) + mon.on_telemetry(sample(1400, soc=21.0), 1400)
    notes += mon.tick(1401)  # above 20 %, below 25 %: no verdict
    assert notes == [] and mon.engine.get("battery_swap:n1").state is AlertState.FIRING  # type: ignore[union-attr]


def test_cycle_count_beyond_the_packs_life_raises_replacement_until_the_pack_changes() -> None:
    mon = monitor()
    notes = mon.on_telemetry(sample(0, soc=90, power="shore", cycles=1850), 0)
    assert raised(notes) == ["battery_replace:n1"]
    notes = mon.on_telemetry(sample(10, soc=90, power="shore", cycles=3), 10)
    assert resolved(notes) == ["battery_replace:n1"]


def test_a_node_in_maintenance_raises_no_swap_alert() -> None:
    mon = monitor()
    mon.set_node(NodeInfo("n1", "s1", maintenance=True), 0)
    notes = mon.on_telemetry(sample(0, soc=10.0, cycles=5000), 0) + mon.tick(400) + mon.tick(4000)
    assert notes == []


def test_site_override_of_the_floor_applies_to_that_site_only() -> None:
    rules = parse_rules("[sites.cold.battery]\nfloor_pct = 40\nfloor_clear_pct = 45\n")
    mon = monitor(rules, nodes=["a"], site="cold")
    mon.set_node(NodeInfo("b", "warm"), 0)
    notes = mon.on_telemetry(sample(0, "a", soc=35), 0) + mon.on_telemetry(sample(0, "b", soc=35), 0)
    notes += mon.on_telemetry(sample(300, "a", soc=35), 300) + mon.on_telemetry(sample(300, "b", soc=35), 300)
    assert raised(notes) == ["battery_swap:a"]


def test_a_restart_mid_episode_neither_re_raises_nor_resolves_for_lack_of_history() -> None:
    mon = monitor()
    notes = drain(mon, 40.0, 0.0, 4.0, rate_per_h=5.0)
    assert raised(notes) == ["battery_swap:n1"]
    t = 4 * 3600.0
    state = json.loads(json.dumps(mon.dump()))
    restarted = AlertMonitor.restore(mon.rules, state)
    restarted.set_node(NodeInfo("n1", "s1", last_seen=t - 60), t)
    after = restarted.on_telemetry(sample(t, soc=21.5), t) + restarted.tick(t + 10)
    after += restarted.on_telemetry(sample(t + 1000, soc=21.0), t + 1000) + restarted.tick(t + 1001)
    assert after == []  # no forecast yet and 21.5 % is above the floor: the alert holds, firing, unannounced again
    assert restarted.engine.get("battery_swap:n1").state is AlertState.FIRING  # type: ignore[union-attr]
    after = restarted.on_telemetry(sample(t + 1100, soc=99.0), t + 1100)
    after += restarted.on_telemetry(sample(t + 1800, soc=99.0), t + 1800)
    assert resolved(after) == ["battery_swap:n1"] and raised(after) == []


def test_warm_replay_restores_the_forecast_after_a_restart() -> None:
    mon = monitor()
    for i in range(14):
        mon.warm(sample(i * STEP, soc=80 - 2 * i * STEP / 3600))
    forecast = mon.forecast("n1", 13 * STEP)
    assert forecast is not None and forecast.hours_to_empty is not None and 35 < forecast.hours_to_empty < 36.5
    assert mon.forecasts(13 * STEP) == [forecast]
