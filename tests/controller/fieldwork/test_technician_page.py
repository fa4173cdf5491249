"""The technicians' page in a real browser (Debian's chromium, driven by Playwright) at a phone's size, through a
battery swap: a live controller, real mosquitto and InfluxDB, and a locker publishing its draining battery.

The order must stay "awaiting verification" after the technician taps done, and close only once the locker reports
the new pack and stays healthy. Set ``LOCKERFLEET_SCREENSHOTS_DIR=docs/screenshots`` to refresh the README's shots.
"""

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ViewportSize, sync_playwright

from controller.cli import main
from controller.devstack.services import Mosquitto
from controller.store.reservations import Reservation, ReservationState
from schemas import (
    Battery,
    Channel,
    CompartmentReading,
    DoorState,
    LockState,
    PowerSource,
    Telemetry,
    encode,
    topic,
)
from tests import samples
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, disconnect, wait_until

pytestmark = pytest.mark.integration


CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 375, "height": 812}
SITES = [{"site_id": "centre", "lat": 52.5200, "lon": 13.4050}, {"site_id": "north", "lat": 52.58, "lon": 13.40}]
RULES = """
[defaults.battery]
swap_for_s = 0             # the floor alert fires on the first sample below it
swap_keep_firing_for_s = 0
"""
NODE = "locker-7"


@dataclass
class Locker:
    """A locker on the broker: its birth, then telemetry of one pack (the test drains and swaps it)."""

    url: str
    node_id: str
    seq: int = 0
    client: Any = field(default=None)

    def __post_init__(self) -> None:
        self.client = connect(self.url)
        birth = samples.birth(self.node_id).model_copy(update={"site": "centre", "ts": datetime.now(UTC)})
        self.client.publish(topic(self.node_id, Channel.STATUS), encode(birth), qos=1, retain=True).wait_for_publish()

    def report(self, soc: float, cycles: int) -> None:
        self.seq += 1
        closed = [CompartmentReading(id=c, door=DoorState.CLOSED, lock=LockState.LOCKED) for c in ("A1", "B1")]
        sample = Telemetry(
            node_id=self.node_id,
            boot_id=3,
            seq=self.seq,
            ts=datetime.now(UTC),
            battery=Battery(
                soc_pct=soc, voltage_v=12.1, charging=False, power_source=PowerSource.BATTERY, cycle_count=cycles
            ),
            enclosure_temp_c=19.5,
            compartments=closed,
        )
        self.client.publish(topic(self.node_id, Channel.TELEMETRY), encode(sample), qos=1).wait_for_publish()

    def close(self) -> None:
        disconnect(self.client)


@pytest.fixture
def locker(mosquitto: Mosquitto) -> Iterator[Locker]:
    found = Locker(mosquitto.url, NODE)
    yield found
    found.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("LOCKERFLEET_SCREENSHOTS_DIR") or tmp_path / "shots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def technician_key(capsys: pytest.CaptureFixture[str], store: Path) -> str:
    """``lockerfleet technician-key``, as a dispatcher runs it; returns the key it printed."""
    capsys.readouterr()
    argv = ["technician-key", "--technician", "ana", "--start", "52.5160,13.3777", "--max-stops", "6"]
    assert main([*argv, "--store-path", str(store), "--create-store", "true"]) == 0
    out = capsys.readouterr().out
    assert "technician key for ana" in out
    return out.strip().splitlines()[-1]


def parcel_held(controller: ControllerThread, rid: str, compartment: str) -> None:
    """A parcel deposited at the locker, waiting for its recipient (the stop shows it as affected)."""
    now = datetime.now(UTC)
    controller.controller.reservation_store.insert(
        Reservation(
            reservation_id=rid,
            partner="parcelco",
            site_id="centre",
            size="S",
            parcel_ref=f"PARCEL-{rid}",
            priority=0,
            state=ReservationState.DEPOSITED,
            node_id=NODE,
            compartment=compartment,
            hold_until=None,
            pickup_until=now + timedelta(days=2),
            created_at=now,
            updated_at=now,
        )
    )


def orders(controller: ControllerThread) -> list[dict[str, Any]]:
    answer = controller.http.get("/v1/work-orders", params={"node": NODE})
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()
    return result


