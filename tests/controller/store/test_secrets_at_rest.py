"""Secrets at rest in the controller's store: the SQLite files are the owner's alone, and no code is ever stored.

Whoever reads the files must not get what opens a locker: the files (with SQLite's ``-wal`` and ``-shm``) are 0600
whatever the umask, and the idempotent answers keep no deposit or pickup code (a replay derives them again).
"""

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.commands.service import Commands
from controller.fleet.registry import Fleet, NodeRecord
from controller.metrics import Metrics
from controller.notify.webhooks import WebhookSender
from controller.reservations.contention import Policy, Site
from controller.reservations.service import ReservationRequest, Reservations
from controller.store.reservations import ReservationStore
from schemas import CompartmentSize, LedgerEvent, LedgerTransition
from tests import samples
from tests.harness.webhook_receiver import WebhookReceiver


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask 022, under which a plain create gives 0644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


class Recorder:
    """Keeps what would have been published to the nodes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, float]] = []

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        self.sent.append((topic, payload, expiry_s))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw_bytes(database: Path) -> bytes:
    """Everything SQLite keeps of ``database`` on disk: the file and its companions."""
    files = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal"))]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_the_store_files_are_created_0600_in_0700_directories_whatever_the_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    database = tmp_path / "new" / "dir" / "store.sqlite3"
    store = ReservationStore(f"sqlite:///{database}")
    try:
        store.code_secret()  # a write: SQLite now has its -wal and -shm
        wal, shm = database.with_name("store.sqlite3-wal"), database.with_name("store.sqlite3-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: mode(p) for p in (database, wal, shm)} == {p.name: 0o600 for p in (database, wal, shm)}
        assert (mode(tmp_path / "new"), mode(tmp_path / "new" / "dir")) == (0o700, 0o700)
    finally:
        store.close()


def test_a_store_file_open_to_others_is_named_at_start_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "store.sqlite3"
    ReservationStore(f"sqlite:///{database}").close()
    database.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        ReservationStore(f"sqlite:///{database}").close()
    assert f"action=chmod 600 {database}" in caplog.text
    assert mode(database) == 0o644  # the operator's file: named, not changed behind their back


def test_a_private_store_file_raises_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "store.sqlite3"
    ReservationStore(f"sqlite:///{database}").close()
    with caplog.at_level(logging.WARNING):
        ReservationStore(f"sqlite:///{database}").close()
    assert "chmod" not in caplog.text


@pytest.fixture
def reservations(tmp_path: Path) -> Iterator[Reservations]:
    store = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    birth = samples.birth().model_copy(update={"site": "centre"})
    fleet = Fleet([NodeRecord(birth, 3, 0, True, time.time())])
    service = Reservations(
        store,
        fleet,
        {"centre": Site("centre", 52.52, 13.40)},
        Commands(Recorder(), time.time),
        metrics=Metrics(lambda: fleet.counts(time.time())),
        secret=store.code_secret(),
        clock=time.time,
        policy=Policy(battery_floor_pct=0, kept_back={}),  # no telemetry here: any online compartment will do
    )
    yield service
    store.close()


def grant(reservations: Reservations) -> dict[str, Any]:
    """A reservation granted through the service, as its first answer."""
    request = ReservationRequest(
        site="centre",
        size=CompartmentSize.S,
        parcel_ref="PARCEL-1",
        expected_arrival=datetime.now(UTC) + timedelta(minutes=10),
    )
    key = reservations.store.authenticate(reservations.store.create_api_key("parcelco", {"centre"}, datetime.now(UTC)))
    assert key is not None
    granted = reservations.create(key, "idem-1", request)
    assert granted.status_code == 201, granted.body
    assert granted.body["deposit_code"]
    assert reservations.create(key, "idem-1", request) == granted  # a replay answers the same, codes included
    return granted.body


def test_a_granted_reservation_leaves_no_code_in_the_store_files(reservations: Reservations, tmp_path: Path) -> None:
    granted = grant(reservations)
    on_disk = raw_bytes(tmp_path / "store.sqlite3")
    assert granted["reservation_id"].encode() in on_disk  # the search does find what is stored
    assert granted["deposit_code"].encode() not in on_disk


def test_a_queued_webhook_keeps_no_code_and_delivers_it(reservations: Reservations, tmp_path: Path) -> None:
    granted = grant(reservations)
    receiver = WebhookReceiver()
    reservations.store.set_webhook("parcelco", receiver.url)
    held = LedgerEvent(
        node_id="node-1",
        boot_id=3,
        seq=1,
        ts=datetime.now(UTC),
        compartment=granted["compartment"],
        transition=LedgerTransition.HELD,
        reservation_id=granted["reservation_id"],
        via="command",
    )
    reservations.on_ledger_event(held)  # queues reservation.held, which carries the deposit code
    assert granted["deposit_code"].encode() not in raw_bytes(tmp_path / "store.sqlite3")
    sender = WebhookSender(
        reservations.store,
        reservations.metrics,
        clock=time.time,
        allow_private=True,
        complete=reservations.event_with_codes,
    )
    try:
        assert sender.deliver_due() == 1
    finally:
        sender.stop()
        receiver.close()
    [delivered] = [json.loads(r.body) for r in receiver.received]
    assert delivered["type"] == "reservation.held"
    assert delivered["reservation"]["deposit_code"] == granted["deposit_code"]
