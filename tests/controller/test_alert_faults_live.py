"""Every alert rule driven by a simulator fault: real agents, mosquitto, InfluxDB and the controller's alert engine.

One fleet of nine simulated lockers at one site runs every fault at once, a node each (one stays healthy), under a
rules file with short windows. Each rule must be announced raised exactly once on the MQTT alert channel, and
resolved once the fault is cleared (a pack swapped, a heater repaired, a latch freed...).
"""

import threading
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
[defaults.battery]
window_h = 0.01         # 36 s of charge history, a point every 1.5 s
max_points = 24
min_points = 4
min_span_h = 0.0015     # 5.4 s
horizon_h = 0.5
clear_horizon_h = 1.0
critical_h = 0.05
swap_for_s = 0
swap_keep_firing_for_s = 0

[defaults.thermal]
band_for_s = 0
peer_for_s = 0
cusum_min_samples = 5
cusum_k = 1.0

[defaults.mechanical]
jam_window_s = 20
jam_raise_count = 2
latency_baseline_n = 3
latency_recent_n = 3

[defaults.security]
uncommanded_quiet_s = 3
"""

FAULTS = ",".join(
    (
        "f-0000=drain:0.2",  # empty in 12 minutes from full: a forecast swap
        "f-0001=drain:slow",  # on battery (a floor alert needs a pack that is not charging)...
        "f-0001=pack:drop",  # ...whose charge drops to 15 %
        "f-0002=pack:worn",
        "f-0003=heater",
        "f-0005=latch:A2",
        "f-0006=wear:A1:300",
    )
)
HEALTHY = "f-0008"


def notices(capture: Capture) -> list[dict[str, Any]]:
    return [AlertNotice.model_validate_json(d.payload).model_dump(mode="json") for d in capture.snapshot()]


def keys(capture: Capture, alert_id: str) -> list[str]:
    return [n["delivery_key"] for n in notices(capture) if n["alert_id"] == alert_id]


def announced(capture: Capture, alert_id: str, *transitions: str) -> Callable[[], bool]:
    """Whether the alert's announcements so far begin with ``transitions`` of its first episode."""
    expected = [f"{alert_id}#1:{t}" for t in transitions]
    return lambda: keys(capture, alert_id)[: len(expected)] == expected


def open_door(controller: ControllerThread, node: str, compartment: str) -> str:
    """An operator open through the API; a door still open from the last one is tried again. The door's result."""
    for _ in range(50):
        response = controller.http.post(f"/v1/nodes/{node}/compartments/{compartment}/open")
        assert response.status_code == 200, response.text
        result = str(response.json()["outcome"]["result"])
        if result != "already_open":
            return result
        time.sleep(0.2)
    raise AssertionError(f"the door of {node} {compartment} stayed open")


def reporting(controller: ControllerThread, nodes: int) -> bool:
    found = controller.http.get("/v1/nodes").json()
    return len(found) == nodes and all(n["telemetry"] for n in found)


def in_parallel(*steps: Any) -> None:
    threads = [threading.Thread(target=step) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def test_each_simulator_fault_fires_its_rule_once_and_it_resolves_once_the_fault_is_cleared(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text(RULES)
    capture = Capture(mosquitto.url, alerts_filter())
    controller = start_controller(
        alert_rules_file=rules, alert_eval_s=0.2, open_rate_per_key_per_min=6000, open_burst_per_key=100
    )
    sim = SimSettings(
        nodes=9,
        node_prefix="f",
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=0.5,
        ramp_s=0.5,
        sites=["s1"],
        jam_share=0,
        door_dwell_s=0.2,
        faults=FAULTS,
    )
    with background_fleet(sim) as fleet:
        assert wait_until(lambda: reporting(controller, 9), 30)
        assert wait_until(lambda: all(a.keypad is not None for a in fleet.agents), 10)
        fleet.inject("f-0004", "heater:drift:1800")  # 0.5 °C/s away from its peers, after they were learned
        fleet.inject("f-0007", "intruder")
        latched: list[str] = []
        worn: list[str] = []
        in_parallel(
            lambda: latched.extend(open_door(controller, "f-0005", "A2") for _ in range(2)),
            lambda: worn.extend(open_door(controller, "f-0006", "A1") for _ in range(6)),
        )
        assert latched == ["jammed", "jammed"] and worn == ["opened"] * 6
        intruded = wait_until(lambda: any(n["rule"] == "uncommanded_open" for n in notices(capture)), 15)
        assert intruded, notices(capture)
        forced = next(n["alert_id"] for n in notices(capture) if n["rule"] == "uncommanded_open")
        expected = {
            "battery_swap:f-0000": "drain",
            "battery_swap:f-0001": "swap",
            "battery_replace:f-0002": "pack",
            "temp_out_of_band:f-0003": "heater",
            "temp_peer_outlier:f-0003": "heater",
            "temp_slow_drift:f-0004": "heater",
            "compartment_jammed:f-0005:A2": "latch",
            "door_switch_wear:f-0006:A1": "wear",
            forced: "intruder",
            "keypad_lockout:f-0007": "intruder",
        }
        for alert_id in expected:
            assert wait_until(announced(capture, alert_id, "raised"), 20), (alert_id, notices(capture))
        by_id = {n["alert_id"]: n for n in notices(capture)}
        assert "empty in" in by_id["battery_swap:f-0000"]["summary"]  # the forecast, not the floor
        assert by_id["battery_swap:f-0000"]["details"]["hours_to_empty"] < 0.5
        assert by_id["battery_swap:f-0001"]["severity"] == "critical"
        assert by_id["battery_swap:f-0001"]["details"]["soc_pct"] <= 15

        clear(fleet, expected)
        assert open_door(controller, "f-0005", "A2") == "opened"  # the latch is free
        assert [open_door(controller, "f-0006", "A1") for _ in range(3)] == ["opened"] * 3  # a new switch
        for alert_id in expected:
            assert wait_until(announced(capture, alert_id, "raised", "resolved"), 45), keys(capture, alert_id)
    for alert_id in expected:  # nothing more: one episode each, raised and resolved once
        assert keys(capture, alert_id) == [f"{alert_id}#1:raised", f"{alert_id}#1:resolved"]
    assert [n for n in notices(capture) if n["node_id"] == HEALTHY] == []
    capture.close()


def clear(fleet: SimFleet, expected: dict[str, str]) -> None:
    """Repair every node: the technician swaps f-0001's pack; the other faults end."""
    for alert_id, kind in expected.items():
        node = alert_id.split(":")[1]
        if kind == "swap":
            fleet.swap_pack(node)
        else:
            fleet.clear_faults(node, kind)
