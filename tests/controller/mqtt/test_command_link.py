"""The command publisher on a real mosquitto: a publish while the broker is away is queued (not a failure) and
arrives after the reconnect; only a publish paho did not keep fails; renewed TLS files are read at every
reconnect, by the command publisher and by the ingest session alike."""

import getpass
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from controller.commands.service import CommandNotSentError
from controller.devstack.pki import LocalPki
from controller.devstack.services import Mosquitto, free_port
from controller.mqtt.ingest_session import IngestLink, LinkSettings
from controller.mqtt.publisher import CommandLink
from schemas.broker import BrokerFiles
from tests.harness.mqtt import connect, disconnect, wait_until


def test_a_publish_while_the_broker_is_away_is_queued_and_delivered_after_the_reconnect(
    mosquitto: Mosquitto,
) -> None:
    received: list[bytes] = []
    got = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        got.set()

    node = connect(mosquitto.url, "node-q", persistent=True, on_message=on_message)
    node.subscribe("lockers/v1/node-q/command", qos=1)
    link = CommandLink(mosquitto.url, "ctl-commands")
    link.start(timeout_s=10)
    try:
        link.publish("lockers/v1/node-q/command", b"before", 60)
        assert got.wait(10)
        mosquitto.stop()  # saves the node's session and subscription
        assert wait_until(lambda: not link.connected.is_set(), 10)
        link.publish("lockers/v1/node-q/command", b"while away", 60)  # no exception: paho keeps it
        mosquitto.start()
        assert wait_until(lambda: received == [b"before", b"while away"], 30), received
    finally:
        link.stop()
        disconnect(node)


def test_only_a_publish_past_the_queue_bound_surely_fails() -> None:
    link = CommandLink(f"mqtt://127.0.0.1:{free_port()}", "ctl-commands", max_queued=2)  # never connected
    link.publish("lockers/v1/n/command", b"1", 60)
    link.publish("lockers/v1/n/command", b"2", 60)
    with pytest.raises(CommandNotSentError, match="2 commands already wait"):
        link.publish("lockers/v1/n/command", b"3", 60)


def tls_config(pki: LocalPki, port: int, workdir: Path) -> str:
    cert, key = pki.issue("broker", server=True)
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            f"cafile {pki.ca_cert}",
            f"certfile {cert}",
            f"keyfile {key}",
            "require_certificate true",
            "allow_anonymous true",
            f"persistence_location {workdir}/",
            f"user {getpass.getuser()}",
            "",
        ]
    )


@pytest.fixture
def files(tmp_path: Path) -> Iterator[BrokerFiles]:
    yield BrokerFiles(tmp_path / "ca.crt", tmp_path / "client.crt", tmp_path / "client.key")


def install(pki: LocalPki, files: BrokerFiles) -> None:
    """Put a CA and a client certificate of ``pki`` where the controller reads them (a renewal)."""
    cert, key = pki.issue("controller")
    assert files.ca_file and files.cert_file and files.key_file
    shutil.copy(pki.ca_cert, files.ca_file)
    shutil.copy(cert, files.cert_file)
    shutil.copy(key, files.key_file)


def test_both_connections_read_renewed_tls_files_when_they_reconnect(tmp_path: Path, files: BrokerFiles) -> None:
    old, new = LocalPki(tmp_path / "old", "old-ca"), LocalPki(tmp_path / "new", "new-ca")
    port = free_port()
    url = f"mqtts://127.0.0.1:{port}"
    install(old, files)
    broker = Mosquitto(tmp_path / "broker", port, config=tls_config(old, port, tmp_path)).start()
    ingest = IngestLink(LinkSettings(url=url, client_id="ctl", broker_files=files), lambda *_: None)
    commands = CommandLink(url, "ctl-commands", files)
    try:
        ingest.start(timeout_s=10)
        commands.start(timeout_s=10)
        broker.stop()
        assert wait_until(lambda: not ingest.connected.is_set() and not commands.connected.is_set(), 10)
        # Everything renewed under another CA: the files read at start can reach this broker no more.
        install(new, files)
        broker = Mosquitto(tmp_path / "broker", port, config=tls_config(new, port, tmp_path)).start()
        assert wait_until(ingest.connected.is_set, 30)
        assert wait_until(commands.connected.is_set, 40)
        commands.publish_acknowledged("lockers/v1/n/command", b"renewed", timeout_s=10)
    finally:
        ingest.stop()
        commands.stop()
        broker.stop()
