"""Thermal rules: the safe band with hysteresis, drift from the node's own baseline, site peers, slow drift."""

import math

from controller.alerts import AlertMonitor, NodeInfo, Notification, parse_rules
from tests.controller.alerts.helpers import raised, resolved, sample

PERISHABLES = parse_rules("[sites.cold.thermal]\nmin_c = 2\nmax_c = 8\n")


def feed(mon: AlertMonitor, temps: dict[str, float], t: float) -> list[Notification]:
    notes: list[Notification] = []
    for node, temp in temps.items():
        notes += mon.on_telemetry(sample(t, node, temp=temp, power="shore"), t)
    return notes + mon.tick(t + 1)


def test_out_of_band_fires_once_holds_inside_the_margin_and_resolves_back_in_band() -> None:
    mon = AlertMonitor(PERISHABLES)
    mon.set_node(NodeInfo("n1", "cold"), 0)
    notes: list[Notification] = []
    for t, temp in [(0, 5.0), (60, 9.0), (200, 9.5), (361, 9.2), (400, 7.5), (460, 8.5), (520, 7.6)]:
        notes += feed(mon, {"n1": temp}, t)
    assert raised(notes) == ["temp_out_of_band:n1"] and resolved(notes) == []  # 7.5 °C: inside, not by the margin
    notes = feed(mon, {"n1": 6.5}, 600)
    assert resolved(notes) == ["temp_out_of_band:n1"]


def test_the_same_temperature_is_fine_at_a_site_without_the_perishables_band() -> None:
    mon = AlertMonitor(PERISHABLES)
    mon.set_node(NodeInfo("n1", "dry"), 0)
    notes = [n for t in range(0, 900, 30) for n in feed(mon, {"n1": 12.0}, t)]
    assert notes == []


def test_a_jump_away_from_the_nodes_own_baseline_raises_drift_and_the_baseline_catches_up() -> None:
    mon = AlertMonitor()
    mon.set_node(NodeInfo("n1", "s1"), 0)
    notes: list[Notification] = []
    t = 0.0
    for i in range(200):  # a daily-cycle-like wobble the baseline follows
        notes += feed(mon, {"n1": 20 + 2 * math.sin(i / 30)}, t)
        t += 10
    assert notes == []
    for _ in range(200):
        notes += feed(mon, {"n1": 35.0}, t)  # the heater stuck on
        t += 10
    assert raised(notes) == ["temp_baseline_drift:n1"]
    for _ in range(600):
        notes += feed(mon, {"n1": 35.0}, t)
        t += 10
    assert resolved(notes) == ["temp_baseline_drift:n1"]


def test_a_node_far_from_its_site_peers_is_an_outlier_until_it_rejoins_them() -> None:
    mon = AlertMonitor()
    for node in ("a", "b", "c", "d", "e"):
        mon.set_node(NodeInfo(node, "s1"), 0)
    notes: list[Notification] = []
    temps = {"a": 20.0, "b": 20.5, "c": 19.5, "d": 20.2, "e": 28.0}
    for t in range(0, 1000, 10):
        notes += feed(mon, temps, t)
    assert raised(notes) == ["temp_peer_outlier:e"]
    temps["e"] = 20.1
    for t in range(1000, 1100, 10):
        notes += feed(mon, temps, t)
    assert resolved(notes) == ["temp_peer_outlier:e"]


def test_slow_drift_from_the_site_is_caught_by_cusum_before_the_node_is_an_outlier() -> None:
    mon = AlertMonitor()
    nodes = ("a", "b", "c", "d", "e")
    for node in nodes:
        mon.set_node(NodeInfo(node, "s1"), 0)
    notes: list[Notification] = []
    t = 0.0
    for i in range(600):  # the whole site follows the weather; "e" sits 1 °C warmer (sunny side), then drifts
        weather = 15 + 5 * math.sin(i / 100)
        drift = 0.0 if i < 300 else (i - 300) * 0.005
        temps = {n: weather + 0.1 * k for k, n in enumerate(nodes)}
        temps["e"] = weather + 1.0 + drift
        notes += feed(mon, temps, t)
        t += 10
    assert raised(notes) == ["temp_slow_drift:e"]
