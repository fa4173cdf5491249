"""The rollout runner in a live controller: crafted lockers over a real mosquitto, the API, the store, InfluxDB."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.devstack.services import Mosquitto
from schemas import CommandStatus, OtaState
from tests.controller.rollouts.lockers import RELEASE, Lockers, published_release
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def lockers(mosquitto: Mosquitto) -> Iterator[Lockers]:
    made = Lockers(mosquitto.url)
    yield made
    made.close()


def started(start_controller: ControllerFactory, tmp_path: Path, **settings: Any) -> ControllerThread:
    releases = tmp_path / "releases"
    if not releases.exists():
        published_release(tmp_path)
    return start_controller(releases_dir=releases, rollout_tick_s=0.1, **settings)


def fleet(controller: ControllerThread, lockers: Lockers, nodes: dict[str, str]) -> None:
    for node_id, site in nodes.items():
        lockers.born(node_id, site)
    assert wait_until(
        lambda: len(controller.http.get("/v1/nodes", params={"state": "online"}).json()) == len(nodes), 10
    )


def create(controller: ControllerThread, **policy: Any) -> dict[str, Any]:
    response = controller.http.post("/v1/rollouts", json={"release_version": RELEASE, "policy": policy})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def rollout(controller: ControllerThread, rollout_id: str) -> dict[str, Any]:
    got: dict[str, Any] = controller.http.get(f"/v1/rollouts/{rollout_id}").json()
    return got


def settle(controller: ControllerThread, lockers: Lockers) -> int:
    """Step the rollouts a few times, then count every update command the controller has published."""
    for _ in range(3):
        controller.controller.rollouts.tick()
    return len(lockers.settled(controller.controller.command_link.publish))


def test_a_failed_canary_aborts_and_no_other_node_is_sent_an_update(
    start_controller: ControllerFactory, lockers: Lockers, influx: InfluxClient, tmp_path: Path
) -> None:
    controller = started(start_controller, tmp_path)
    fleet(controller, lockers, {"n1": "centre", "n2": "centre", "n3": "north", "n4": "north"})
    created = create(controller)
    assert [w["size"] for w in created["waves"]] == [1, 2, 1]
    (canary,) = lockers.wait_for_updates(1)
    assert canary.release is not None and str(canary.release.manifest.version) == RELEASE
    assert canary.signature is not None and canary.rollout_id == created["rollout_id"]
    url = canary.artifact_urls[-1]
    assert url == f"{controller.url}/v1/releases/{RELEASE}/artifact"
    resumed = httpx.get(url, headers={"Range": "bytes=100-"})  # no key: nodes hold none
    assert resumed.status_code == 206 and len(resumed.content) == 256 * 64 - 100

    lockers.report(canary, OtaState.DOWNLOADING)
    lockers.report(canary, OtaState.FAILED, "install_failed")
    rid = created["rollout_id"]
    assert wait_until(lambda: rollout(controller, rid)["phase"] == "aborted", 10)
    assert settle(controller, lockers) == 1
    view = rollout(controller, rid)
    assert view["totals"]["failed"] == 1 and view["totals"]["cancelled"] == 3
    assert "canary" in view["abort_reason"]
    assert wait_until(lambda: influx.count("ota", "command_id") == 2, 10)
    failed = influx.query('SELECT count("command_id") FROM "ota" WHERE "state" = \'failed\' GROUP BY "reason"')
    assert [(row["reason"], row["count"]) for row in failed] == [("install_failed", 1)]
    last_phase = f'SELECT last("phase") FROM "rollout" WHERE "rollout" = \'{rid}\''  # noqa: S608
    # ota points come through the control spool, rollout points through the write pipeline: either may land first
    assert wait_until(lambda: [row["last"] for row in influx.query(last_phase)] == ["aborted"], 10)


def test_a_canary_refusing_its_command_counts_as_failed(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    controller = started(start_controller, tmp_path)
    fleet(controller, lockers, {"n1": "a", "n2": "b"})
    rid = create(controller)["rollout_id"]
    (canary,) = lockers.wait_for_updates(1)
    lockers.answer(canary, CommandStatus.REJECTED, "update: no valid signature of the pinned controller key")
    assert wait_until(lambda: rollout(controller, rid)["phase"] == "aborted", 10)
    failed = controller.http.get(f"/v1/rollouts/{rid}/nodes", params={"state": "failed"}).json()
    assert [(n["node_id"], n["reason"]) for n in failed] == [(canary.node_id, "command_rejected")]
    assert settle(controller, lockers) == 1


def test_pause_holds_the_next_wave_until_resume(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    controller = started(start_controller, tmp_path)
    fleet(controller, lockers, {"n1": "a", "n2": "b", "n3": "c"})
    rid = create(controller)["rollout_id"]
    (canary,) = lockers.wait_for_updates(1)
    assert controller.http.post(f"/v1/rollouts/{rid}/pause").json()["phase"] == "paused"
    assert controller.http.post(f"/v1/rollouts/{rid}/pause").status_code == 409
    for state in (OtaState.DOWNLOADING, OtaState.INSTALLING, OtaState.RESTARTING, OtaState.TESTING):
        lockers.report(canary, state)
    lockers.report(canary, OtaState.SUCCEEDED)
    assert wait_until(lambda: rollout(controller, rid)["current_wave"] == 1, 10)
    assert settle(controller, lockers) == 1  # paused: the next wave waits

    assert controller.http.post(f"/v1/rollouts/{rid}/resume").json()["phase"] == "running"
    updates = lockers.wait_for_updates(3)
    assert {u.node_id for u in updates[1:]} == {"n1", "n2", "n3"} - {canary.node_id}
    for update in updates[1:]:
        lockers.report(update, OtaState.SUCCEEDED)
    assert wait_until(lambda: rollout(controller, rid)["phase"] == "completed", 10)
    assert rollout(controller, rid)["totals"]["succeeded"] == 3


def test_rollback_sends_every_updated_node_back(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    controller = started(start_controller, tmp_path)
    fleet(controller, lockers, {"n1": "a", "n2": "b"})
    rid = create(controller)["rollout_id"]
    (canary,) = lockers.wait_for_updates(1)
    lockers.report(canary, OtaState.SUCCEEDED)
    (_, second) = lockers.wait_for_updates(2)
    lockers.report(second, OtaState.DOWNLOADING)

    assert controller.http.post(f"/v1/rollouts/{rid}/rollback").json()["phase"] == "rolled_back"
    updates = lockers.wait_for_updates(3)
    back = updates[2]
    assert back.rollback and back.node_id == canary.node_id and back.release is None
    assert settle(controller, lockers) == 3  # the node still downloading is not sent back
    lockers.report(back, OtaState.ROLLED_BACK, "requested")
    assert wait_until(lambda: rollout(controller, rid)["totals"]["rolled_back"] == 1, 10)
    assert controller.http.post(f"/v1/rollouts/{rid}/rollback").status_code == 409


def test_a_restarted_controller_resumes_the_rollout_from_the_store(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    first = started(start_controller, tmp_path)
    fleet(first, lockers, {"n1": "a", "n2": "b"})
    rid = create(first)["rollout_id"]
    (canary,) = lockers.wait_for_updates(1)
    lockers.report(canary, OtaState.DOWNLOADING)
    assert wait_until(lambda: rollout(first, rid)["totals"]["downloading"] == 1, 10)
    first.stop()

    second = started(start_controller, tmp_path)
    assert rollout(second, rid)["totals"]["downloading"] == 1
    for state in (OtaState.RESTARTING, OtaState.TESTING, OtaState.SUCCEEDED):  # of the first controller's command
        lockers.report(canary, state)
    updates = lockers.wait_for_updates(2)
    assert updates[1].node_id != canary.node_id and updates[1].rollout_id == rid
    lockers.report(updates[1], OtaState.SUCCEEDED)
    assert wait_until(lambda: rollout(second, rid)["phase"] == "completed", 10)


def test_a_node_updating_gets_no_new_reservation(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps([{"site_id": "centre", "lat": 52.52, "lon": 13.405}]))
    controller = started(start_controller, tmp_path, sites_file=sites)
    fleet(controller, lockers, {"n1": "centre"})
    key = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    body = {"site": "centre", "size": "S", "parcel_ref": "P1", "expected_arrival": arrival}

    def reserve(idempotency_key: str) -> int:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
        return controller.http.post("/v1/reservations", json=body, headers=headers).status_code

    rid = create(controller)["rollout_id"]
    (update,) = lockers.wait_for_updates(1)
    assert controller.controller.rollouts.updating.nodes == {"n1"}
    assert reserve("while-updating") == 409
    lockers.report(update, OtaState.SUCCEEDED)
    assert wait_until(lambda: rollout(controller, rid)["phase"] == "completed", 10)
    assert reserve("after-update") == 201


def test_rollouts_need_an_operator_key_and_a_published_release(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    controller = started(start_controller, tmp_path)
    fleet(controller, lockers, {"n1": "a"})
    assert httpx.get(f"{controller.url}/v1/rollouts").status_code == 401
    assert httpx.get(f"{controller.url}/v1/releases").status_code == 401
    missing = controller.http.post("/v1/rollouts", json={"release_version": "9.9.9"})
    assert missing.status_code == 404 and "not published" in missing.json()["detail"]
    nobody = controller.http.post("/v1/rollouts", json={"release_version": RELEASE, "target": {"sites": ["x"]}})
    assert nobody.status_code == 422
    assert controller.http.get("/v1/rollouts/ro-nope").status_code == 404
    assert controller.http.get("/v1/rollouts").json() == []
    assert settle(controller, lockers) == 0


def test_an_abort_withdraws_every_update_in_flight_with_a_signed_cancel(
    start_controller: ControllerFactory, lockers: Lockers, tmp_path: Path
) -> None:
    controller = started(start_controller, tmp_path)
    fleet(controller, lockers, {"n1": "a", "n2": "b", "n3": "c", "n4": "d"})
    rid = create(controller)["rollout_id"]
    (canary,) = lockers.wait_for_updates(1)
    lockers.report(canary, OtaState.SUCCEEDED)
    wave = lockers.wait_for_updates(3)[1:]  # the canary succeeded: a wave of two goes out, one node stays queued
    in_flight = {u.node_id: u.command_id for u in wave}
    lockers.report(wave[0], OtaState.DOWNLOADING)
    assert controller.http.post(f"/v1/rollouts/{rid}/abort").json()["phase"] == "aborted"
    assert wait_until(lambda: len(lockers.cancels()) == len(in_flight), 10), lockers.cancels()
    cancels = lockers.cancels()
    assert {c.node_id: c.update_command_id for c in cancels} == in_flight
    assert all(c.rollout_id == rid and c.signature is not None for c in cancels)
    assert canary.node_id not in {c.node_id for c in cancels}  # it finished: nothing to withdraw
    assert settle(controller, lockers) == 3  # and the queued node was never sent an update
