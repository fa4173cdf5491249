"""Per-partner limits as the reservation service applies them under its lock, on a real SQLite store: granted
priorities, the hold window and the per-site quota (what was stored and sent is asserted, not just the answer)."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.commands.service import Commands
from controller.fleet.registry import Fleet
from controller.metrics import Metrics
from controller.reservations.contention import Site
from controller.reservations.limits import Limits
from controller.reservations.service import NotAllowedError, ReservationRequest, Reservations
from controller.store.reservations import ApiKey, ReservationState, ReservationStore
from schemas import CompartmentInfo, CompartmentSize
from tests import samples

NOW = float(int(time.time()))
"""The service's clock, fixed (requests are validated against the wall clock, so it starts from it)."""
SITES = {"centre": Site("centre", 52.52, 13.405), "north": Site("north", 52.58, 13.40)}


class Recorder:
    """Keeps what would have been published to the nodes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, float]] = []

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        self.sent.append((topic, payload, expiry_s))


def locker(fleet: Fleet, node_id: str, site: str, compartments: int = 8) -> None:
    """A node online at ``site`` with ``compartments`` M compartments and a full battery."""
    infos = [CompartmentInfo(id=f"C{i}", size=CompartmentSize.M) for i in range(compartments)]
    fleet.apply_status(samples.birth(node_id).model_copy(update={"site": site, "compartments": infos}), now=NOW)
    fleet.seen(node_id, NOW, samples.telemetry(node_id, ts=datetime.fromtimestamp(NOW, UTC)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReservationStore]:
    opened = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield opened
    opened.close()


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


def service(store: ReservationStore, sent: Recorder, nodes: int = 4, limits: Limits | None = None) -> Reservations:
    """The service over ``nodes`` lockers of 8 compartments at centre (and one at north)."""
    fleet = Fleet()
    for i in range(nodes):
        locker(fleet, f"c{i}", "centre")
    locker(fleet, "n0", "north")
    return Reservations(
        store,
        fleet,
        SITES,
        Commands(sent, lambda: NOW),
        metrics=Metrics(lambda: {}),
        secret=b"s" * 32,
        clock=lambda: NOW,
        limits=limits,
    )


def request(parcel: str, *, ahead: timedelta = timedelta(minutes=10), **extra: Any) -> ReservationRequest:
    arrival = datetime.fromtimestamp(NOW, UTC) + ahead
    return ReservationRequest.model_validate(
        {"site": "centre", "size": "S", "parcel_ref": parcel, "expected_arrival": arrival} | extra
    )


def key(partner: str = "parcelco", **grants: Any) -> ApiKey:
    return ApiKey(f"key-{partner}", partner, frozenset({"centre", "north"}), **grants)


def test_a_priority_the_key_was_not_granted_is_refused_before_anything_is_decided(
    store: ReservationStore, sent: Recorder
) -> None:
    reservations = service(store, sent)
    with pytest.raises(NotAllowedError, match=r"may not request priority 2 \(perishable\); it may use: 0"):
        reservations.create(key(), "k1", request("P1", priority=2))
    assert store.active() == [] and sent.sent == [] and store.recall("parcelco", "k1") is None
    granted = reservations.create(key(priorities=frozenset({0, 2})), "k1", request("P1", priority=2))
    assert granted.status_code == 201 and len(sent.sent) == 1


def test_a_self_declared_high_priority_no_longer_takes_the_compartments_kept_back(
    store: ReservationStore, sent: Recorder
) -> None:
    reservations = service(store, sent, nodes=1, limits=Limits(site_quota_share=1.0))
    answers = [reservations.create(key(), f"k{i}", request(f"P{i}")).status_code for i in range(8)]
    assert answers == [201] * 6 + [409] * 2  # two of eight kept back for higher priorities
    with pytest.raises(NotAllowedError):
        reservations.create(key(), "k-high", request("P-high", priority=2))
    assert len(store.active("centre")) == 6


def test_an_arrival_beyond_the_hold_window_gets_422_and_holds_nothing(store: ReservationStore, sent: Recorder) -> None:
    reservations = service(store, sent)
    far = reservations.create(key(), "far", request("P1", ahead=timedelta(days=89)))
    assert far.status_code == 422
    assert "more than 48 h ahead" in far.body["detail"] and "request again from" in far.body["detail"]
    assert store.active() == [] and sent.sent == []
    assert store.recall("parcelco", "far") is None  # invalid input, not a decision: a later retry is decided anew
    near = reservations.create(key(), "near", request("P2", ahead=timedelta(hours=47)))
    assert near.status_code == 201
    [held] = store.active()
    assert held.hold_until == datetime.fromtimestamp(NOW, UTC) + timedelta(hours=47, minutes=30)


def test_the_hold_window_is_configurable(store: ReservationStore, sent: Recorder) -> None:
    reservations = service(store, sent, limits=Limits(hold_lead_max=timedelta(hours=6)))
    assert reservations.create(key(), "a", request("P1", ahead=timedelta(hours=7))).status_code == 422
    assert reservations.create(key(), "b", request("P2", ahead=timedelta(hours=5))).status_code == 201


def test_the_probe_33_requests_take_half_the_site_and_leave_the_rest_to_others(
    store: ReservationStore, sent: Recorder
) -> None:
    reservations = service(store, sent)  # 32 compartments at centre
    answers = [reservations.create(key(), f"k{i}", request(f"P{i}")) for i in range(33)]
    assert [a.status_code for a in answers] == [201] * 16 + [409] * 17
    assert answers[16].body["quota"] == 16 and "quota is 16 per site" in answers[16].body["detail"]
    assert len(store.active("centre")) == 16 and len(sent.sent) == 16
    other = reservations.create(key("otherco"), "o1", request("O1"))
    assert other.status_code == 201  # another partner still finds room
    assert reservations.create(key(), "n1", request("N1", site="north")).status_code == 201  # quotas are per site


def test_a_deposit_or_a_cancellation_frees_a_quota_slot_and_waitlisted_requests_count(
    store: ReservationStore, sent: Recorder
) -> None:
    reservations = service(store, sent, nodes=1, limits=Limits(site_quota_share=1.0))
    small = key(quota_per_site=3)
    first = reservations.create(small, "a", request("A"))
    second = reservations.create(small, "b", request("B"))
    waiting = reservations.create(key("otherco"), "x", request("X"))  # fill the rest: 6 usable of 8
    assert [first.status_code, second.status_code, waiting.status_code] == [201, 201, 201]
    for i in range(3):
        assert reservations.create(key("otherco"), f"y{i}", request(f"Y{i}")).status_code == 201
    queued = reservations.create(small, "c", request("C", wait_s=600))
    assert queued.status_code == 202  # nothing free: the third of three waits
    over = reservations.create(small, "d", request("D", wait_s=600))
    assert over.status_code == 409 and over.body["holding"] == 3
    store.set_state(first.body["reservation_id"], ReservationState.DEPOSITED, datetime.fromtimestamp(NOW, UTC))
    assert store.holding("parcelco", "centre") == 2  # a deposited parcel no longer counts
    assert reservations.create(small, "e", request("E", wait_s=600)).status_code == 202
    assert reservations.create(small, "f", request("F", wait_s=600)).status_code == 409


def test_racing_requests_of_one_partner_never_exceed_its_quota(store: ReservationStore, sent: Recorder) -> None:
    reservations = service(store, sent)
    limited = key(quota_per_site=5)

    def reserve(i: int) -> int:
        return reservations.create(limited, f"race-{i}", request(f"R{i}")).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(reserve, range(60)))
    assert sorted(answers) == [201] * 5 + [409] * 55
    assert store.holding("parcelco", "centre") == 5 and len(sent.sent) == 5
