"""The artifact a locker installs offline: the agent and all its dependencies as wheels, in one tar.

Layout: ``wheels/<name>.whl`` for every wheel. A node installs it with
``pip install --no-index --find-links <dir>/wheels 'lockerfleet[agent]'`` into a fresh venv.
"""

import hashlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from controller.releases.errors import ReleaseError

WHEELS_DIR = "wheels"


@dataclass(frozen=True, slots=True)
class ArtifactFacts:
    """What a manifest says about an artifact."""

    name: str
    size: int
    sha256: str


def build_wheels(project_dir: Path, wheel_dir: Path) -> None:
    """``pip wheel '.[agent]'``: the agent and every dependency it needs, built or fetched into ``wheel_dir``."""
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheel_dir), f"{project_dir}[agent]"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"pip wheel failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def build_artifact(wheel_dir: Path, out: Path) -> ArtifactFacts:
    """Pack every wheel of ``wheel_dir`` into the tar ``out``, byte for byte the same for the same wheels."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not any(w.name.startswith("lockerfleet-") for w in wheels):
        raise ReleaseError(f"{wheel_dir} has no lockerfleet wheel: build it with build_wheels first")
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in wheels:
            info = tarfile.TarInfo(f"{WHEELS_DIR}/{wheel.name}")
            info.size = wheel.stat().st_size
            info.mode = 0o644
            with wheel.open("rb") as data:
                tar.addfile(info, data)
    return facts(out)


def facts(path: Path) -> ArtifactFacts:
    """Name, size and sha256 of a file, read in chunks."""
    with path.open("rb") as stream:
        size, digest = _digest(stream)
    return ArtifactFacts(path.name, size, digest)


def _digest(stream: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(1024 * 1024):
        size += len(chunk)
        digest.update(chunk)
    return size, digest.hexdigest()
