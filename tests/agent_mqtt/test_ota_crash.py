"""kill -9 of a real agent process in the middle of an update: it resumes where it was (the download from the bytes
on disk, the installed slot still waiting for an idle locker) and never starts a slot that is not complete."""

import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.board import shipped_profile
from node_agent.ota.download import SYNC_EVERY
from node_agent.ota.shims import SimShim
from node_agent.ota.state import Phase
from node_agent.ota.store import StateFile
from schemas import CancelCommand, Channel, OtaEvent, OtaState, ReserveCommand, topic
from tests.agent_mqtt.helpers import births, send_command, wait_online
from tests.agent_mqtt.ota_helpers import (
    START_VERSION,
    ArtifactServer,
    final_event,
    ota_events,
    provision,
    update_command,
)
from tests.harness.mqtt import Capture, Delivered

pytestmark = pytest.mark.integration

NODE = "node-k9"
PROFILE = shipped_profile("sim-locker-8")
BLOB = random.Random(9).randbytes(3 * SYNC_EVERY)
"""Three durable steps of the download: a kill after the first leaves bytes to resume from."""


@pytest.fixture
def artifacts(tmp_path: Path) -> Iterator[ArtifactServer]:
    server = ArtifactServer(tmp_path / "releases", chunk_delay_s=0.01).start()  # ~2 s for the whole artifact
    yield server
    server.stop()


def start(mosquitto: Mosquitto, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """The agent as a locker runs it (``lockerfleet-agent agent``), on the sim shim and the shipped sim board."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from node_agent.cli import main; raise SystemExit(main())",
            "agent",
            f"--node-id={NODE}",
            f"--mqtt-url={mosquitto.url}",
            f"--data-dir={data_dir}",
            f"--board-profile={PROFILE}",
            "--ota-shim=sim",
            f"--firmware-version={START_VERSION}",
            "--ota-gate-poll-s=0.1",
            "--reconnect-max-s=1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def kill_9(process: subprocess.Popen[bytes]) -> None:
    process.kill()  # SIGKILL: nothing is flushed, nothing cleaned up
    process.wait(10)


def seen(ds: list[Delivered], boot_id: int, state: OtaState, reason: str | None = None) -> list[OtaEvent]:
    return [e for e in ota_events(ds) if e.boot_id == boot_id and e.state is state and e.reason == reason]


def assert_runs_complete_slot(shim: SimShim, version: str) -> None:
    current = shim.current()
    assert current == version and shim.complete(current), f"the next start would run {current}, not complete {version}"


def test_kill_9_mid_download_and_while_staged_resumes_and_never_starts_a_half_installed_slot(
    mosquitto: Mosquitto, artifacts: ArtifactServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / NODE
    log = tmp_path / "agent.log"
    shim = provision(data_dir)
    state = StateFile(data_dir / "ota.json")
    release = artifacts.publish("1.1.0", "sim-locker-8", {"VERSION": b"1.1.0", "blob.bin": BLOB})
    total = release.manifest.size
    events = Capture(mosquitto.url, topic(NODE, Channel.EVENT))
    status = Capture(mosquitto.url, topic(NODE, Channel.STATUS))
    now = datetime.now(UTC)

    agent = start(mosquitto, data_dir, log)
    try:
        wait_online(status, NODE, boot_id=1)
        send_command(mosquitto, update_command(NODE, release, (artifacts.url("1.1.0"),)))
        halfway = events.wait_until(
            lambda ds: any((e.bytes_done or 0) > SYNC_EVERY for e in seen(ds, 1, OtaState.DOWNLOADING)), timeout_s=20
        )
        assert halfway
    finally:
        kill_9(agent)
    assert state.load().phase is Phase.DOWNLOADING
    assert_runs_complete_slot(shim, START_VERSION)

    # Queued in the node's session: the restarted agent holds a compartment for a courier due now.
    send_command(mosquitto, reserve(now))
    agent = start(mosquitto, data_dir, log)
    try:
        staged = events.wait_until(lambda ds: bool(seen(ds, 2, OtaState.DEFERRED, "reservation_due")), timeout_s=20)
        assert staged
    finally:
        kill_9(agent)
    assert [r for r in artifacts.ranges if r is not None and r != "bytes=0-"], "the second start resumed the download"
    assert state.load().phase is Phase.STAGED
    assert shim.complete("1.1.0") and shim.trial() is None
    assert_runs_complete_slot(shim, START_VERSION)

    send_command(mosquitto, cancel(now))  # the courier's reservation is withdrawn: the locker is idle
    agent = start(mosquitto, data_dir, log)
    try:
        done = events.wait_until(lambda ds: final_event(ds) is not None, timeout_s=30)
        wait_online(status, NODE, boot_id=4)
    finally:
        agent.terminate()
        agent.wait(10)
    final = final_event(done)
    assert final is not None and (final.state, final.boot_id) == (OtaState.SUCCEEDED, 4)
    downloaded = [e.bytes_done for e in ota_events(done) if e.state is OtaState.DOWNLOADING]
    assert downloaded[-1] == total
    versions = [(b.boot_id, b.firmware_version) for b in births(status.snapshot(), NODE)]
    assert sorted(set(versions)) == [(1, "1.0.0"), (2, "1.0.0"), (3, "1.0.0"), (4, "1.1.0")]
    assert_runs_complete_slot(shim, "1.1.0")
    assert (shim.previous(), shim.trial()) == (START_VERSION, None)
    assert state.load().phase is Phase.IDLE
    events.close()
    status.close()


def reserve(now: datetime) -> ReserveCommand:
    return ReserveCommand(
        command_id="res-cmd",
        node_id=NODE,
        issued_at=now,
        expires_at=now + timedelta(minutes=10),
        reservation_id="res-1",
        compartment="A2",
        opens_at=now,
        hold_until=now + timedelta(minutes=30),
        pickup_until=now + timedelta(days=1),
    )


def cancel(now: datetime) -> CancelCommand:
    return CancelCommand(
        command_id="cancel-cmd",
        node_id=NODE,
        issued_at=now,
        expires_at=now + timedelta(minutes=10),
        reservation_id="res-1",
    )
