"""The ``venv-slots`` shim for Raspberry Pi OS: one virtualenv per release, installed offline from the artifact's
wheels, and an atomic ``current`` symlink that the systemd unit starts (see ``firmware-shims/``).

``/opt/lockerfleet/releases/<version>/venv`` is built with ``python -m venv`` and
``pip install --no-index --find-links <slot>/wheelhouse lockerfleet[agent]==<version>``: nothing is fetched from the
network, only the signed artifact's wheels are used. The unit's ``ExecStartPre=lockerfleet-trial-start`` counts the
trial's starts in ``attempts`` and switches ``current`` back to ``previous`` after too many, even when the new
release cannot start Python at all. A restart is the agent exiting: systemd's ``Restart=always`` starts ``current``.
"""

import subprocess
import sys
from pathlib import Path

from node_agent.ota.shims.base import ShimError
from node_agent.ota.shims.slots import SlotDirectory, unpack

DEFAULT_BASE = Path("/opt/lockerfleet")
PIP_TIMEOUT_S = 900.0
"""An offline install on a Pi 3 takes minutes; longer than this is a hang."""


class VenvSlotsShim(SlotDirectory):
    """Virtualenv slots under ``base``."""

    name = "venv-slots"

    def __init__(
        self, base: Path = DEFAULT_BASE, *, python: str = sys.executable, package: str = "lockerfleet"
    ) -> None:
        super().__init__(base)
        self.python = python
        self.package = package

    def populate(self, slot: Path, version: str, artifact: Path) -> None:
        """Unpack the wheelhouse, create the venv, install the release's wheels offline."""
        wheelhouse = slot / "wheelhouse"
        unpack(artifact, wheelhouse)
        venv = slot / "venv"
        _run([self.python, "-m", "venv", str(venv)], "create the venv")
        _run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-index",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--find-links",
                str(wheelhouse),
                f"{self.package}[agent]=={version}",
            ],
            f"install {self.package} {version} from the artifact's wheels",
        )

    def python_of(self, version: str) -> Path:
        """The interpreter of ``version``'s venv."""
        return self.slot(version) / "venv" / "bin" / "python"


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ShimError(f"cannot {what}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ShimError(f"cannot {what} (exit {done.returncode}): {' | '.join(tail)}")
