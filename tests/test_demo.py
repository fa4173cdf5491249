"""The README's first command: the demo starts its own broker and fleet and opens a door."""

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
