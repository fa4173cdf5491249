"""The fleet registry with real controllers: two on one PostgreSQL share it, and a controller started on an
earlier release's registry file lists its nodes."""

from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from schemas import Channel, topic
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.controller.store.test_fleet_store import old_row, record, write_old_registry
from tests.harness.agent_runner import AgentFactory
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import connect, wait_until

pytestmark = pytest.mark.integration


def listed(controller: ControllerThread) -> list[str]:
    return [n["node_id"] for n in controller.http.get("/v1/nodes").json()]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_node_born_through_one_controller_is_listed_by_another_on_the_same_postgresql(
    start_agent: AgentFactory, mosquitto: Mosquitto, influx: InfluxClient, store_url: str, tmp_path: Path
) -> None:
    def controller(name: str) -> ControllerThread:
        """A controller process of its own: own client id and own --store-path, the shared database."""
        return ControllerThread(
            mosquitto.url,
            influx.url,
            influx.db,
            tmp_path / f"{name}.sqlite3",
            reservations_url=store_url,
            client_id=name,
            fleet_snapshot_s=0.5,
            batch_max_age_s=0.05,
        )

    first = controller("controller-a").start()
    second: ControllerThread | None = None
    try:
        agent = start_agent("node-1", build_hardware(sim_profile()))
        assert wait_until(lambda: listed(first) == ["node-1"], 10)
        agent.stop()  # a clean disconnect: no will
        publisher = connect(mosquitto.url)  # and no retained birth: the second controller cannot hear of node-1
        publisher.publish(topic("node-1", Channel.STATUS), b"", qos=1, retain=True).wait_for_publish(5)
        publisher.disconnect()

        second = controller("controller-b").start()
        assert wait_until(lambda: listed(second) == ["node-1"], 10), "the second controller never learnt of node-1"
        view = second.http.get("/v1/nodes/node-1").json()
        assert view["boot_id"] == 1 and view["compartments"][0]["id"] == "A1"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_controller_started_on_an_old_registry_file_lists_its_nodes(
    start_controller: ControllerFactory, tmp_path: Path
) -> None:
    old_file = tmp_path / "controller.sqlite3"  # the --store-path that start_controller uses
    write_old_registry(old_file, [old_row(record("node-7", seq=2)), old_row(record("node-8", online=False))])
    controller = start_controller()
    assert listed(controller) == ["node-7", "node-8"]
    assert controller.http.get("/v1/nodes/node-8").json()["state"] == "offline"
    assert (tmp_path / "controller.sqlite3.adopted").is_file() and not old_file.exists()
