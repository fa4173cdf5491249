"""Updates through a real mosquitto: a signed update command, the artifact from the controller's releases router,
the sim shim's slots and an in-process restart. Success is reported only after the commit, a failing trial start
rolls back, and a busy locker waits until it is idle."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.devstack.services import Mosquitto
from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from node_agent.sim.ota import INJECTED_FAILURE
from schemas import CancelCommand, CancelUpdateCommand, Channel, CommandStatus, OtaState, ReserveCommand, topic
from schemas.command_trust import sign_command
from tests.agent_mqtt.helpers import births, build_hardware, final, send_command, sim_profile, wait_online
from tests.agent_mqtt.ota_helpers import (
    START_VERSION,
    ArtifactServer,
    Published,
    compact,
    final_event,
    ota_events,
    provision,
    running,
    update_command,
)
from tests.harness.mqtt import Capture
from tests.samples import COMMAND_KEY

pytestmark = pytest.mark.integration

PROFILE = sim_profile()
NODE = "node-u"
S = OtaState


@pytest.fixture
def artifacts(tmp_path: Path) -> Iterator[ArtifactServer]:
    server = ArtifactServer(tmp_path / "releases").start()
    yield server
    server.stop()


@pytest.fixture
def captures(mosquitto: Mosquitto) -> Iterator[dict[Channel, Capture]]:
    opened = {c: Capture(mosquitto.url, topic(NODE, c)) for c in (Channel.STATUS, Channel.EVENT, Channel.RESULT)}
    yield opened
    for capture in opened.values():
        capture.close()


def settings(mosquitto: Mosquitto, tmp_path: Path, **changes: Any) -> AgentSettings:
    return AgentSettings(
        node_id=NODE,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / NODE,
        telemetry_interval_s=60.0,
        reconnect_max_s=1.0,
        ota_shim="sim",
        firmware_version=START_VERSION,
        max_starts=2,
        ota_gate_poll_s=0.1,
        **changes,
    )


def test_an_update_is_reported_succeeded_only_after_the_restarted_agent_passed_its_check_and_committed(
    mosquitto: Mosquitto, artifacts: ArtifactServer, captures: dict[Channel, Capture], tmp_path: Path
) -> None:
    shim = provision(tmp_path / NODE)
    release = artifacts.publish("1.1.0", PROFILE.hardware_model)
    config = settings(mosquitto, tmp_path)
    with running(lambda: Agent(config, build_hardware(PROFILE))) as node:
        assert wait_online(captures[Channel.STATUS], NODE).firmware_version == START_VERSION
        send_command(mosquitto, update_command(NODE, release, (artifacts.url("1.1.0"),)))
        delivered = captures[Channel.EVENT].wait_until(lambda ds: final_event(ds) is not None, timeout_s=30)
        reborn = wait_online(captures[Channel.STATUS], NODE, boot_id=2)
    events = ota_events(delivered)
    expected = [S.DOWNLOADING, S.VERIFYING, S.INSTALLING, S.RESTARTING, S.TESTING, S.SUCCEEDED]
    assert compact([e.state for e in events]) == expected
    assert {e.boot_id for e in events if e.state in {S.DOWNLOADING, S.INSTALLING, S.RESTARTING}} == {1}
    assert {e.boot_id for e in events if e.state in {S.TESTING, S.SUCCEEDED}} == {2}
    done = events[-1]
    assert (str(done.from_version), str(done.to_version)) == ("1.0.0", "1.1.0")
    assert [p for p in node.published if p.state is S.SUCCEEDED] == [Published(S.SUCCEEDED, None, "1.1.0", None)]
    trial = [p for p in node.published if p.state is S.TESTING]
    assert trial and all(p.trial == "1.1.0" for p in trial), "before the commit, the new release is on trial"
    assert reborn.firmware_version == "1.1.0"
    assert (shim.current(), shim.previous(), shim.trial()) == ("1.1.0", "1.0.0", None)
    assert (shim.slot("1.1.0") / "files" / "VERSION").read_text() == "1.1.0"
    # At least once: a result in flight when the agent restarts is sent again by the next boot (same boot id and
    # seq, which the controller deduplicates); one answer, whatever the copies.
    answers = {(r.boot_id, r.seq): r for r in final(captures[Channel.RESULT].snapshot(), "up-1")}
    [answer] = answers.values()
    assert answer.status is CommandStatus.DONE


def test_a_release_whose_trial_starts_fail_is_rolled_back_and_reported_so_from_the_previous_slot(
    mosquitto: Mosquitto, artifacts: ArtifactServer, captures: dict[Channel, Capture], tmp_path: Path
) -> None:
    shim = provision(tmp_path / NODE)
    release = artifacts.publish("1.1.0", PROFILE.hardware_model)
    config = settings(mosquitto, tmp_path)
    build = lambda: Agent(config, build_hardware(PROFILE), health_checks=(INJECTED_FAILURE,))  # noqa: E731
    with running(build) as node:
        wait_online(captures[Channel.STATUS], NODE)
        send_command(mosquitto, update_command(NODE, release, (artifacts.url("1.1.0"),)))
        delivered = captures[Channel.EVENT].wait_until(lambda ds: final_event(ds) is not None, timeout_s=30)
        wait_online(captures[Channel.STATUS], NODE, boot_id=4)
    events = ota_events(delivered)
    assert compact([e.state for e in events]) == [
        S.DOWNLOADING, S.VERIFYING, S.INSTALLING, S.RESTARTING, S.TESTING, S.RESTARTING, S.TESTING, S.ROLLED_BACK
    ]  # fmt: skip
    rolled_back = events[-1]
    assert (rolled_back.reason, rolled_back.boot_id) == ("health_check_failed", 4)
    assert "--ota-fail" in (rolled_back.detail or "")
    assert [p for p in node.published if p.state is S.ROLLED_BACK] == [
        Published(S.ROLLED_BACK, "health_check_failed", "1.0.0", None)
    ]
    versions = [b.firmware_version for b in births(captures[Channel.STATUS].snapshot(), NODE)]
    assert versions == ["1.0.0", "1.1.0", "1.1.0", "1.0.0"]
    assert (shim.current(), shim.trial()) == ("1.0.0", None)
    assert sorted(p.name for p in shim.releases.iterdir()) == ["1.0.0"]


def test_a_busy_locker_defers_the_update_until_no_door_is_open_and_no_reservation_is_due(
    mosquitto: Mosquitto, artifacts: ArtifactServer, captures: dict[Channel, Capture], tmp_path: Path
) -> None:
    provision(tmp_path / NODE)
    release = artifacts.publish("1.1.0", PROFILE.hardware_model)
    config = settings(mosquitto, tmp_path)
    first = build_hardware(PROFILE)
    door = first.pin_factory.pin(PROFILE.compartments[0].door_pin)
    hardware = iter([first])
    events = captures[Channel.EVENT]

    def deferred_for(reason: str) -> None:
        events.wait_until(lambda ds: any(e.reason == reason for e in ota_events(ds)), timeout_s=10)

    with running(lambda: Agent(config, next(hardware, None) or build_hardware(PROFILE))):
        wait_online(captures[Channel.STATUS], NODE)
        door.drive_high()  # a courier has the door open
        send_command(mosquitto, update_command(NODE, release, (artifacts.url("1.1.0"),)))
        deferred_for("door_open")
        now = datetime.now(UTC)
        send_command(mosquitto, reserve(now))
        captures[Channel.RESULT].wait_until(lambda ds: bool(final(ds, "res-cmd")))
        door.drive_low()
        deferred_for("reservation_due")
        assert artifacts.ranges == [], "nothing is downloaded while the locker is busy"
        cancel = CancelCommand(
            command_id="cancel-cmd",
            node_id=NODE,
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
            reservation_id="res-1",
        )
        send_command(mosquitto, cancel)
        delivered = events.wait_until(lambda ds: final_event(ds) is not None, timeout_s=30)
    steps = compact([(e.state, e.reason) for e in ota_events(delivered)])
    assert steps[:3] == [(S.DEFERRED, "door_open"), (S.DEFERRED, "reservation_due"), (S.DOWNLOADING, None)]
    assert steps[-1] == (S.SUCCEEDED, None)


def reserve(now: datetime) -> ReserveCommand:
    """A hold on the second compartment whose deposit window is open now."""
    return ReserveCommand(
        command_id="res-cmd",
        node_id=NODE,
        issued_at=now,
        expires_at=now + timedelta(minutes=5),
        reservation_id="res-1",
        compartment=PROFILE.compartments[1].id,
        opens_at=now,
        hold_until=now + timedelta(minutes=30),
        pickup_until=now + timedelta(days=1),
    )


def test_a_cancel_of_an_update_still_waiting_for_an_idle_locker_ends_it_cancelled_and_nothing_is_installed(
    mosquitto: Mosquitto, artifacts: ArtifactServer, captures: dict[Channel, Capture], tmp_path: Path
) -> None:
    shim = provision(tmp_path / NODE)
    release = artifacts.publish("1.1.0", PROFILE.hardware_model)
    hardware = build_hardware(PROFILE)
    door = hardware.pin_factory.pin(PROFILE.compartments[0].door_pin)
    events = captures[Channel.EVENT]
    with running(lambda: Agent(settings(mosquitto, tmp_path), hardware)):
        wait_online(captures[Channel.STATUS], NODE)
        door.drive_high()  # busy: the update waits
        send_command(mosquitto, update_command(NODE, release, (artifacts.url("1.1.0"),)))
        events.wait_until(lambda ds: any(e.state is S.DEFERRED for e in ota_events(ds)), timeout_s=10)
        now = datetime.now(UTC)
        cancel = CancelUpdateCommand(
            command_id="cancel-up-1",
            node_id=NODE,
            issued_at=now - timedelta(seconds=1),
            expires_at=now + timedelta(minutes=5),
            rollout_id="ro-1",
            update_command_id="up-1",
        )
        send_command(mosquitto, sign_command(cancel, COMMAND_KEY))
        delivered = events.wait_until(lambda ds: final_event(ds) is not None, timeout_s=10)
        door.drive_low()
        results = captures[Channel.RESULT].wait_until(lambda ds: bool(final(ds, "cancel-up-1")))
    last = final_event(delivered)
    assert last is not None and last.state is S.CANCELLED
    assert {(r.boot_id, r.seq): r.status for r in final(results, "cancel-up-1")}.popitem()[1] is CommandStatus.DONE
    assert len({(r.boot_id, r.seq) for r in final(results, "cancel-up-1")}) == 1  # copies of one answer at most
    assert artifacts.ranges == [] and shim.current() == START_VERSION  # nothing downloaded or installed
