"""Courier reservations through the HTTP API, against real mosquitto, InfluxDB and simulated lockers."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.devstack.services import Mosquitto
from controller.notify.webhooks import verify
from node_agent.ledger import SlotState
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, ReservationStep, decode, topic
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, wait_until
from tests.harness.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

NODES = 7
KEPT_BACK_FOR_PRIORITIES = 2  # the default policy keeps two compartments per site from normal requests
SITES = [
    {"site_id": "centre", "lat": 52.5200, "lon": 13.4050},
    {"site_id": "north", "lat": 52.5800, "lon": 13.4000},
]


def body(parcel: str, site: str = "centre", size: str = "S") -> dict[str, Any]:
    arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    return {"site": site, "size": size, "parcel_ref": parcel, "expected_arrival": arrival}


def one_locker(mosquitto: Mosquitto, tmp_path: Path) -> SimSettings:
    """One simulated locker at the site: every door works and closes again soon."""
    return SimSettings(
        nodes=1,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=1,
        ramp_s=0.1,
        sites=["centre"],
        jam_share=0,
        door_dwell_s=0.2,
    )


def reporting(controller: ControllerThread) -> bool:
    """Some nodes are known and every one has sent telemetry."""
    nodes = controller.http.get("/v1/nodes").json()
    return bool(nodes) and all(n["telemetry"] for n in nodes)


def start(start_controller: ControllerFactory, tmp_path: Path, **settings: Any) -> tuple[ControllerThread, str, str]:
    sites_file = tmp_path / "sites.json"
    sites_file.write_text(json.dumps(SITES))
    controller = start_controller(sites_file=sites_file, **settings)
    now = datetime.now(UTC)
    store = controller.controller.reservation_store
    return (
        controller,
        store.create_api_key("parcelco", {"centre"}, now),
        store.create_api_key("otherco", {"north"}, now),
    )


@pytest.mark.timeout(300)  # 2,000 HTTP requests at once: minutes on a loaded 2-core machine, seconds on a quiet one
def test_a_thousand_racing_requests_get_exactly_the_capacity_and_repeats_get_the_same_answers(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller, key, _ = start(  # the partner may take the whole site: the crowd contends for all of it
        start_controller, tmp_path, courier_rate_per_min=60_000, courier_burst=5000, site_quota_share=1.0
    )
    sim = SimSettings(
        nodes=NODES,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=1,
        ramp_s=0.5,
        sites=["centre"],
    )
    with background_fleet(sim):
        assert wait_until(lambda: len(controller.http.get("/v1/nodes", params={"state": "online"}).json()) == NODES, 20)
        assert wait_until(lambda: all(n["telemetry"] for n in controller.http.get("/v1/nodes").json()), 10)
        capacity = NODES * 8 - KEPT_BACK_FOR_PRIORITIES  # every simulated compartment fits an S parcel
        headers = {"Authorization": f"Bearer {key}"}
        requests = [body(f"P{i}") for i in range(1000)]

        def reserve(i: int) -> tuple[int, dict[str, Any]]:
            with httpx.Client(base_url=controller.url, timeout=60) as http:
                response = http.post(
                    "/v1/reservations", json=requests[i], headers=headers | {"Idempotency-Key": f"k-{i}"}
                )
                return response.status_code, response.json()

        with ThreadPoolExecutor(max_workers=50) as pool:
            first = list(pool.map(reserve, range(1000)))
        granted = [b for status, b in first if status == 201]
        assert len(granted) == capacity
        assert {status for status, _ in first} == {201, 409}
        places = {(b["node_id"], b["compartment"]) for b in granted}
        assert len(places) == capacity  # no compartment twice
        refused = next(b for status, b in first if status == 409)
        assert "no compartment" in refused["detail"]

        def state(reservation_id: str) -> str:
            return str(controller.http.get(f"/v1/reservations/{reservation_id}", headers=headers).json()["state"])

        assert wait_until(lambda: all(state(b["reservation_id"]) == "held" for b in granted), 30)

        with ThreadPoolExecutor(max_workers=50) as pool:
            again = list(pool.map(reserve, range(1000)))
        assert again == first  # same idempotency keys: the same answers, no new reservation
        assert len(controller.controller.reservation_store.active("centre")) == capacity
        decided = influx.query('SELECT count("latency_ms") FROM reservation GROUP BY "answer"')
        assert {r["answer"]: r["count"] for r in decided} == {"granted": capacity, "refused": 1000 - capacity}

        cancelled = granted[0]["reservation_id"]
        assert controller.http.delete(f"/v1/reservations/{cancelled}", headers=headers).status_code == 202
        assert wait_until(lambda: state(cancelled) == "cancelled", 10)


def test_keys_scope_and_idempotency_misuse_are_refused(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, other = start(start_controller, tmp_path)
    http = controller.http
    no_key = httpx.post(f"{controller.url}/v1/reservations", json=body("P1"), headers={"Idempotency-Key": "a"})
    assert no_key.status_code == 401 and "missing API key" in no_key.json()["detail"]
    operator = http.post("/v1/reservations", json=body("P1"), headers={"Idempotency-Key": "a"})  # its operator key
    assert operator.status_code == 403 and "operator key" in operator.json()["detail"]
    bad_key = http.post(
        "/v1/reservations", json=body("P1"), headers={"Idempotency-Key": "a", "Authorization": "Bearer lf_x_y"}
    )
    assert bad_key.status_code == 401
    out_of_scope = http.post(
        "/v1/reservations", json=body("P1"), headers={"Idempotency-Key": "a", "Authorization": f"Bearer {other}"}
    )
    assert out_of_scope.status_code == 403 and "centre" in out_of_scope.json()["detail"]
    no_idempotency = http.post("/v1/reservations", json=body("P1"), headers={"Authorization": f"Bearer {key}"})
    assert no_idempotency.status_code == 422 and "idempotency-key" in no_idempotency.json()["detail"].lower()
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "same"}
    first = http.post("/v1/reservations", json=body("P1"), headers=headers)
    assert first.status_code == 409  # no lockers online at all: refused with alternatives
    assert first.json()["nearest_sites_with_capacity"] == []
    reused = http.post("/v1/reservations", json=body("P2"), headers=headers)
    assert reused.status_code == 422 and "different request" in reused.json()["detail"]
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/reservations", "/v1/reservations/{reservation_id}"} <= set(paths)


def test_a_key_gets_only_its_priorities_a_hold_starts_near_the_arrival_and_a_partner_holds_half_a_site(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path)  # default limits: priority 0, 48 h, half a site
    store = controller.controller.reservation_store
    fresh = store.create_api_key("freshco", {"centre"}, datetime.now(UTC), priorities=[0, 2], quota_per_site=1)

    def post(token: str, name: str, **extra: object) -> httpx.Response:
        return controller.http.post(
            "/v1/reservations",
            json=body(name) | extra,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": name},
        )

    with background_fleet(one_locker(mosquitto, tmp_path)):  # 8 compartments at centre
        assert wait_until(lambda: reporting(controller), 20)
        high = post(key, "self-declared", priority=2)
        assert high.status_code == 403, high.text
        assert "priority 2" in high.json()["detail"] and "--priorities" in high.json()["detail"]
        far = post(key, "march", expected_arrival=(datetime.now(UTC) + timedelta(days=89)).isoformat())
        assert far.status_code == 422 and "more than 48 h ahead" in far.json()["detail"]
        crowd = [post(key, f"q{i}") for i in range(5)]
        assert [r.status_code for r in crowd] == [201, 201, 201, 201, 409]
        assert "quota is 4 per site" in crowd[4].json()["detail"] and crowd[4].json()["quota"] == 4
        assert post(fresh, "fresh-1", priority=2).status_code == 201  # granted priority 2, and room was left
        assert post(fresh, "fresh-2", priority=2).json()["quota"] == 1  # its key's own quota
    assert sorted(r.partner for r in store.active("centre")) == ["freshco"] + ["parcelco"] * 4


def test_deposit_through_the_api_then_pickup_with_the_code_at_the_locker(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, other = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    receiver = WebhookReceiver()
    webhook_secret = controller.controller.reservation_store.set_webhook("parcelco", receiver.url)
    sim = one_locker(mosquitto, tmp_path)
    with background_fleet(sim) as fleet:
        assert wait_until(lambda: bool(controller.http.get("/v1/nodes", params={"state": "online"}).json()), 20)
        assert wait_until(lambda: fleet.agents[0].keypad is not None, 10)  # the node got its code key
        assert wait_until(lambda: all(n["telemetry"] for n in controller.http.get("/v1/nodes").json()), 10)
        created = controller.http.post(
            "/v1/reservations", json=body("P-1", size="L"), headers=headers | {"Idempotency-Key": "one"}
        )
        assert created.status_code == 201, created.text
        reservation = created.json()
        rid = reservation["reservation_id"]
        assert reservation["compartment"] == "B3"  # the smallest compartment that fits an L parcel
        assert reservation["deposit_code"] and len(reservation["deposit_code"]) == 8

        def view() -> dict[str, Any]:
            return dict(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json())

        assert wait_until(lambda: view()["state"] == "held", 10)
        assert (
            controller.http.get(f"/v1/reservations/{rid}", headers={"Authorization": f"Bearer {other}"}).status_code
            == 403
        )
        deposit = controller.http.post(
            f"/v1/reservations/{rid}/open", json={"step": "deposit"}, headers=headers | {"Idempotency-Key": "dep"}
        )
        assert deposit.status_code == 200, deposit.text
        assert deposit.json()["outcome"]["result"] in ("opened", "already_open")
        assert wait_until(lambda: view()["state"] == "deposited", 10)
        pickup_code = view()["pickup_code"]
        assert pickup_code and view()["deposit_code"] is None

        assert fleet.loop is not None
        typed = asyncio.run_coroutine_threadsafe(fleet.agents[0].enter_code(pickup_code), fleet.loop).result(10)
        assert typed.grant is not None and typed.grant.compartment == "B3"
        assert wait_until(lambda: view()["state"] == "picked_up", 10)
        again = controller.http.post(
            f"/v1/reservations/{rid}/open", json={"step": "pickup"}, headers=headers | {"Idempotency-Key": "pick"}
        )
        assert again.status_code == 409 and "picked_up" in again.json()["detail"]

    def events() -> list[str]:
        return [json.loads(r.body)["type"] for r in receiver.received]

    assert wait_until(lambda: events() == ["reservation.held", "reservation.deposited", "reservation.picked_up"], 10)
    deposited = json.loads(receiver.received[1].body)
    assert deposited["reservation"]["pickup_code"] == pickup_code  # what the recipient is sent
    now = int(datetime.now(UTC).timestamp())
    assert all(verify(webhook_secret, r.headers["Lockerfleet-Signature"], r.body, now) for r in receiver.received)
    receiver.close()


def test_courier_requests_beyond_the_key_limit_get_429_with_retry_after(
    start_controller: ControllerFactory, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path, courier_rate_per_min=6, courier_burst=2)
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [
        controller.http.post("/v1/reservations", json=body(f"P{i}"), headers=headers | {"Idempotency-Key": f"r{i}"})
        for i in range(3)
    ]
    assert [r.status_code for r in statuses] == [409, 409, 429]  # nothing online: refused, then rate-limited
    assert 1 <= int(statuses[2].headers["Retry-After"]) <= 10
    metrics = controller.http.get("/metrics").text
    assert 'lockerfleet_courier_rate_limited_total{limit="key"} 1.0' in metrics
    assert 'lockerfleet_reservation_requests_total{answer="refused"} 2.0' in metrics


def test_a_pickup_while_the_node_is_cut_off_reaches_the_controller_and_the_courier_when_it_returns(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    receiver = WebhookReceiver()
    controller.controller.reservation_store.set_webhook("parcelco", receiver.url)
    sim = one_locker(mosquitto, tmp_path)
    with background_fleet(sim) as fleet:
        assert wait_until(lambda: reporting(controller), 20)
        assert wait_until(lambda: fleet.agents[0].keypad is not None, 10)
        rid = controller.http.post(
            "/v1/reservations", json=body("P-9"), headers=headers | {"Idempotency-Key": "nine"}
        ).json()["reservation_id"]

        def view() -> dict[str, Any]:
            return dict(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json())

        assert wait_until(lambda: view()["state"] == "held", 10)
        assert (
            controller.http.post(
                f"/v1/reservations/{rid}/open", json={"step": "deposit"}, headers=headers | {"Idempotency-Key": "dep"}
            ).status_code
            == 200
        )
        assert wait_until(lambda: view()["state"] == "deposited", 10)
        pickup_code = view()["pickup_code"]

        mosquitto.stop()  # the locker is cut off
        assert fleet.loop is not None
        typed = asyncio.run_coroutine_threadsafe(fleet.agents[0].enter_code(pickup_code), fleet.loop).result(10)
        assert typed.grant is not None  # served at the node, with no network
        assert view()["state"] == "deposited"  # the controller cannot know yet
        mosquitto.start()
        assert wait_until(lambda: view()["state"] == "picked_up", 40)  # the outbox replayed the ledger event

    assert wait_until(
        lambda: [json.loads(r.body)["type"] for r in receiver.received][-1:] == ["reservation.picked_up"], 10
    )
    controller.stop()
    restarted = start_controller(sites_file=tmp_path / "sites.json")  # same store: nothing forgotten
    again = restarted.http.get(f"/v1/reservations/{rid}", headers=headers)
    assert again.status_code == 200 and again.json()["state"] == "picked_up"
    receiver.close()


def test_the_waitlist_gets_freed_capacity_first_come_first_served_and_expires(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    sim = SimSettings(
        nodes=1,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=1,
        ramp_s=0.1,
        sites=["centre"],
    )

    def post(name: str, **extra: object) -> httpx.Response:
        return controller.http.post(
            "/v1/reservations", json=body(name, size="XL") | extra, headers=headers | {"Idempotency-Key": name}
        )

    def state(rid: str) -> str:
        return str(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["state"])

    with background_fleet(sim):
        assert wait_until(lambda: reporting(controller), 20)
        first = post("first")  # the one XL compartment
        assert first.status_code == 201 and first.json()["compartment"] == "C2"
        assert post("refused").status_code == 409  # no wait asked: refused at once
        early = post("early", wait_s=60)
        late = post("late", wait_s=60)
        brief = post("brief", wait_s=0.5)
        assert [r.status_code for r in (early, late, brief)] == [202, 202, 202]
        assert [r.json()["position"] for r in (early, late, brief)] == [1, 2, 3]
        assert early.json()["state"] == "waitlisted" and early.json()["compartment"] is None
        assert wait_until(lambda: state(brief.json()["reservation_id"]) == "expired", 10)

        assert wait_until(lambda: state(first.json()["reservation_id"]) == "held", 10)
        cancel = controller.http.delete(f"/v1/reservations/{first.json()['reservation_id']}", headers=headers)
        assert cancel.status_code == 202
        early_id, late_id = early.json()["reservation_id"], late.json()["reservation_id"]
        assert wait_until(lambda: state(early_id) == "held", 15)  # the freed compartment goes to the first in line
        assert state(late_id) == "waitlisted"
        assert controller.http.get(f"/v1/reservations/{early_id}", headers=headers).json()["compartment"] == "C2"


def test_sixty_racing_deposit_opens_drive_the_relay_once_and_never_record_a_pickup(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path, open_rate_per_key_per_min=6000, open_burst_per_key=100)
    with background_fleet(one_locker(mosquitto, tmp_path)) as fleet:
        assert wait_until(lambda: reporting(controller), 15)
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "race-deposit"}
        rid = controller.http.post("/v1/reservations", json=body("P-race"), headers=headers).json()["reservation_id"]

        def state() -> str:
            return str(controller.http.get(f"/v1/reservations/{rid}", headers=headers).json()["state"])

        assert wait_until(lambda: state() == "held", 10)
        node_id = controller.http.get("/v1/nodes").json()[0]["node_id"]
        opens_sent = Capture(mosquitto.url, topic(node_id, Channel.COMMAND))

        def deposit(_: int) -> httpx.Response:
            return controller.http.post(f"/v1/reservations/{rid}/open", json={"step": "deposit"}, headers=headers)

        with ThreadPoolExecutor(60) as pool:
            answers = list(pool.map(deposit, range(60)))
        assert {a.status_code for a in answers} == {200}, {a.text for a in answers}
        assert len({a.json()["command_id"] for a in answers}) == 1  # one command: every repeat got the first answer
        assert wait_until(lambda: state() == "deposited", 10)
        sent = [decode(Channel.COMMAND, d.payload) for d in opens_sent.snapshot()]
        opens_sent.close()
        assert [(c.type, getattr(c, "step", None)) for c in sent] == [("open", ReservationStep.DEPOSIT)]
        found = fleet.agents[0].ledger.find(rid)
        assert found is not None and found[1].state is SlotState.OCCUPIED  # the parcel is in, kept for its pickup
        late = controller.http.post(f"/v1/reservations/{rid}/open", json={"step": "deposit"}, headers=headers)
        assert late.status_code == 200 and late.json()["command_id"] == answers[0].json()["command_id"]
        assert state() == "deposited"


def test_one_key_flooding_opens_is_throttled_alone(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller, _, _ = start(start_controller, tmp_path, open_rate_per_key_per_min=6, open_burst_per_key=3)
    flooder = controller.controller.operators.create_key("flooder", datetime.now(UTC))
    with background_fleet(one_locker(mosquitto, tmp_path)):
        assert wait_until(lambda: reporting(controller), 15)
        node = controller.http.get("/v1/nodes").json()[0]
        url = f"/v1/nodes/{node['node_id']}/compartments/{node['compartments'][0]['id']}/open"
        flood = [controller.http.post(url, headers={"Authorization": f"Bearer {flooder}"}) for _ in range(6)]
        assert [a.status_code == 429 for a in flood] == [False] * 3 + [True] * 3
        assert "flooder" in flood[-1].json()["detail"] and int(flood[-1].headers["Retry-After"]) >= 1
        other = controller.http.post(url)  # another operator is not held back by the flood
        assert other.status_code != 429, other.text
    exposition = controller.http.get("/metrics").text
    assert 'lockerfleet_open_key_throttled_total{requested_by="operator:flooder"} 3.0' in exposition
