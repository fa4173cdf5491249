"""``lockerfleet agent`` as an installer runs it (issue 13, points 2 and 3): a process, a board profile, a signal."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.board import shipped_profile
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration


def agent_process(*flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``lockerfleet agent <flags>`` in its own process, output captured."""
    return subprocess.Popen(
        [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())", "agent", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def node_state(controller: ControllerThread, node_id: str) -> str | None:
    response = controller.http.get(f"/v1/nodes/{node_id}")
    return str(response.json()["state"]) if response.status_code == 200 else None


def test_a_simulated_board_agent_opens_its_doors_and_a_clean_stop_shows_offline_at_once(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller = start_controller()
    agent = agent_process(
        "--node-id=node-s",
        f"--mqtt-url={mosquitto.url}",
        f"--data-dir={tmp_path / 's'}",
        f"--board-profile={shipped_profile('sim-locker-8')}",
    )
    try:
        assert wait_until(lambda: node_state(controller, "node-s") == "online", 20)
        opened = controller.http.post("/v1/nodes/node-s/compartments/A1/open")
        assert opened.status_code == 200, opened.text
        assert opened.json()["outcome"]["result"] == "opened"  # its door moved, as in `sim` (not `jammed`)
    finally:
        agent.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert "offline status published client_id=node-s" in err
    # Right away, not after the stale timeout: the telemetry interval is 10 s, so stale would take 30 s.
    assert wait_until(lambda: node_state(controller, "node-s") == "offline", 5), node_state(controller, "node-s")


def test_an_agent_with_no_usable_pin_library_says_so_in_one_line_naming_pin_factory(tmp_path: Path) -> None:
    env = os.environ | {"GPIOZERO_PIN_FACTORY": "no-such-factory"}  # as on a Pi without lgpio: none loads
    agent = agent_process(
        "--node-id=node-p",
        f"--data-dir={tmp_path / 'p'}",
        f"--board-profile={shipped_profile('pi4-locker-8')}",
        env=env,
    )
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 2
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert 'pin_factory = "default"' in line and "level=ERROR" in line and "action=" in line
    assert "lgpio" in line and 'pin_factory = "mock"' in line