def metric(controller: ControllerThread, line_start: str) -> float | None:
    for line in controller.http.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_swap_closes_on_the_page_only_after_the_locker_reports_the_new_pack(
    start_controller: ControllerFactory,
    influx: InfluxClient,
    locker: Locker,
    shots: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert CHROMIUM is not None, "this test needs Debian's chromium: apt-get install chromium (make test-tools)"
    (tmp_path / "sites.json").write_text(json.dumps(SITES))
    (tmp_path / "alerts.toml").write_text(RULES)
    key = technician_key(capsys, tmp_path / "controller.sqlite3")  # before the controller: it reads the same store
    controller = start_controller(
        sites_file=tmp_path / "sites.json",
        alert_rules_file=tmp_path / "alerts.toml",
        alert_eval_s=0.2,
        field_healthy_for_s=1.5,
    )
    parcel_held(controller, "res-1", "A1")
    parcel_held(controller, "res-2", "B1")
    assert wait_until(lambda: controller.controller.fleet.get(NODE) is not None, 10)
    for soc in (34.0, 29.0, 25.0, 21.0, 17.0):  # draining; below the 20 % floor the swap alert fires
        locker.report(soc, cycles=412)
    assert wait_until(lambda: [o["state"] for o in orders(controller)] == ["open"], 15), orders(controller)
    [order] = orders(controller)
    assert (order["kind"], order["severity"], order["alert_ids"]) == (
        "battery_swap",
        "critical",
        [f"battery_swap:{NODE}"],
    )

    as_technician = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{controller.url}/v1/work-orders", headers=as_technician).status_code == 401
    assert controller.http.get("/v1/field/route").status_code == 403  # an operator key is not a technician's
    assert httpx.get(f"{controller.url}/v1/field/route").status_code == 401

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        page.goto(f"{controller.url}/field")
        page.get_by_label("Your technician key").fill(key)
        page.get_by_role("button", name="Save key").click()

        stop = page.locator(f"li[data-order-id='{order['order_id']}']")
        stop.wait_for()
        assert stop.get_attribute("data-state") == "assigned"  # planned into ana's route: assigned to her
        assert page.get_by_text("ana ·").is_visible()
        assert NODE in stop.inner_text() and "floor" in stop.inner_text()
        assert "2 held (A1, B1)" in stop.inner_text() and "17 %" in stop.inner_text()
        assert stop.get_by_role("link", name=f"Open {NODE} in the map app").get_attribute("href") == (
            "geo:52.520000,13.405000"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        page.screenshot(path=str(shots / "technician-route.png"))

        stop.get_by_role("button", name=f"Arrived at {NODE}").click()
        page.locator(f"li[data-order-id='{order['order_id']}'][data-state='arrived']").wait_for()
        locker.report(16.0, cycles=412)  # still the old pack while she works
        stop.get_by_role("button", name=f"Done at {NODE}").click()
        awaiting = page.locator(f"li[data-order-id='{order['order_id']}'][data-state='awaiting_verification']")
        awaiting.wait_for()
        assert "Awaiting verification" in awaiting.inner_text()
        locker.report(15.0, cycles=412)  # done, but the locker still runs the old pack: nothing closes
        assert not stop.get_by_role("button").count()  # nothing left to tap
        page.screenshot(path=str(shots / "technician-awaiting.png"))
        [waiting] = orders(controller)
        assert waiting["state"] == "awaiting_verification" and waiting["evidence"] is None

        swapped_at = datetime.now(UTC)

        def closed() -> bool:
            locker.report(97.0, cycles=0)  # the new pack, and the locker healthy on it
            return bool(page.locator(f"li[data-order-id='{order['order_id']}'][data-state='verified']").count() == 1)

        assert wait_until(closed, 30, interval_s=0.5)
        assert "Closed · verified" in stop.inner_text() and "new pack" in stop.inner_text()
        page.screenshot(path=str(shots / "technician-closed.png"))
        browser.close()

    [verified] = orders(controller)
    assert verified["state"] == "verified" and verified["evidence"] == "cycle_reset"
    assert datetime.fromisoformat(verified["evidence_at"]) >= swapped_at  # the proof came after the new pack
    history = controller.http.get(f"/v1/work-orders/{order['order_id']}").json()["history"]
    kinds = [e["kind"] for e in history]
    assert kinds.index("done") < kinds.index("fix_seen") < kinds.index("verified") == len(kinds) - 1
    assert kinds[:4] == ["created", "assigned", "arrived", "done"]
    assert metric(controller, "lockerfleet_swap_seconds_count") == 1.0
    assert metric(controller, 'lockerfleet_work_orders_open{state="awaiting_verification"}') == 0.0
    verified_points = 'SELECT "duration_s" FROM "work_order" WHERE "node" = \'locker-7\' AND "event" = \'verified\''
    assert wait_until(lambda: bool(influx.query(verified_points)), 10)
