"""kill -9 of a real agent process: the last will takes over, and an interrupted command is never re-pulsed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.board import BoardProfile
from node_agent.board import __file__ as board_module
from schemas import Channel, CommandStatus, StatusBirth, StatusDeath, decode, topic
from tests.agent_mqtt.helpers import build_hardware, final, pulses, send_open, wait_online
from tests.harness.agent_runner import AgentFactory
from tests.harness.mqtt import Capture

pytestmark = pytest.mark.integration

NODE = "node-k"


def long_pulse_profile(tmp_path: Path) -> Path:
    """The shipped sim profile with a 10 s relay pulse, so a command stays in flight long enough to kill."""
    text = (Path(board_module).parent / "profiles" / "sim-locker-8.toml").read_text()
    text = re.sub(r"(?m)^(pulse_ms|door_timeout_ms)\s*=.*$", "", text)
    path = tmp_path / "long-pulse.toml"
    path.write_text("pulse_ms = 10000\ndoor_timeout_ms = 10000\n" + text)
    return path


def test_kill_9_mid_command_gives_last_will_then_unknown_without_a_second_pulse(
    mosquitto: Mosquitto, start_agent: AgentFactory, tmp_path: Path
) -> None:
    profile_path = long_pulse_profile(tmp_path)
    data_dir = tmp_path / NODE
    status = Capture(mosquitto.url, topic(NODE, Channel.STATUS))
    results = Capture(mosquitto.url, topic(NODE, Channel.RESULT))
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from controller.cli import main; raise SystemExit(main())",
            "agent",
            f"--node-id={NODE}",
            f"--mqtt-url={mosquitto.url}",
            f"--data-dir={data_dir}",
            f"--board-profile={profile_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        birth = wait_online(status, NODE)
        assert birth.boot_id == 1
        send_open(mosquitto, BoardProfile.from_toml(profile_path).compartments[0].id, "cmd-crash", NODE)
        accepted = results.wait_until(
            lambda ds: any(decode(Channel.RESULT, d.payload).status is CommandStatus.ACCEPTED for d in ds)
        )
        assert accepted, "the agent never journaled and accepted the command"
    finally:
        agent.kill()  # SIGKILL: no goodbye, no cleanup
        agent.wait(10)

    deaths = status.wait_until(lambda ds: isinstance(decode(Channel.STATUS, ds[-1].payload), StatusDeath))
    death = decode(Channel.STATUS, deaths[-1].payload)
    assert isinstance(death, StatusDeath) and death.boot_id == 1
    late = Capture(mosquitto.url, topic(NODE, Channel.STATUS))
    [retained] = late.wait_for(1)
    assert retained.retain and decode(Channel.STATUS, retained.payload) == death
    assert final(results.snapshot(), "cmd-crash") == []

    profile = BoardProfile.from_toml(profile_path)
    hardware = build_hardware(profile, working_doors=(profile.compartments[0].id,))
    start_agent(NODE, hardware=hardware, data_dir=data_dir)
    delivered = results.wait_until(lambda ds: bool(final(ds, "cmd-crash")))
    [unknown] = final(delivered, "cmd-crash")
    assert unknown.status is CommandStatus.UNKNOWN
    assert unknown.boot_id == 2
    reborn = wait_online(status, NODE, boot_id=2)
    assert isinstance(reborn, StatusBirth) and reborn.boot_id == 2

    send_open(mosquitto, profile.compartments[0].id, "cmd-crash", NODE)  # a late redelivery of the same command
    again = results.wait_until(lambda ds: len(final(ds, "cmd-crash")) >= 2)
    assert final(again, "cmd-crash")[1].status is CommandStatus.DUPLICATE
    assert final(again, "cmd-crash")[1].detail == "first answered unknown"
    assert pulses(hardware.pin_factory.pin(profile.compartments[0].relay_pin)) == []
    assert hardware.pin_factory.pin(profile.compartments[0].relay_pin).states[-1].state is False
    for capture in (status, results, late):
        capture.close()
