"""The fleet simulator: real agents on physics-driven mock pins, each with its own connection to mosquitto."""

from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, CommandStatus, DoorResult, Telemetry, decode
from tests.agent_mqtt.helpers import births, door_events, final, send_open
from tests.harness.mqtt import Capture, wait_until

pytestmark = pytest.mark.integration


def fleet_settings(mosquitto: Mosquitto, tmp_path: Path, **changes: object) -> SimSettings:
    return SimSettings(
        nodes=3,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "sim",
        telemetry_interval_s=0.2,
        ramp_s=0.1,
        door_dwell_s=0.3,
        **changes,  # type: ignore[arg-type]
    )


def test_every_simulated_node_connects_and_reports(mosquitto: Mosquitto, tmp_path: Path) -> None:
    capture = Capture(mosquitto.url, "lockers/v1/#")
    with background_fleet(fleet_settings(mosquitto, tmp_path)) as fleet:
        assert wait_until(lambda: fleet.online == 3, 10)
        delivered = capture.wait_until(
            lambda ds: len({d.topic for d in ds if d.topic.endswith("/telemetry")}) == 3, timeout_s=10
        )
    nodes = {b.node_id for node in ("sim-0000", "sim-0001", "sim-0002") for b in births(delivered, node)}
    assert nodes == {"sim-0000", "sim-0001", "sim-0002"}
    telemetry = [decode(Channel.TELEMETRY, d.payload) for d in delivered if d.topic.endswith("/telemetry")]
    assert all(isinstance(t, Telemetry) and 0 <= t.battery.soc_pct <= 100 for t in telemetry)
    assert all(t.enclosure_temp_c != 0 for t in telemetry)
    capture.close()


@pytest.mark.parametrize(("jam_share", "expected"), [(0.0, DoorResult.OPENED), (1.0, DoorResult.JAMMED)])
def test_doors_follow_their_relays_unless_jammed(
    mosquitto: Mosquitto, tmp_path: Path, jam_share: float, expected: DoorResult
) -> None:
    capture = Capture(mosquitto.url, "lockers/v1/sim-0001/#")
    with background_fleet(fleet_settings(mosquitto, tmp_path, jam_share=jam_share)) as fleet:
        assert wait_until(lambda: fleet.online == 3, 10)
        send_open(mosquitto, "A2", "cmd-sim", node_id="sim-0001")
        delivered = capture.wait_until(
            lambda ds: (
                bool(final(ds, "cmd-sim"))
                and (expected is DoorResult.JAMMED or sum(1 for d in ds if d.topic.endswith("/event")) >= 2)
            ),
            timeout_s=10,
        )
    [result] = final(delivered, "cmd-sim")
    assert result.status is CommandStatus.DONE
    assert result.outcome is not None and result.outcome.result is expected
    events = door_events(delivered)
    if expected is DoorResult.OPENED:
        opened, closed = events[:2]
        assert opened.cause.type == "command"
        assert (opened.action, closed.action, closed.compartment) == ("opened", "closed", "A2")
    else:
        assert events == []
    capture.close()
