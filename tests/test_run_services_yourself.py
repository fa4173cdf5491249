"""The README's "Running the services yourself": its mosquitto and influxd commands with the configs from deploy/,
then the controller with the shipped sites file and a partner key, as a reader would run them (on free ports)."""

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from controller.devstack.services import find_binary, free_port
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
LOCKERFLEET = [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())"]


def commands() -> list[list[str]]:
    """The section's commands, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Running the services yourself\n") :]
    block = re.search(r"^```sh\n(.*?)^```$", section, re.M | re.S)
    assert block is not None
    return [shlex.split(line, comments=True) for line in block[1].splitlines() if line.strip()]


def command(name: str) -> list[str]:
    [found] = [c for c in commands() if c[0] == name or c[:2] == ["lockerfleet", name]]
    return found


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by the test; stopped (SIGTERM, then SIGKILL) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_readme_recipe_runs_broker_influxdb_and_a_controller_that_takes_reservations(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    env = dict(os.environ)
    for name, value in (c[1].split("=", 1) for c in commands() if c[0] == "export"):
        env[name] = value
    assert env["LOCKERFLEET_STORE_PATH"].startswith(".run/local/")
    subprocess.run(command("mkdir"), cwd=tmp_path, check=True)

    mosquitto, flag, conf = command("mosquitto")
    assert flag == "-c"
    mqtt_port = free_port()
    config = (ROOT / conf).read_text()
    assert "listener 1883 127.0.0.1\n" in config  # where the controller looks by default
    config = config.replace("listener 1883 ", f"listener {mqtt_port} ")
    if os.geteuid() == 0:
        config += "user root\n"  # as the README says for root
    (tmp_path / "mosquitto.conf").write_text(config)
    broker = [find_binary(mosquitto, "mosquitto"), "-c", str(tmp_path / "mosquitto.conf")]
    started.append(subprocess.Popen(broker, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

    influxd, flag, conf = command("influxd")
    assert flag == "-config"
    influx_port, rpc_port = free_port(), free_port()
    assert 'bind-address = "127.0.0.1:8086"' in (ROOT / conf).read_text()
    moved = {"INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{influx_port}", "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{rpc_port}"}
    started.append(
        subprocess.Popen(
            [find_binary(influxd, "influxdb"), "-config", str(ROOT / conf)],
            cwd=tmp_path,
            env=env | moved,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
    )

    controller = command("controller")
    sites_file = controller[controller.index("--sites-file") + 1]
    http_port = free_port()
    ports = [
        f"--sites-file={ROOT / sites_file}",
        f"--mqtt-url=mqtt://127.0.0.1:{mqtt_port}",
        f"--influx-url=http://127.0.0.1:{influx_port}",
        f"--http-port={http_port}",
    ]
    run = [*LOCKERFLEET, "controller", *ports]
    started.append(subprocess.Popen(run, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{http_port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(healthy, 60, interval_s=0.2)  # broker session up, InfluxDB answering
    assert (tmp_path / ".run/local/mosquitto").is_dir() and (tmp_path / ".run/local/influxdb/meta").is_dir()

    keys = command("keys")
    issued = subprocess.run(
        [*LOCKERFLEET, *keys[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    site = json.loads(keys[keys.index("--sites") + 1])[0]
    arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    body = {"site": site, "size": "S", "parcel_ref": "P-1", "expected_arrival": arrival}
    answer = httpx.post(
        f"{url}/v1/reservations", json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k1"}
    )
    assert answer.status_code == 409, answer.text  # a known site with no locker reporting yet
    assert "unknown site" not in answer.json()["detail"]
