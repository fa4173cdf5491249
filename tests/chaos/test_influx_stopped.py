"""InfluxDB frozen for 60 s under load while a courier reserves and opens every second: nothing waits, nothing is lost.

Issue 10, item 4. Eight simulated lockers publish telemetry four times a second each; the controller's telemetry
receive window is small, so it fills soon after InfluxDB stops (SIGSTOP: writes hang, neither succeed nor fail) and
the broker holds the rest. Meanwhile a courier partner's app, every second, asks for a reservation and opens the
compartments of earlier ones for their deposit and then their pickup, through the HTTP API. Every request must
succeed (201 / 200 with the door opened) during the outage as before it; the latencies are printed (p50 and max per
phase) but only held to the API's own open timeout. Once InfluxDB runs again, every telemetry sample an observer saw
the lockers publish is stored exactly once by (node, boot id, seq), and every door the courier opened, every command
result and every reservation's ledger transition (held, deposited, picked_up) is in InfluxDB exactly once.
"""

import json
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.devstack.services import Influxd, Mosquitto
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, decode
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(420)]

NODES = 8
TELEMETRY_S = 0.25
"""Each locker's telemetry interval: 8 lockers give about 32 samples a second."""
WINDOW = 200
"""The controller's telemetry receive maximum: full within seconds of InfluxDB stopping."""
BEFORE_S = 15.0
OUTAGE_S = 60.0
AFTER_S = 5.0
OPEN_TIMEOUT_S = 10.0
"""The API's open timeout (the controller's default): the only bound put on a request's latency."""
DOOR_SHUT_S = 3.0
"""A simulated door closes after an exponential dwell of mean 0.2 s: 3 s after an open it has closed again."""
SITES = [{"site_id": "centre", "lat": 52.52, "lon": 13.405}]


@dataclass
class Parcel:
    """One reservation the courier walks: granted, held, deposit opened, deposited, pickup opened, picked up."""

    rid: str
    door: tuple[str, str]
    """(node, compartment) the reservation was given."""
    step: str = "wait_held"
    opens: list[str] = field(default_factory=list)
    """Command ids of the opens that drove the door (deposit, then pickup)."""


@dataclass
class Exchange:
    """One courier request: what it was, when (phase), how it was answered and how long it took."""

    kind: str
    phase: str
    status: int
    latency_s: float
    body: dict[str, Any]


class Courier:
    """Every second: one new reservation, the deposit open of a held one, the pickup open of a deposited one."""

    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0)
        self.parcels: list[Parcel] = []
        self.exchanges: list[Exchange] = []
        self.phase = "before"
        self.reserving = threading.Event()
        self.reserving.set()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._last_open: dict[tuple[str, str], float] = {}
        """When each door was last opened: the next open waits until it surely closed again."""
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)

    def start(self) -> "Courier":
        self._thread.start()
        return self

    def finish(self, timeout_s: float) -> None:
        """Stop reserving, walk the parcels granted so far to their pickup (or ``timeout_s``), then stop."""
        self.reserving.clear()
        wait_until(lambda: all(p.step == "done" for p in self.parcels) or bool(self.errors), timeout_s, 0.2)
        self.stop.set()
        self._thread.join(30)
        self.http.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            tick = time.monotonic()
            try:
                self._tick()
            except Exception as exc:  # reported by the test; the courier stops trying
                self.errors.append(repr(exc))
                return
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))

    def _post(self, kind: str, path: str, body: dict[str, Any]) -> Exchange:
        started = time.monotonic()
        phase = self.phase
        response = self.http.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        exchange = Exchange(kind, phase, response.status_code, time.monotonic() - started, response.json())
        self.exchanges.append(exchange)
        return exchange

    def _state(self, parcel: Parcel) -> str:
        return str(self.http.get(f"/v1/reservations/{parcel.rid}").json()["state"])

    def _ready(self, parcel: Parcel, state: str) -> bool:
        """Whether ``parcel`` waits for ``state``, is in it, and its door closed since it was last opened."""
        if parcel.step != f"wait_{state}" or time.monotonic() - self._last_open.get(parcel.door, 0.0) < DOOR_SHUT_S:
            return False
        return self._state(parcel) == state

    def _tick(self) -> None:
        if self.reserving.is_set():
            arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
            body = {"site": "centre", "size": "S", "parcel_ref": f"P-{len(self.parcels)}", "expected_arrival": arrival}
            reserved = self._post("reserve", "/v1/reservations", body)
            if reserved.status != 201:
                raise AssertionError(f"reservation answered {reserved.status}: {reserved.body}")
            door = (reserved.body["node_id"], reserved.body["compartment"])
            self.parcels.append(Parcel(reserved.body["reservation_id"], door))
        for wanted, step, next_step in (("held", "deposit", "wait_deposited"), ("deposited", "pickup", "wait_picked")):
            parcel = next((p for p in self.parcels if self._ready(p, wanted)), None)
            if parcel is None:
                continue
            self._last_open[parcel.door] = time.monotonic()
            opened = self._post(step, f"/v1/reservations/{parcel.rid}/open", {"step": step})
            if opened.status != 200 or (opened.body.get("outcome") or {}).get("result") != "opened":
                raise AssertionError(f"{step} open of {parcel.rid} answered {opened.status}: {opened.body}")
            parcel.opens.append(opened.body["command_id"])
            parcel.step = next_step
        for parcel in self.parcels:
            if parcel.step == "wait_picked" and self._state(parcel) == "picked_up":
                parcel.step = "done"


