"""The README's first command: the demo starts broker, InfluxDB, controller and fleet, and opens a door over HTTP."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

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
            "--duration-s=6",
            "--http-port=0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "nodes online   3/3" in run.stdout, run.stdout
    assert "open        sim-0000/A1 (HTTP API) -> opened in" in run.stdout, run.stdout
    rows = [int(m) for m in re.findall(r"telemetry rows in InfluxDB (\d+)", run.stdout)]
    assert rows and rows[-1] > 0 and rows == sorted(rows)
    assert (tmp_path / "agents" / "sim-0000" / "journal.sqlite3").exists()
    assert (tmp_path / "controller" / "fleet.sqlite3").exists()
    assert (tmp_path / "influxdb" / "data").is_dir()
    assert run.stdout.rstrip().endswith("demo stopped")
