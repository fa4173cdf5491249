"""A rollout to 200 simulated lockers (real agents, real mosquitto, the controller's runner and API): the canary's
trial starts fail, it rolls back, and the rollout stops on that report without sending another update command."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.devstack.services import Mosquitto
from controller.releases import publish
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, OtaEvent, OtaState, decode
from tests.agent.ota.releases import TRUSTED, artifact, signed
from tests.controller.rollouts.lockers import Lockers
from tests.harness.controller_runner import ControllerFactory
from tests.harness.mqtt import Capture, wait_until

pytestmark = pytest.mark.integration

NODES = 200
RELEASE = "1.1.0"


def publish_release(releases: Path, hardware_model: str) -> None:
    """Sign ``RELEASE`` with the test release key (the nodes pin it) and publish it for the controller to serve."""
    data = artifact(RELEASE)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    upload = releases.parent / "upload.tar.gz"
    upload.write_bytes(data)
    publish(signed(RELEASE, data, hardware=hardware_model, expires=expires), upload, releases)


def ota_events(capture: Capture) -> list[OtaEvent]:
    events = [decode(Channel.EVENT, d.payload) for d in capture.snapshot()]
    return [e for e in events if isinstance(e, OtaEvent)]


def test_a_failing_canary_in_a_200_node_simulated_fleet_stops_the_rollout_and_no_other_node_starts(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    releases = tmp_path / "releases"
    publish_release(releases, "sim-locker-8")
    keys = tmp_path / "trusted_keys.json"
    keys.write_text(TRUSTED.model_dump_json())
    controller = start_controller(releases_dir=releases, rollout_tick_s=0.1)
    lockers = Lockers(mosquitto.url)  # captures every command the controller sends
    events = Capture(mosquitto.url, "lockers/v1/+/event")
    sim = SimSettings(
        nodes=NODES,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=60,
        ramp_s=1,
        jam_share=0,
        sites=[f"site-{i}" for i in range(20)],
        trusted_keys_file=keys,
        ota_fail_share=1.0,  # every node's trial start fails, so whichever is the canary fails
    )
    with background_fleet(sim) as fleet:
        assert wait_until(lambda: fleet.online == NODES, 60), f"{fleet.online} of {NODES} nodes online"
        nodes_online = {"state": "online"}
        assert wait_until(lambda: len(controller.http.get("/v1/nodes", params=nodes_online).json()) == NODES, 30)
        policy = {"max_dispatch_per_minute": 100_000, "max_updating_per_site": 10}
        created = controller.http.post("/v1/rollouts", json={"release_version": RELEASE, "policy": policy})
        assert created.status_code == 201, created.text
        rid = created.json()["rollout_id"]

        def view() -> dict[str, Any]:
            got: dict[str, Any] = controller.http.get(f"/v1/rollouts/{rid}").json()
            return got

        assert wait_until(lambda: view()["phase"] == "aborted", 45), view()
        for _ in range(3):
            controller.controller.rollouts.tick()
        sent = lockers.settled(controller.controller.command_link.publish)
        canary = sent[0].node_id
        canary_slot = fleet.agents[int(canary.rsplit("-", 1)[1])].updates.shim.current()
    final = view()
    assert [u.node_id for u in sent] == [canary], "only the canary was ever sent an update"
    assert final["totals"]["rolled_back"] == 1 and final["totals"]["cancelled"] == NODES - 1
    assert "canary" in final["abort_reason"]
    assert canary_slot == "1.0.0"
    reported = [e for e in ota_events(events) if e.node_id == canary]
    rolled_back = [e for e in reported if e.state is OtaState.ROLLED_BACK]
    assert [(e.reason, e.command_id) for e in rolled_back][:1] == [("health_check_failed", sent[0].command_id)]
    assert {e.node_id for e in ota_events(events)} == {canary}, "no other node began an update"
    # The threshold is breached by the rolled_back report; the abort is decided on that report, not a later tick.
    aborted_at = max(datetime.fromisoformat(h["at"]) for h in final["history"] if h["event"] == "abort")
    assert aborted_at - rolled_back[0].ts <= timedelta(seconds=1)
    events.close()
    lockers.close()
