"""The README's first command: the demo starts its own broker and fleet and opens a door."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.demo import Observer
from controller.local_services import Mosquitto
from schemas import Channel, encode, topic
from tests import samples
from tests.harness.mqtt import connect, wait_until

pytestmark = pytest.mark.integration


def test_demo_brings_the_fleet_online_and_opens_a_door(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from controller.cli import main; raise SystemExit(main())",
            "demo",
            "--nodes=3",
            f"--run-dir={tmp_path}",
            "--duration-s=4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "nodes online   3/3" in run.stdout
    assert "open       sim-0000/A1 -> opened in" in run.stdout
    assert (tmp_path / "agents" / "sim-0000" / "journal.sqlite3").exists()
    assert run.stdout.rstrip().endswith("demo stopped")


def test_demo_observer_counts_bad_payloads_and_keeps_going(mosquitto: Mosquitto) -> None:
    observer = Observer(mosquitto.url)
    time.sleep(0.2)  # let the subscriptions settle
    publisher = connect(mosquitto.url)
    publisher.publish(topic("node-9", Channel.STATUS), b"\xff garbage", qos=1).wait_for_publish(5)
    publisher.publish(topic("node-8", Channel.STATUS), encode(samples.birth("node-9")), qos=1).wait_for_publish(5)
    publisher.publish(topic("node-9", Channel.STATUS), encode(samples.birth("node-9")), qos=1).wait_for_publish(5)
    publisher.disconnect()
    assert wait_until(lambda: observer.online == {"node-9"}, 5)
    assert observer.rejected == 2  # garbage, and a payload whose node is not the topic's
    observer.close()
