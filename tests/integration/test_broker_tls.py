"""mqtts:// end to end on a real mosquitto with a TLS listener that requires client certificates: the controller and
an agent each prove who they are by certificate (the broker takes the certificate's name as the user name, so the
compose ACL applies), and a client that doesn't trust the broker, or has no certificate, never gets in."""

import getpass
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.devstack.pki import LocalPki
from controller.devstack.services import Mosquitto, free_port
from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentThread
from tests.harness.controller_runner import ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until
from tests.integration.test_broker_acl import Broker

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[LocalPki, int]]:
    pki = LocalPki(tmp_path / "pki")
    server_cert, server_key = pki.issue("broker", server=True)
    acl = tmp_path / "acl"
    acl.write_text(Broker.compose_config("mosquitto_acl"))
    port = free_port()
    config = "\n".join(
        [
            f"listener {port} 127.0.0.1",
            f"cafile {pki.ca_cert}",
            f"certfile {server_cert}",
            f"keyfile {server_key}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            f"acl_file {acl}",
            f"persistence_location {tmp_path}/",
            f"user {getpass.getuser()}",
            "",
        ]
    )
    with Mosquitto(tmp_path / "broker", port, config=config):
        yield pki, port


def agent_settings(port: int, tmp_path: Path, ca: Path, cert: Path | None, key: Path | None) -> AgentSettings:
    return AgentSettings(
        node_id="node-1",
        mqtt_url=f"mqtts://127.0.0.1:{port}",
        mqtt_ca_file=ca,
        mqtt_cert_file=cert,
        mqtt_key_file=key,
        data_dir=tmp_path / "node-1",
        telemetry_interval_s=0.5,
        reconnect_max_s=0.5,
    )


def test_the_controller_and_an_agent_work_over_mutual_tls(
    tls_broker: tuple[LocalPki, int], influx: InfluxClient, tmp_path: Path
) -> None:
    pki, port = tls_broker
    controller_cert, controller_key = pki.issue("controller")
    node_cert, node_key = pki.issue("node-1")
    controller = ControllerThread(
        f"mqtts://127.0.0.1:{port}",
        influx.url,
        influx.db,
        tmp_path / "controller.sqlite3",
        mqtt_ca_file=pki.ca_cert,
        mqtt_cert_file=controller_cert,
        mqtt_key_file=controller_key,
        batch_max_age_s=0.05,
    ).start()
    profile = sim_profile()
    compartment = profile.compartments[0].id
    hardware = build_hardware(profile, working_doors=(compartment,))
    agent = AgentThread(Agent(agent_settings(port, tmp_path, pki.ca_cert, node_cert, node_key), hardware)).start()
    try:
        assert wait_until(lambda: controller.http.get("/v1/nodes/node-1").status_code == 200, 10)
        opened = controller.http.post(f"/v1/nodes/node-1/compartments/{compartment}/open")
        assert opened.status_code == 200 and opened.json()["outcome"]["result"] == "opened", opened.text
        stored = "SELECT count(seq) FROM telemetry WHERE node = 'node-1'"
        assert wait_until(lambda: bool(influx.query(stored)) and influx.query(stored)[0]["count"] >= 3, 10)
    finally:
        agent.stop()
        controller.stop()


def test_an_agent_that_does_not_trust_the_broker_or_has_no_certificate_never_connects(
    tls_broker: tuple[LocalPki, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki, port = tls_broker
    node_cert, node_key = pki.issue("node-1")
    stranger = LocalPki(tmp_path / "other-pki", "other-ca")
    caplog.set_level(logging.WARNING)
    for ca, cert, key, why in (
        (stranger.ca_cert, node_cert, node_key, "CERTIFICATE_VERIFY_FAILED"),  # the broker's certificate is unknown
        (pki.ca_cert, None, None, ""),  # no client certificate: the broker ends the handshake
    ):
        caplog.clear()
        settings = agent_settings(port, tmp_path / why, ca, cert, key)
        agent = AgentThread(Agent(settings, build_hardware(sim_profile()))).start()
        try:
            time.sleep(2.0)
            assert agent.agent.link.connects == 0
            assert any(why in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        finally:
            agent.stop()
