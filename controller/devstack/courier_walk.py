"""The courier walk of the demo: what a courier partner's app and the parcel's recipient do, one line per exchange.

With the partner's key it reserves a compartment, waits for the hold, opens the compartment for the deposit and
reads the pickup code; the recipient then types that code at the locker's keypad and the parcel is picked up.
Every HTTP exchange is printed briefly: method, path, body sent, status, latency and the fields that matter.
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from node_agent.sim.fleet import SimFleet

STATE_WAIT_S = 20.0
"""How long the walk waits for the locker to confirm a step before giving up."""

_PLACE = ("reservation_id", "node_id", "compartment")
_SHOWN = ("state", "deposit_code", "pickup_code", "status", "detail")


class WalkStoppedError(Exception):
    """Ctrl-C (or the demo's duration) ended the walk."""


class CourierWalk:
    """One walk through a reservation's life over the HTTP API, as a courier partner would make it."""

    def __init__(
        self,
        api: httpx.Client,
        partner_key: str,
        fleet: SimFleet,
        stop: threading.Event,
        say: Callable[[str], None],
    ) -> None:
        self.api = api
        self.headers = {"Authorization": f"Bearer {partner_key}"}
        self.fleet = fleet
        self.stop = stop
        self.say = say
        self.reservation_path: str | None = None
        """``/v1/reservations/{id}`` of the walked reservation, once granted."""

    def run(self, site: str) -> bool:
        """Reserve at ``site``, deposit, pick up with the code; True when the reservation ended ``picked_up``."""
        arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat(timespec="seconds")
        request = {"site": site, "size": "S", "parcel_ref": f"DEMO-{int(time.time())}", "expected_arrival": arrival}
        status, created = self.exchange("POST", "/v1/reservations", request)
        if status != 201:
            return self._gave_up("the reservation was not granted")
        path = self.reservation_path = f"/v1/reservations/{created['reservation_id']}"
        if self.until(path, "held").get("state") != "held":
            return self._gave_up("the locker did not confirm the hold")
        status, _ = self.exchange("POST", f"{path}/open", {"step": "deposit"})
        deposited = self.until(path, "deposited")
        if status != 200 or not deposited.get("pickup_code"):
            return self._gave_up("the deposit did not go through")
        self.type_code(str(deposited["node_id"]), str(deposited["pickup_code"]))
        return self.until(path, "picked_up").get("state") == "picked_up"

    def exchange(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Send one request (a POST with a fresh ``Idempotency-Key``), print it briefly, return status and body."""
        headers = self.headers | ({"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {})
        started = time.monotonic()
        response = self.api.request(method, path, json=body, headers=headers)
        elapsed_ms = (time.monotonic() - started) * 1000
        answer: dict[str, Any] = response.json() if response.content else {}
        sent = f" {json.dumps(body, separators=(',', ':'))}" if body is not None else ""
        self.say(f"  {method} {path}{sent}")
        self.say(
            f"      -> {response.status_code} in {elapsed_ms:.0f} ms  {summary(answer, with_place=method == 'POST')}"
        )
        return response.status_code, answer

    def until(self, path: str, state: str) -> dict[str, Any]:
        """Poll ``GET path`` quietly until the reservation is in ``state`` (or :data:`STATE_WAIT_S` passes); print
        the last exchange and return its body."""
        deadline = time.monotonic() + STATE_WAIT_S
        while True:
            if self.stop.is_set():
                raise WalkStoppedError
            view = self.api.get(path, headers=self.headers).json()
            if view.get("state") == state or time.monotonic() > deadline:
                return self.exchange("GET", path)[1]
            self.stop.wait(0.2)

    def type_code(self, node_id: str, code: str) -> None:
        """The recipient types ``code`` at ``node_id``'s keypad (on the simulator's loop)."""
        agent = next(a for a in self.fleet.agents if a.settings.node_id == node_id)
        assert self.fleet.loop is not None
        typed = asyncio.run_coroutine_threadsafe(agent.enter_code(code), self.fleet.loop).result(STATE_WAIT_S)
        opened = f"opens {typed.grant.compartment}" if typed.grant else f"refused ({typed.refused})"
        self.say(f"  keypad of {node_id}: the recipient types the pickup code {code} -> {opened}")

    def _gave_up(self, why: str) -> bool:
        self.say(f"  courier walk stopped: {why}; see the answer above and the controller's log lines")
        return False


def summary(body: dict[str, Any], *, with_place: bool = False) -> str:
    """The fields of an answer worth a glance, as ``key=value`` (which reservation and compartment if asked)."""
    fields = {k: body[k] for k in (*(_PLACE if with_place else ()), *_SHOWN) if body.get(k) is not None}
    outcome = body.get("outcome")
    if isinstance(outcome, dict):
        fields |= {"result": outcome.get("result"), "pulse_ms": outcome.get("pulse_ms")}
    if "round_trip_ms" in body:
        fields["round_trip_ms"] = round(body["round_trip_ms"])
    return "  ".join(f"{k}={v}" for k, v in fields.items())
