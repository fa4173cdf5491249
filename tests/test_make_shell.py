"""`make shell`: after `make demo`, a shell where `lockerfleet` is on the PATH."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("bash") is None, reason="needs make and bash")
def test_make_shell_puts_the_venvs_lockerfleet_on_the_path(tmp_path: Path) -> None:
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not p.startswith(sys.prefix)]
    env = os.environ | {"PATH": os.pathsep.join(path), "SHELL": "bash", "HOME": str(tmp_path)}
    assert shutil.which("lockerfleet", path=env["PATH"]) is None
    venv = Path(sys.prefix)
    shell = subprocess.run(
        # -o: take the venv as installed (no pip run here, whatever pyproject.toml's time stamp)
        ["make", "-s", "-C", str(ROOT), f"VENV={venv}", "-o", f"{venv}/bin/.installed", "shell"],
        input="command -v lockerfleet\necho $VIRTUAL_ENV\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    lines = shell.stdout.splitlines()
    assert lines[0].startswith("lockerfleet is on the PATH in this shell")
    assert lines[1:] == [str(venv / "bin" / "lockerfleet"), str(venv)]
