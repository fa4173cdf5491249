"""The swap queue's runtime on a real store: announcements and telemetry through its thread, restart
reconciliation with the alerts firing, day plans assigned to technicians, technicians' actions stored."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from controller.alerts import AlertRecord, AlertState
from controller.alerts import Severity as AlertSeverity
from controller.fieldwork import service as field_service_module
from controller.fieldwork.metrics import FieldMetrics
from controller.fieldwork.service import FieldService
from controller.store.alerts import Notice
from controller.store.fieldwork import FieldStore
from controller.store.reservations import ReservationStore
from controller.swapqueue import GeoPoint, NotAssignedError, OrderState, Technician, VerifyPolicy
from controller.swapqueue.exact import sequence
from schemas import Battery, PowerSource, StatusDeath, Telemetry
from schemas.alert import AlertNotice
from tests.harness.mqtt import wait_until

SITES = {"centre": GeoPoint(52.52, 13.405), "harbour": GeoPoint(53.54, 9.99)}
T0 = 1_800_000_000.0  # a morning (UTC), so the plans below are all of one day


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReservationStore]:
    opened = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield opened
    opened.close()


def notice(node: str, site: str, transition: str, at: float, rule: str = "battery_swap") -> Notice:
    body = AlertNotice(
        delivery_key=f"{rule}:{node}#1:{transition}",
        alert_id=f"{rule}:{node}",
        episode=1,
        transition=transition,
        at=datetime.fromtimestamp(at, UTC),
        rule=rule,
        severity="critical",
        site_id=site,
        node_id=node,
        summary=f"charge 12% at or below the 20% floor ({node})",
        count=1,
        details={"hours_to_empty": 1.5},
    ).model_dump(mode="json")
    return Notice(body["delivery_key"], body["alert_id"], body)


def firing(node: str, site: str, at: float) -> AlertRecord:
    return AlertRecord(
        id=f"battery_swap:{node}",
        rule="battery_swap",
        node_id=node,
        compartment=None,
        site_id=site,
        severity=AlertSeverity.CRITICAL,
        state=AlertState.FIRING,
        episode=1,
        pending_since=at,
        firing_since=at,
        summary="charge 12% at or below the 20% floor",
        details={"hours_to_empty": 1.5},
    )


def telemetry(node: str, seq: int, soc: float, cycles: int) -> Telemetry:
    return Telemetry(
        node_id=node,
        boot_id=1,
        seq=seq,
        ts=datetime.now(UTC),
        battery=Battery(
            soc_pct=soc, voltage_v=12.0, charging=False, power_source=PowerSource.BATTERY, cycle_count=cycles
        ),
        enclosure_temp_c=20.0,
        compartments=[],
    )


class Harness:
    def __init__(self, store: ReservationStore, records: list[AlertRecord] | None = None) -> None:
        self.clock = Clock()
        self.lines: list[str] = []
        self.field_store = FieldStore(store.engine)
        self.service = FieldService(
            self.field_store,
            policy=VerifyPolicy(healthy_for_s=600),
            sites=SITES,
            sequencer=sequence,
            metrics=FieldMetrics(CollectorRegistry()),
            clock=self.clock,
            firing=lambda: list(records or []),
            forecast=lambda _node: None,
            active_reservations=list,
            store_lines=self.lines.extend,
        )
        self.service.start()

    def state(self, order_id: str) -> OrderState | None:
        found = {o.order_id: o.state for o, _ in self.service.orders()}
        return found.get(order_id)

    def stored_state(self, order_id: str) -> OrderState | None:
        found = {s.order.order_id: s.order.state for s in self.field_store.orders()}
        return found.get(order_id)

    def stop(self) -> None:
        self.service.stop()


def test_an_order_closes_from_telemetry_after_done_and_a_healthy_stretch(store: ReservationStore) -> None:
    h = Harness(store)
    h.field_store.create_key(Technician("ana", GeoPoint(52.5, 13.4), 5), datetime.now(UTC))
    h.service.on_notices([notice("n1", "centre", "raised", T0)])
    order_id = "wo-battery_swap:n1"
    assert wait_until(lambda: h.stored_state(order_id) is OrderState.OPEN, 10)
    [stop] = h.service.route("ana")
    assert stop.order.state is OrderState.ASSIGNED and stop.at == SITES["centre"] and stop.urgent
    assert stop.summary.startswith("charge 12%")

    h.service.observe(telemetry("n1", 1, 12.0, 300), T0 + 60)
    h.service.arrive(order_id, "ana")
    with pytest.raises(NotAssignedError):
        h.service.done(order_id, "bo")
    assert h.service.done(order_id, "ana").state is OrderState.AWAITING_VERIFICATION
    assert h.stored_state(order_id) is OrderState.AWAITING_VERIFICATION  # stored before the answer

    h.service.observe(telemetry("n1", 2, 95.0, 300), T0 + 120)  # the new pack: the charge jumped
    h.service.observe(telemetry("n1", 3, 95.0, 300), T0 + 500)  # healthy, not long enough yet
    h.service.observe(StatusDeath(node_id="n1", boot_id=1, seq=4, ts=datetime.now(UTC)), T0 + 600)  # breaks it
    h.service.observe(telemetry("n1", 5, 94.0, 300), T0 + 700)  # back: the stretch starts again
    h.service.observe(telemetry("n1", 6, 94.0, 300), T0 + 1200)
    assert wait_until(lambda: h.stored_state(order_id) is not None and len(h.lines) >= 8, 10)
    assert h.stored_state(order_id) is OrderState.AWAITING_VERIFICATION  # 500 s healthy since the break
    h.service.observe(telemetry("n1", 7, 94.0, 300), T0 + 1300)
    assert wait_until(lambda: h.stored_state(order_id) is OrderState.VERIFIED, 10)
    kinds = [e.kind for e in h.field_store.history(order_id)]
    assert kinds == [
        "created",
        "assigned",
        "arrived",
        "done",
        "fix_seen",
        "health_started",
        "health_broken",
        "health_started",
        "verified",
    ]
    assert len(h.lines) == len(kinds) and all(line.startswith("work_order,") for line in h.lines)
    [closed] = h.service.route("ana")
    assert closed.order.state is OrderState.VERIFIED  # still on her page today, closed
    h.stop()


def test_a_restart_applies_what_the_firing_alerts_say_and_the_store_missed(store: ReservationStore) -> None:
    first = Harness(store)
    first.service.on_notices([notice("n1", "centre", "raised", T0), notice("n2", "centre", "raised", T0)])
    assert wait_until(lambda: first.stored_state("wo-battery_swap:n2") is OrderState.OPEN, 10)
    first.stop()

    # While it was down: n1's alert resolved (its announcement lost), n3's fired (lost too); n2 still fires.
    again = Harness(store, [firing("n2", "centre", T0), firing("n3", "harbour", T0 + 30)])
    assert wait_until(lambda: again.stored_state("wo-battery_swap:n3") is OrderState.OPEN, 10)
    assert wait_until(lambda: again.stored_state("wo-battery_swap:n1") is OrderState.CANCELLED, 10)
    assert again.stored_state("wo-battery_swap:n2") is OrderState.OPEN
    assert [e.kind for e in again.field_store.history("wo-battery_swap:n2")] == ["created"]  # nothing repeated
    again.stop()


def test_each_technician_gets_the_stops_near_them_and_keeps_them(store: ReservationStore) -> None:
    h = Harness(store)
    h.field_store.create_key(Technician("ana", GeoPoint(52.5, 13.4), 5), datetime.now(UTC))
    h.field_store.create_key(Technician("bo", GeoPoint(53.55, 10.0), 5), datetime.now(UTC))
    h.service.on_notices([notice("n1", "centre", "raised", T0), notice("n2", "harbour", "raised", T0)])
    h.service.on_notices([notice("n9", "nowhere", "raised", T0)])  # a site without coordinates
    assert wait_until(lambda: h.stored_state("wo-battery_swap:n9") is OrderState.OPEN, 10)
    assert [s.order.node_id for s in h.service.route("ana")] == ["n1"]
    assert [s.order.node_id for s in h.service.route("bo")] == ["n2"]

    h.field_store.create_key(Technician("cy", GeoPoint(53.54, 9.99), 5), datetime.now(UTC))
    h.service.on_notices([notice("n3", "harbour", "raised", T0 + 60)])
    assert wait_until(lambda: h.stored_state("wo-battery_swap:n3") is OrderState.OPEN, 10)
    h.clock.now += 60
    routes = {t: [s.order.node_id for s in h.service.route(t)] for t in ("ana", "bo", "cy")}
    assert routes["ana"] == ["n1"] and routes["bo"][0] == "n2"  # assigned stays assigned
    assert sorted(routes["bo"] + routes["cy"]) == ["n2", "n3"]  # the new stop went to a technician in the harbour
    assert h.state("wo-battery_swap:n9") is OrderState.OPEN  # left out of every route, not lost
    h.stop()


def test_a_burst_of_telemetry_is_taken_in_one_batch(store: ReservationStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The work-order thread waits a moment after the first sample, so a flood wakes it per batch, not per message."""
    monkeypatch.setattr(field_service_module, "GATHER_S", 2.0)
    field = Harness(store).service
    field.stop()  # its own thread out of the way: this test takes from the queue itself
    taken: list[int] = []
    field._stop.clear()
    consumer = threading.Thread(target=lambda: taken.append(len(field._take())))
    consumer.start()
    field.observe(telemetry("n1", 0, 50.0, 3), 0.0)
    wait_until(lambda: field._queue.qsize() == 0, 10)
    for seq in range(1, 50):
        field.observe(telemetry("n1", seq, 50.0, 3), 0.0)
    consumer.join(10)
    assert taken == [50]
