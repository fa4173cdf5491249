"""The rules no battery, heater or door-wear fault reaches, each driven by a simulator fault through real agents,
mosquitto, InfluxDB and the controller: a door held open, a welded lock relay, a node offline, a stale node, outbox
drops, a skewed clock, a site losing its uplink, a node's own temperature baseline, and the fleet open breaker.

Eleven lockers at three sites under a rules file with short windows: ``m`` (six nodes, one fault each and one
healthy), ``o`` (two nodes, offline alerts slow there so a short outage raises only the outbox alert) and ``u`` (three
nodes that lose their uplink together). Each rule is announced raised exactly once on the MQTT alert channel and
resolved once the fault is cleared, and nothing else is announced: the uplink is one site alert, not three offline
ones.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.devstack.services import Mosquitto
from node_agent.settings import SimSettings
from node_agent.sim.fleet import SimFleet, background_fleet
from schemas.alert import AlertNotice
from schemas.topics import alerts_filter
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.mqtt import Capture, wait_until

pytestmark = pytest.mark.integration

RULES = """
[defaults.mechanical]
door_open_max_s = 2
stuck_unlocked_s = 2

[defaults.operations]
offline_after_s = 60    # offline by a will only: a stale node stays stale
offline_for_s = 3
offline_keep_firing_for_s = 0
stale_after_s = 2
stale_for_s = 0
outbox_quiet_s = 3
skew_raise_s = 60
skew_clear_s = 5
skew_for_s = 0
site_for_s = 0

[sites.o.operations]
offline_for_s = 120     # the outbox node's short outage is no offline alert

[sites.o.thermal]
ewma_min_samples = 5
ewma_for_s = 0
"""

SITES = ["m"] * 6 + ["o"] * 2 + ["u"] * 3
"""Node g-00NN stands at SITES[NN] (the simulator deals sites round robin over this list)."""
FAULTS = "g-0001=lock:fault:A2,g-0003=clock:skew:600"
HEALTHY = "g-0005"


def notices(capture: Capture) -> list[dict[str, Any]]:
    return [AlertNotice.model_validate_json(d.payload).model_dump(mode="json") for d in capture.snapshot()]


def keys(capture: Capture, alert_id: str) -> list[str]:
    return [n["delivery_key"] for n in notices(capture) if n["alert_id"] == alert_id]


def announced(capture: Capture, alert_id: str, *transitions: str) -> Callable[[], bool]:
    """Whether the alert's announcements so far begin with ``transitions`` of its first episode."""
    expected = [f"{alert_id}#1:{t}" for t in transitions]
    return lambda: keys(capture, alert_id)[: len(expected)] == expected


def reporting(controller: ControllerThread, nodes: int) -> bool:
    found = controller.http.get("/v1/nodes").json()
    return len(found) == nodes and all(n["telemetry"] for n in found)


def trip_breaker(controller: ControllerThread) -> None:
    """Operator opens on the healthy node until the fleet-wide limit refuses one."""
    for compartment in ("A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2"):
        response = controller.http.post(f"/v1/nodes/{HEALTHY}/compartments/{compartment}/open")
        if response.status_code == 429:
            assert "fleet-wide open limit" in response.text, response.text
            return
        assert response.status_code == 200, response.text
    raise AssertionError("the fleet-wide open limit never refused an open")


def test_each_operations_fault_fires_its_rule_once_and_it_resolves_once_the_fault_is_cleared(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text(RULES)
    capture = Capture(mosquitto.url, alerts_filter())
    controller = start_controller(
        alert_rules_file=rules,
        alert_eval_s=0.2,
        open_rate_per_min=30,  # a token every 2 s
        open_burst=3,
        open_rate_per_key_per_min=6000,
        open_burst_per_key=100,
    )
    sim = SimSettings(
        nodes=len(SITES),
        node_prefix="g",
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=0.5,
        ramp_s=0.5,
        sites=SITES,
        jam_share=0,
        door_dwell_s=0.2,
        faults=FAULTS,
    )
    expected = {
        "door_held_open:g-0000:A1": ("g-0000", "door"),
        "lock_fault:g-0001:A2": ("g-0001", "lock"),
        "node_stale:g-0002": ("g-0002", "stale"),
        "clock_skew:g-0003": ("g-0003", "clock"),
        "node_offline:g-0004": ("g-0004", "offline"),
        "outbox_dropping:g-0006": ("g-0006", "outbox"),
        "temp_baseline_drift:g-0007": ("g-0007", "heater"),
        "site_uplink_lost:@u": ("@u", "uplink"),
        "open_breaker_tripped:*": ("", ""),
    }
    with background_fleet(sim) as fleet:
        assert wait_until(lambda: reporting(controller, len(SITES)), 30)
        fleet.inject("g-0000", "door:held:A1")
        response = controller.http.post("/v1/nodes/g-0000/compartments/A1/open")
        assert response.status_code == 200 and response.json()["outcome"]["result"] == "opened", response.text
        trip_breaker(controller)
        for target, fault in [
            ("g-0002", "stale"),
            ("g-0004", "offline"),
            ("g-0006", "outbox:drop:2"),
            ("g-0007", "heater:8"),  # in the band, but far from its own baseline (site o has too few peers)
            ("@u", "uplink"),
        ]:
            fleet.inject(target, fault)
        assert wait_until(announced(capture, "temp_baseline_drift:g-0007", "raised"), 20), notices(capture)
        fleet.clear_faults("g-0007", "heater")  # at once: its baseline has hardly moved towards the fault
        for alert_id in expected:
            assert wait_until(announced(capture, alert_id, "raised"), 20), (alert_id, notices(capture))
        by_id = {n["alert_id"]: n for n in notices(capture)}
        assert by_id["site_uplink_lost:@u"]["details"]["nodes"] == ["g-0008", "g-0009", "g-0010"]
        assert by_id["clock_skew:g-0003"]["summary"].startswith("device clock ahead by")
        assert by_id["lock_fault:g-0001:A2"]["summary"] == "lock of A2 stays unlocked (relay stuck?)"
        assert "offline (last will)" in by_id["node_offline:g-0004"]["summary"]

        clear(fleet, expected)
        for alert_id in expected:
            assert wait_until(announced(capture, alert_id, "raised", "resolved"), 30), keys(capture, alert_id)
        time.sleep(1.0)  # anything announced late (a held offline alert, a second episode) would arrive by now
        for alert_id in expected:  # one episode each, raised and resolved once
            assert keys(capture, alert_id) == [f"{alert_id}#1:raised", f"{alert_id}#1:resolved"]
        assert sorted({n["alert_id"] for n in notices(capture)}) == sorted(expected)  # nothing else
    capture.close()  # (the fleet's stop takes every site down: not part of the story)


def clear(fleet: SimFleet, expected: dict[str, tuple[str, str]]) -> None:
    """End every fault still on (the breaker resets by itself once its limit refilled)."""
    for target, kind in expected.values():
        if target and kind != "heater":
            fleet.clear_faults(target, kind)
