"""compose.yaml's broker access rules, run on a real mosquitto: each locker confined to its own topics, anonymous
clients refused, and the controller and an agent working through the same rules."""

import getpass
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from controller.devstack.services import Mosquitto, find_binary, free_port
from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from schemas import Channel, OpenCommand, StoredReceipt, decode, encode, topic
from schemas.broker import broker_address
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentThread
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, connect, disconnect, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {
    "controller": "controller-pw",
    "controller-control": "controller-pw",  # the controller's control session: its own user, same password
    "controller-commands": "controller-pw",  # the controller's command publisher: its own user, same password
    "node-1": "node-1-pw",
    "node-2": "node-2-pw",
}


class Broker:
    """mosquitto running compose.yaml's configuration, with test ports and paths."""

    @staticmethod
    def compose_config(name: str) -> str:
        """The text of one of compose.yaml's ``configs``, as compose hands it to the container."""
        compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
        return str(compose["configs"][name]["content"]).replace("$$", "$")  # compose's own escaping

    def __init__(self, workdir: Path) -> None:
        content = self.compose_config
        self.port, self.local_port = free_port(), free_port()
        workdir.mkdir(parents=True)
        acl, local_acl, passwd = workdir / "acl", workdir / "local-acl", workdir / "passwd"
        acl.write_text(content("mosquitto_acl"))
        local_acl.write_text(content("mosquitto_local_acl"))
        passwd_tool = find_binary("mosquitto_passwd", "mosquitto")
        for user, password in PASSWORDS.items():
            create = ["-c"] if not passwd.exists() else []
            subprocess.run([passwd_tool, *create, "-b", str(passwd), user, password], check=True)
        passwd.chmod(0o600)
        config = (
            content("mosquitto_conf")
            .replace("listener 1883\n", f"listener {self.port} 127.0.0.1\n")
            .replace("listener 1880 127.0.0.1\n", f"listener {self.local_port} 127.0.0.1\n")
            .replace("/run/secrets/mosquitto_passwd", str(passwd))
            .replace("/mosquitto/config/acl", str(acl))
            .replace("/mosquitto/config/local-acl", str(local_acl))
            .replace("/mosquitto/data/", f"{workdir / 'data'}/")
        )
        assert str(acl) in config and str(local_acl) in config and str(passwd) in config
        self.mosquitto = Mosquitto(workdir, self.port, config=f"{config}\nuser {getpass.getuser()}\n")

    def url(self, user: str | None = None) -> str:
        """The broker's URL, with ``user``'s credentials."""
        credentials = f"{user}:{PASSWORDS[user]}@" if user else ""
        return f"mqtt://{credentials}127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    with broker.mosquitto:
        yield broker


