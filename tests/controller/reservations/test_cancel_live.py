"""Cancels and reservation opens through the HTTP API, against real mosquitto and a simulated locker.

A cancel the controller knows is too late is answered 409 with the state; one the locker refuses (the parcel went
in meanwhile) comes back to the partner in the reservation's view and as a ``reservation.cancel_refused`` webhook.
"""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import AnyUrl

from controller.devstack.services import Mosquitto, free_port
from node_agent.ledger import SlotState
from node_agent.sim.fleet import SimFleet, background_fleet
from schemas import Channel, decode, topic
from tests.controller.reservations.test_reservations_live import body, one_locker, reporting, start
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.mqtt import Capture, wait_until
from tests.harness.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


def view(controller: ControllerThread, rid: str, headers: dict[str, str]) -> dict[str, Any]:
    return dict(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json())


def type_code(fleet: SimFleet, code: str) -> None:
    """A code typed at the locker's keypad; it must unlock a compartment."""
    assert fleet.loop is not None
    typed = asyncio.run_coroutine_threadsafe(fleet.agents[0].enter_code(code), fleet.loop).result(10)
    assert typed.grant is not None


def test_a_cancel_after_the_deposit_is_409_naming_the_state_and_sends_nothing(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    with background_fleet(one_locker(mosquitto, tmp_path)) as fleet:
        assert wait_until(lambda: reporting(controller), 20)
        assert wait_until(lambda: fleet.agents[0].keypad is not None, 10)
        created = controller.http.post(
            "/v1/reservations", json=body("P-1"), headers=headers | {"Idempotency-Key": "c1"}
        )
        rid = created.json()["reservation_id"]
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "held", 10)
        type_code(fleet, created.json()["deposit_code"])
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "deposited", 10)

        node_id = fleet.agents[0].node_id
        commands = Capture(mosquitto.url, topic(node_id, Channel.COMMAND))
        refused = controller.http.delete(f"/v1/reservations/{rid}", headers=headers)
        assert refused.status_code == 409
        assert refused.json()["detail"] == (
            f"reservation {rid} is deposited: the parcel is in the compartment, so it can only be picked up; "
            "nothing was cancelled"
        )
        type_code(fleet, view(controller, rid, headers)["pickup_code"])
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "picked_up", 10)
        again = controller.http.delete(f"/v1/reservations/{rid}", headers=headers)
        assert again.status_code == 409 and f"{rid} is picked_up" in again.json()["detail"]
        # A probe message after the cancels: once it arrives, any cancel published before it would have too.
        probe = controller.http.post(f"/v1/nodes/{node_id}/compartments/{created.json()['compartment']}/open")
        assert probe.status_code == 200, probe.text
        sent = [decode(Channel.COMMAND, d.payload).type for d in commands.snapshot()]
        commands.close()
        assert sent == ["open"]  # no cancel reached the locker
        found = fleet.agents[0].ledger.find(rid)
        assert found is None  # picked up: the compartment is free again
    trail = controller.controller.reservation_store.trail(rid)
    assert not [action for _actor, action, _detail in trail if action.startswith("cancel")]


@pytest.mark.parametrize("restart", [False, True], ids=["same-controller", "controller-restarted-meanwhile"])
def test_a_cancel_the_locker_refuses_reaches_the_partner_in_the_view_and_a_webhook(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path, restart: bool
) -> None:
    controller, key, _ = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    receiver = WebhookReceiver()
    controller.controller.reservation_store.set_webhook("parcelco", receiver.url)
    locker = one_locker(mosquitto, tmp_path)
    with background_fleet(locker) as fleet:
        assert wait_until(lambda: reporting(controller), 20)
        assert wait_until(lambda: fleet.agents[0].keypad is not None, 10)
        created = controller.http.post(
            "/v1/reservations", json=body("P-2"), headers=headers | {"Idempotency-Key": "c2"}
        )
        rid = created.json()["reservation_id"]
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "held", 10)

    # The locker, cut off from the broker, takes the parcel with the courier's code: the controller can't know.
    cut_off = locker.model_copy(update={"mqtt_url": AnyUrl(f"mqtt://127.0.0.1:{free_port()}")})
    with background_fleet(cut_off) as fleet:
        assert wait_until(lambda: fleet.agents[0].keypad is not None, 10)
        type_code(fleet, created.json()["deposit_code"])

        def occupied() -> bool:
            found = fleet.agents[0].ledger.find(rid)
            return found is not None and found[1].state is SlotState.OCCUPIED

        assert wait_until(occupied, 10)

    accepted = controller.http.delete(f"/v1/reservations/{rid}", headers=headers)
    assert accepted.status_code == 202 and accepted.json()["state"] == "held"  # sent: the locker decides
    assert accepted.json()["cancel_refused"] is None
    if restart:  # the refusal comes to a controller that did not send the cancel
        controller.stop()
        controller = start_controller(sites_file=tmp_path / "sites.json")

    with background_fleet(locker) as fleet:  # back online: the queued cancel meets the parcel
        assert wait_until(lambda: view(controller, rid, headers)["cancel_refused"] is not None, 20)
        refusal = view(controller, rid, headers)["cancel_refused"]
        assert refusal.startswith("rejected: wrong_state:") and "occupied" in refusal
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "deposited", 20)
        found = fleet.agents[0].ledger.find(rid)
        assert found is not None and found[1].state is SlotState.OCCUPIED  # the parcel stays for its pickup
        assert view(controller, rid, headers)["pickup_code"]

    def events() -> dict[str, dict[str, Any]]:
        return {e["type"]: e for e in (json.loads(r.body) for r in receiver.received)}

    assert wait_until(lambda: {"reservation.cancel_refused", "reservation.deposited"} <= set(events()), 10)
    told = events()["reservation.cancel_refused"]
    assert told["reservation"]["reservation_id"] == rid and told["reservation"]["cancel_refused"] == refusal
    receiver.close()
    trail = controller.controller.reservation_store.trail(rid)
    assert [a for _actor, a, _d in trail if a.startswith("cancel")] == ["cancel_requested", "cancel_refused"]


def test_a_reservation_open_needs_an_idempotency_key_and_a_repeat_gets_the_first_answer(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    with background_fleet(one_locker(mosquitto, tmp_path)):
        assert wait_until(lambda: reporting(controller), 20)
        created = controller.http.post(
            "/v1/reservations", json=body("P-3"), headers=headers | {"Idempotency-Key": "c3"}
        )
        rid = created.json()["reservation_id"]
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "held", 10)
        url = f"/v1/reservations/{rid}/open"

        def open_(step: str, **extra: str) -> httpx.Response:
            return controller.http.post(url, json={"step": step}, headers=headers | extra)

        missing = open_("deposit")
        assert missing.status_code == 422 and "idempotency-key" in missing.json()["detail"].lower()
        first = open_("deposit", **{"Idempotency-Key": "d-1"})
        assert first.status_code == 200, first.text
        repeat = open_("deposit", **{"Idempotency-Key": "d-1"})
        assert repeat.status_code == 200 and repeat.json()["command_id"] == first.json()["command_id"]
        reused = open_("pickup", **{"Idempotency-Key": "d-1"})
        assert reused.status_code == 422 and "different request" in reused.json()["detail"]
        assert wait_until(lambda: view(controller, rid, headers)["state"] == "deposited", 10)
        pickup = open_("pickup", **{"Idempotency-Key": "p-1"})
        assert pickup.status_code == 200 and pickup.json()["command_id"] != first.json()["command_id"]
