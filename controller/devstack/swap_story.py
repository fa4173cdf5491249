"""The swap story of the demo: one locker's battery drains fast, the controller forecasts it empty and raises a swap
alert that opens a work order, a technician swaps the pack (simulated), the alert resolves on the new pack's
telemetry, and the controller closes the work order as verified once the node stays healthy
(:data:`HEALTHY_FOR_S`, the demo's ``--field-healthy-for-s``).

The locker (:data:`NODE`) runs on battery with a heavy load and a half-empty pack (simulator faults ``drain:2`` and
``pack:drop:45``). The demo's alert rules (:data:`RULES`) fit the forecast on seconds of history instead of hours, so
the story is told in the demo's first half minute; every other rule keeps its default.
"""

import time
from collections.abc import Callable
from typing import Any

import httpx

from node_agent.sim.fleet import SimFleet

NODE = "sim-0001"
FAULTS = f"{NODE}=drain:2,{NODE}=pack:drop:45"
"""Full to empty in 2 h on battery, from 45 %: empty in about 0.8 h."""
ALERT_ID = f"battery_swap:{NODE}"
SWAP_AFTER_S = 3.0
"""How long after the alert fires the (simulated) technician swaps the pack."""
HEALTHY_FOR_S = 4.0
"""How long the node stays healthy after the swap before its work order is verified (15 min in a real fleet)."""
RULES = """\
# The demo's alert rules: the battery forecast on seconds of history (a real fleet fits hours: see
# controller/alerts/rules.example.toml), so a fast-draining locker is forecast empty within seconds.
[defaults.battery]
window_h = 0.02        # 72 s of charge history...
max_points = 36        # ...a point kept every 2 s
min_points = 3
min_span_h = 0.001     # 3.6 s
horizon_h = 1.0        # swap alert when empty is forecast within the hour...
clear_horizon_h = 1.5  # ...and it clears beyond 1.5 h
critical_h = 0.25
swap_for_s = 0
swap_keep_firing_for_s = 0
"""


class SwapStory:
    """Watches :data:`ALERT_ID` through the operator API and swaps the pack once it fires; one line per step."""

    def __init__(
        self,
        api: httpx.Client,
        fleet: SimFleet,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.fleet = fleet
        self.say = say
        self.clock = clock
        self.step_name = "waiting" if NODE in fleet.faults else "done"
        self._fired_at = 0.0
        self._told: set[str] = set()

    @property
    def done(self) -> bool:
        """The story is told (or cannot be: the fleet has no :data:`NODE`)."""
        return self.step_name == "done"

    def step(self) -> None:
        """Look once at the alert and move the story on."""
        if self.done:
            return
        alert = self._alert()
        state = alert["state"] if alert else None
        if self.step_name == "waiting" and state == "firing":
            assert alert is not None
            self.say(f"swap        alert {ALERT_ID} firing ({alert['severity']}): {alert['summary']}")
            self.step_name, self._fired_at = "fired", self.clock()
        elif self.step_name == "fired" and self.clock() - self._fired_at >= SWAP_AFTER_S:
            soc = self.fleet.boards[self._index()].battery.soc_pct
            self.fleet.swap_pack(NODE)
            self.say(f"swap        a technician swaps the pack of {NODE} (simulated): {soc:.0f}% -> 100%, 0 cycles")
            self.step_name = "swapped"
        order = self._order()
        if order is not None and "order" not in self._told:
            self._told.add("order")
            self.say(f"swap        work order {order['order_id']} {order['state']}: {order['problem']}")
        if self.step_name != "swapped":
            return
        if state == "resolved" and "resolved" not in self._told:
            self._told.add("resolved")
            self.say(f"swap        alert {ALERT_ID} resolved: the controller saw the new pack in {NODE}'s telemetry")
        if order is not None and order["state"] == "verified" and "verified" not in self._told:
            self._told.add("verified")
            self.say(
                f"swap        work order {order['order_id']} verified: telemetry showed {order['evidence']}, then "
                f"{HEALTHY_FOR_S:g} s healthy"
            )
        if {"resolved", "verified"} <= self._told:
            self.step_name = "done"

    def _index(self) -> int:
        return list(self.fleet.faults).index(NODE)

    def _order(self) -> dict[str, Any] | None:
        orders = self.api.get("/v1/work-orders", params={"node": NODE}).json()
        return next((o for o in orders if o["kind"] == "battery_swap"), None)

    def _alert(self) -> dict[str, Any] | None:
        alerts = self.api.get("/v1/alerts", params={"node": NODE}).json()
        return next((a for a in alerts if a["id"] == ALERT_ID), None)