def refused(url: str) -> bool:
    """Whether the broker refuses to connect a client with ``url``'s credentials."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    answers: list[bool] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: answers.append(rc.is_failure)
    broker = broker_address(url)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_until(lambda: bool(answers), 5)
    client.loop_stop()
    client.disconnect()
    return answers == [True]


def open_command(node_id: str, command_id: str) -> bytes:
    now = datetime.now(UTC)
    return encode(
        OpenCommand(
            command_id=command_id,
            node_id=node_id,
            issued_at=now,
            expires_at=now + timedelta(seconds=30),
            compartment="A1",
        )
    )


def test_anonymous_and_wrong_passwords_are_refused_and_the_health_listener_sees_only_sys(broker: Broker) -> None:
    assert refused(broker.url())
    assert refused(broker.url("node-1").replace("node-1-pw", "guess"))
    assert not refused(broker.url("node-1"))
    health = subprocess.run(
        ["mosquitto_sub", "-p", str(broker.local_port), "-t", "$SYS/broker/uptime", "-C", "1", "-W", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert health.returncode == 0 and "seconds" in health.stdout, health
    local = f"mqtt://127.0.0.1:{broker.local_port}"
    snoop = Capture(local, "lockers/v1/#")
    node = connect(broker.url("node-1"))
    node.publish(topic("node-1", Channel.TELEMETRY), b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.3)
    assert snoop.snapshot() == []  # the health listener reads nothing but $SYS
    snoop.close()
    node.disconnect()


def test_a_locker_writes_only_its_own_reports_and_reads_only_its_own_commands(broker: Broker) -> None:
    reports = Capture(broker.url("controller"), "lockers/v1/+/telemetry")
    node_2 = Capture(broker.url("node-2"), "lockers/v1/node-2/command")
    forger = connect(broker.url("node-1"))
    forger.publish(topic("node-1", Channel.TELEMETRY), b"own", qos=1).wait_for_publish(5)
    forger.publish(topic("node-2", Channel.TELEMETRY), b"impersonated", qos=1).wait_for_publish(5)
    forger.publish(topic("node-2", Channel.COMMAND), open_command("node-2", "forged"), qos=1).wait_for_publish(5)
    disconnect(forger)  # one connection per login: node-1's next one would take this one's place
    node_1 = Capture(broker.url("node-1"), "lockers/v1/+/command")  # asks for every node's commands
    controller = connect(broker.url("controller-commands"))
    for node_id in ("node-1", "node-2"):
        controller.publish(topic(node_id, Channel.COMMAND), open_command(node_id, node_id), qos=1).wait_for_publish(5)
    assert wait_until(lambda: len(node_1.snapshot()) >= 1 and len(node_2.snapshot()) >= 1, 5)
    time.sleep(0.3)  # anything that should not arrive would have by now
    assert [d.payload for d in reports.snapshot()] == [b"own"]
    assert [d.topic for d in node_1.snapshot()] == ["lockers/v1/node-1/command"]
    [command] = node_2.snapshot()  # the controller's, not the one node-1 forged
    assert b'"command_id":"node-2"' in command.payload
    controller.disconnect()
    for capture in (reports, node_1, node_2):
        capture.close()


def test_only_the_controller_writes_receipts_and_a_locker_reads_only_its_own(broker: Broker) -> None:
    node_2 = Capture(broker.url("node-2"), "lockers/v1/node-2/stored")
    for user in ("node-1", "controller"):  # a locker, and the ingest session's user, which only reads
        forger = connect(broker.url(user))
        forger.publish(topic("node-2", Channel.STORED), receipt("node-2", 9), qos=1).wait_for_publish(5)
        disconnect(forger)  # one connection per login: node-1's next one would take this one's place
    node_1 = Capture(broker.url("node-1"), "lockers/v1/+/stored")  # asks for every node's receipts
    controller = connect(broker.url("controller-commands"))
    for node_id in ("node-1", "node-2"):
        controller.publish(topic(node_id, Channel.STORED), receipt(node_id, 1), qos=1).wait_for_publish(5)
    assert wait_until(lambda: len(node_1.snapshot()) >= 1 and len(node_2.snapshot()) >= 1, 5)
    time.sleep(0.3)  # anything that should not arrive would have by now
    assert [d.topic for d in node_1.snapshot()] == ["lockers/v1/node-1/stored"]
    assert [decode(Channel.STORED, d.payload).boot_id for d in node_2.snapshot()] == [1]
    controller.disconnect()
    for capture in (node_1, node_2):
        capture.close()


def receipt(node_id: str, boot_id: int) -> bytes:
    return encode(StoredReceipt(node_id=node_id, boot_id=boot_id, ranges=[(0, 3)]))


def test_the_controller_and_an_agent_work_through_the_rules(
    broker: Broker, influx: InfluxClient, tmp_path: Path
) -> None:
    password_file = tmp_path / "controller.password"  # as compose hands it over: a secret file
    password_file.write_text(PASSWORDS["controller"] + "\n")
    controller = ControllerThread(
        f"mqtt://controller@127.0.0.1:{broker.port}",
        influx.url,
        influx.db,
        tmp_path / "controller.sqlite3",
        mqtt_password_file=password_file,
        share_group="acl",
        batch_max_age_s=0.05,
    ).start()
    profile = sim_profile()
    hardware = build_hardware(profile, working_doors=(profile.compartments[0].id,))
    settings = AgentSettings(
        node_id="node-1",
        mqtt_url=broker.url("node-1"),
        data_dir=tmp_path / "node-1",
        telemetry_interval_s=0.5,
        reconnect_max_s=1.0,
    )
    agent = AgentThread(Agent(settings, hardware)).start()
    try:
        assert wait_until(lambda: controller.http.get("/v1/nodes/node-1").status_code == 200, 10)
        opened = controller.http.post(f"/v1/nodes/node-1/compartments/{profile.compartments[0].id}/open")
        assert opened.status_code == 200 and opened.json()["outcome"]["result"] == "opened", opened.text
        assert wait_until(lambda: bool(influx.query("SELECT count(seq) FROM telemetry WHERE node = 'node-1'")), 10)
    finally:
        agent.stop()
        controller.stop()
