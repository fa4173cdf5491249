"""Operations rules: offline and stale on the timer, outbox drops, clock skew, suppression and site grouping."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.alerts import AlertMonitor, DoorEdge, Liveness, NodeInfo, Notification, Silence, Transition
from tests.controller.alerts.helpers import monitor, raised, resolved, sample


def test_a_last_will_raises_one_offline_alert_on_the_timer_and_a_return_resolves_it() -> None:
    mon = monitor()
    mon.on_telemetry(sample(0), 0)
    assert mon.on_liveness(Liveness("n1", online=False), 10) == []  # the will alone announces nothing yet
    notes = mon.tick(30) + mon.tick(71) + mon.tick(130)
    assert raised(notes) == ["node_offline:n1"] and notes[0].summary == "offline (last will)"
    notes = mon.on_liveness(Liveness("n1", online=True), 200) + mon.on_telemetry(sample(230), 230)
    assert notes == []  # back, but keep_firing_for (60 s) has not passed
    notes = mon.on_telemetry(sample(261), 261) + mon.tick(262)
    assert resolved(notes) == ["node_offline:n1"]


def test_silence_from_the_node_is_offline_without_any_will() -> None:
    mon = monitor()
    mon.on_telemetry(sample(0), 0)
    notes = [n for t in range(10, 400, 10) for n in mon.tick(t)]
    assert raised(notes) == ["node_offline:n1"]
    assert notes[0].at == 150  # silent at 90 s, then for 60 s


def test_an_offline_node_raises_nothing_derived() -> None:
    mon = monitor()
    mon.on_telemetry(sample(0, soc=10.0, temp=90.0, skew_s=600), 0)
    mon.on_liveness(Liveness("n1", online=False), 1)
    notes = [n for t in range(10, 2000, 10) for n in mon.tick(t)]
    assert raised(notes) == ["node_offline:n1"]  # not battery, temperature, stale or clock skew


def test_online_but_no_telemetry_is_stale() -> None:
    mon = monitor()
    mon.on_telemetry(sample(0), 0)
    notes: list[Notification] = []
    for t in range(30, 300, 30):  # door events keep it alive, telemetry stopped
        notes += mon.on_door_edge(DoorEdge("n1", "A1", t, opened=t % 60 == 0), t) + mon.tick(t + 1)
    assert raised(notes) == ["node_stale:n1"]
    notes = mon.on_telemetry(sample(300), 300)
    assert resolved(notes) == ["node_stale:n1"]


def test_outbox_drops_raise_with_their_count_and_resolve_after_a_quiet_hour() -> None:
    mon = monitor()
    notes = mon.on_telemetry(sample(0, dropped=0), 0) + mon.on_telemetry(sample(10, dropped=5), 10)
    assert raised(notes) == ["outbox_dropping:n1"] and notes[0].count == 5
    notes = mon.on_telemetry(sample(20, dropped=2), 20)  # lower: a reboot, 2 new drops
    assert notes == [] and mon.engine.get("outbox_dropping:n1").count == 7  # type: ignore[union-attr]
    notes = [n for t in range(30, 3700, 30) for n in mon.on_telemetry(sample(t, dropped=2), t)]
    assert resolved(notes) == ["outbox_dropping:n1"] and raised(notes) == []


def test_clock_skew_raises_after_its_for_and_ignores_replayed_samples() -> None:
    mon = monitor()
    notes = [n for t in range(0, 600, 30) for n in mon.on_telemetry(sample(t, skew_s=3600, replayed=True), t)]
    assert notes == []
    notes = [n for t in range(600, 1000, 30) for n in mon.on_telemetry(sample(t, skew_s=-200), t)]
    assert raised(notes) == ["clock_skew:n1"] and "ahead by 200 s" in notes[0].summary
    notes = [n for t in range(1000, 1100, 30) for n in mon.on_telemetry(sample(t, skew_s=60), t)]
    assert notes == []  # between clear (30 s) and raise (120 s): holds
    notes = mon.on_telemetry(sample(1200, skew_s=2), 1200)
    assert resolved(notes) == ["clock_skew:n1"]


def test_a_restart_raises_no_storm_of_offline_alerts() -> None:
    mon = monitor(nodes=[f"n{i}" for i in range(50)])
    restarted = AlertMonitor.restore(mon.rules, json.loads(json.dumps(mon.dump())))
    for i in range(50):
        restarted.set_node(NodeInfo(f"n{i}", "s1", last_seen=990), 1000)
    notes = restarted.tick(1001) + restarted.tick(1060)
    for i in range(50):
        notes += restarted.on_telemetry(sample(1070, f"n{i}"), 1070)
    notes += restarted.tick(1100)
    assert notes == []


def site_monitor(sizes: dict[str, int]) -> AlertMonitor:
    mon = AlertMonitor()
    for site, size in sizes.items():
        for i in range(size):
            mon.set_node(NodeInfo(f"{site}-{i}", site), 0)
            mon.on_telemetry(sample(0, f"{site}-{i}"), 0)
    return mon


def test_a_thousand_nodes_of_one_site_going_offline_together_make_one_grouped_alert() -> None:
    mon = site_monitor({"centre": 1000, "north": 10})
    notes: list[Notification] = []
    for i in range(1000):  # wills arrive over 10 s
        notes += mon.on_liveness(Liveness(f"centre-{i}", online=False), 20 + i / 100)
    notes += mon.on_liveness(Liveness("north-3", online=False), 25)
    for t in range(30, 400, 10):
        for i in range(10):
            if i != 3:
                notes += mon.on_telemetry(sample(t, f"north-{i}"), t)
        notes += mon.tick(t + 1)
    assert raised(notes) == ["site_uplink_lost:@centre", "node_offline:north-3"]
    grouped = notes[0]
    assert grouped.details["offline"] == 1000 and len(grouped.details["nodes"]) == 1000  # type: ignore[arg-type]
    assert grouped.site_id == "centre" and grouped.node_id is None
    back: list[Notification] = []
    for i in range(1000):
        back += mon.on_liveness(Liveness(f"centre-{i}", online=True), 400)
    back += mon.on_liveness(Liveness("north-3", online=True), 400)
    for t in range(410, 600, 10):
        for i in range(1000):  # some report at once, the rest later: staleness counts from their return
            if i % 7 == 0 or t >= 450:
                back += mon.on_telemetry(sample(t, f"centre-{i}"), t)
        for i in range(10):
            back += mon.on_telemetry(sample(t, f"north-{i}"), t)
        back += mon.tick(t)
    assert sorted(resolved(back)) == ["node_offline:north-3", "site_uplink_lost:@centre"] and raised(back) == []


def test_a_few_nodes_of_a_site_offline_are_node_alerts_not_a_site_alert() -> None:
    mon = site_monitor({"s": 10})
    notes = mon.on_liveness(Liveness("s-1", online=False), 1) + mon.on_liveness(Liveness("s-2", online=False), 1)
    for t in range(10, 200, 10):
        for i in (0, *range(3, 10)):
            notes += mon.on_telemetry(sample(t, f"s-{i}"), t)
        notes += mon.tick(t + 1)
    assert sorted(raised(notes)) == ["node_offline:s-1", "node_offline:s-2"]


def test_a_silence_on_a_site_mutes_its_alerts_and_the_raise_follows_its_end() -> None:
    mon = site_monitor({"s": 4})
    mon.add_silence(Silence("sil", "ops", "uplink work", 0, 500, site_id="s"))
    notes: list[Notification] = []
    for i in range(4):
        notes += mon.on_liveness(Liveness(f"s-{i}", online=False), 10)
    for t in range(20, 490, 10):
        notes += mon.tick(t)
    assert notes == []
    notes = mon.tick(500)
    assert raised(notes) == ["site_uplink_lost:@s"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.lists(st.integers(0, 39), unique=True, max_size=40))
def test_grouping_yields_one_site_alert_or_per_node_alerts_never_both_for_the_same_outage(
    extra_ticks: int, down: list[int]
) -> None:
    mon = site_monitor({"s": 40})
    notes: list[Notification] = []
    for i in down:
        notes += mon.on_liveness(Liveness(f"s-{i}", online=False), 5)
    for t in range(10, 200 + 10 * extra_ticks, 10):
        for i in set(range(40)) - set(down):
            notes += mon.on_telemetry(sample(t, f"s-{i}"), t)
        notes += mon.tick(t + 1)
    site_alerts = raised(notes, "site_uplink_lost")
    node_alerts = raised(notes, "node_offline")
    if len(down) >= 20:  # half the site: one grouped alert
        assert site_alerts == ["site_uplink_lost:@s"] and node_alerts == []
    else:
        assert site_alerts == [] and sorted(node_alerts) == sorted(f"node_offline:s-{i}" for i in down)
    assert all(n.transition is Transition.RAISED for n in notes)