def latencies(exchanges: list[Exchange]) -> dict[tuple[str, str], tuple[int, float, float]]:
    """Count, p50 and max latency (ms) by (kind, phase)."""
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in exchanges:
        grouped[(e.kind, e.phase)].append(e.latency_s * 1000)
    return {k: (len(v), statistics.median(v), max(v)) for k, v in sorted(grouped.items())}


def telemetry_keys(capture: Capture) -> set[tuple[str, int, int]]:
    """(node, boot id, seq) of every telemetry sample the broker accepted from a locker."""
    keys = set()
    for delivered in capture.snapshot():
        sample = decode(Channel.TELEMETRY, delivered.payload)
        keys.add((sample.node_id, sample.boot_id, sample.seq))
    return keys


def stored_keys(influx: InfluxClient, measurement: str) -> Counter[tuple[str, int, int]]:
    rows = influx.query(f'SELECT boot_id, seq FROM "{measurement}" GROUP BY node')  # noqa: S608
    return Counter((r["node"], r["boot_id"], r["seq"]) for r in rows)


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An InfluxDB of this test's own (the session's is not ours to freeze), stopped even if the test fails."""
    server = Influxd(tmp_path / "influxd").start()
    yield server
    server.resume()  # a test failing while it was frozen
    server.stop()


def test_a_courier_reserves_and_opens_every_second_while_influxdb_is_frozen_for_a_minute_and_no_point_is_lost(
    mosquitto: Mosquitto, own_influxd: Influxd, tmp_path: Path
) -> None:
    influxd = own_influxd
    influx = InfluxClient(influxd.url, "chaos")
    influx.create()
    sites_file = tmp_path / "sites.json"
    sites_file.write_text(json.dumps(SITES))
    controller = ControllerThread(
        mosquitto.url,
        influxd.url,
        "chaos",
        tmp_path / "store.sqlite3",
        receive_maximum=WINDOW,
        batch_max_age_s=0.05,
        open_timeout_s=OPEN_TIMEOUT_S,
        site_quota_share=1.0,
        open_rate_per_key_per_min=600,  # two opens a second from one partner (the default is 30 a minute)
        sites_file=sites_file,
    ).start()
    partner = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    observer = Capture(mosquitto.url, "lockers/v1/+/telemetry", client_id="chaos-observer")
    sim = SimSettings(
        nodes=NODES,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=TELEMETRY_S,
        ramp_s=1.0,
        sites=["centre"],
        jam_share=0,
        door_dwell_s=0.2,
    )
    window_filled = False
    try:
        with background_fleet(sim):
            assert wait_until(lambda: len(controller.http.get("/v1/nodes").json()) == NODES, 30)
            assert wait_until(lambda: all(n["telemetry"] for n in controller.http.get("/v1/nodes").json()), 20)
            courier = Courier(controller.url, partner).start()
            try:
                time.sleep(BEFORE_S)
                influxd.pause()
                courier.phase = "outage"
                try:
                    deadline = time.monotonic() + OUTAGE_S
                    while time.monotonic() < deadline and not courier.errors:
                        window_filled |= controller.controller.pipeline.waiting == WINDOW
                        time.sleep(0.5)
                    before_resume = controller.http.get("/readyz").json()
                finally:
                    influxd.resume()
                courier.phase = "after"
                time.sleep(AFTER_S)
            finally:
                courier.finish(60)
            published = telemetry_keys(observer)
            assert wait_until(lambda: sum(stored_keys(influx, "telemetry").values()) >= len(published), 120)
        # the fleet is stopped: what the observer saw is all that was published
        published = telemetry_keys(observer)
        assert wait_until(lambda: sum(stored_keys(influx, "telemetry").values()) >= len(published), 60)
        assert wait_until(lambda: controller.controller.spool.lines_waiting == 0, 60)
    finally:
        observer.close()
        controller.stop()

    table = latencies(courier.exchanges)
    print("\nchaos influx frozen: courier latency (kind, phase): count p50_ms max_ms")
    for (kind, phase), (count, p50, worst) in table.items():
        print(f"  {kind:8} {phase:7} n={count:3d} p50={p50:7.1f} max={worst:7.1f}")

    assert courier.errors == []
    assert window_filled, "the telemetry window never filled: the load did not meet the outage"
    assert before_resume["readiness"] == "degraded", before_resume  # the controller saw InfluxDB gone
    outage = [e for e in courier.exchanges if e.phase == "outage"]
    assert sum(e.kind == "reserve" for e in outage) >= OUTAGE_S * 0.5  # the courier kept asking through it all
    assert sum(e.kind == "deposit" for e in outage) >= OUTAGE_S * 0.4
    assert sum(e.kind == "pickup" for e in outage) >= OUTAGE_S * 0.4
    assert all(e.status in (200, 201) for e in courier.exchanges)
    assert all(e.latency_s < OPEN_TIMEOUT_S for e in courier.exchanges), max(e.latency_s for e in courier.exchanges)
    assert [p.step for p in courier.parcels] == ["done"] * len(courier.parcels)

    # telemetry: every sample published, stored once; nothing else
    stored = stored_keys(influx, "telemetry")
    print(f"  telemetry published={len(published)} stored={sum(stored.values())}")
    assert set(stored) == published
    assert max(stored.values()) == 1
    # the doors the courier opened: the node's door event and its results, each stored once
    events = influx.query("SELECT command_id, boot_id, seq FROM event WHERE action = 'opened' GROUP BY node")
    opened_by = Counter(r["command_id"] for r in events)
    opens = [cid for p in courier.parcels for cid in p.opens]
    assert len(opens) == 2 * len(courier.parcels)
    assert all(opened_by[cid] == 1 for cid in opens), [cid for cid in opens if opened_by[cid] != 1]
    assert max(stored_keys(influx, "event").values()) == 1
    results = influx.query("SELECT command_id, boot_id, seq FROM command_result GROUP BY node, status, result")
    done = Counter(r["command_id"] for r in results if r["status"] == "done" and r["result"] == "opened")
    assert all(done[cid] == 1 for cid in opens)
    assert max(stored_keys(influx, "command_result").values()) == 1
    # the ledger: every reservation held, deposited and picked up, each transition stored once
    ledger = influx.query("SELECT reservation_id, boot_id, seq FROM ledger GROUP BY node, transition")
    transitions = Counter((r["reservation_id"], r["transition"]) for r in ledger)
    for parcel in courier.parcels:
        for transition in ("held", "deposited", "picked_up"):
            assert transitions[(parcel.rid, transition)] == 1, (parcel.rid, transition)
    assert max(stored_keys(influx, "ledger").values()) == 1
    print(
        f"  parcels={len(courier.parcels)} opens={len(opens)} ledger_points={len(ledger)} outage_requests={len(outage)}"
    )
    influx.close()
