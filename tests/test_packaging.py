"""The wheel as it is installed: what it carries, and a locker's ``.[agent]`` venv with no controller in it.

The wheel is built once per run; the fresh venv gets the agent extra pinned by requirements.lock (pip from the
test's own environment installs into it, so the venv itself needs no pip), and everything below runs from that venv
in a directory outside the source tree, so nothing is imported from the checkout.
"""

import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from schemas import Channel, StatusBirth, Telemetry, decode_message, topic
from tests.harness.mqtt import Capture, Delivered

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER_ONLY = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg")


@dataclass(frozen=True)
class LockerVenv:
    """A fresh venv with ``lockerfleet[agent]`` installed from the wheel."""

    root: Path

    def bin(self, name: str) -> Path:
        """A console script or the interpreter of the venv."""
        return self.root / "bin" / name

    def python(self, code: str) -> str:
        """Run ``code`` with the venv's interpreter and return its stdout."""
        run = subprocess.run(
            [self.bin("python"), "-c", code], capture_output=True, text=True, check=True, cwd=self.root, env=_env()
        )
        return run.stdout.strip()


def _env() -> dict[str, str]:
    """This environment without anything that would point the venv back at the checkout or preset settings."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LOCKERFLEET_")}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lockerfleet wheel, built once per run from the working tree."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, ROOT],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("lockerfleet-*.whl")
    return built


@pytest.fixture(scope="session")
def locker_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> LockerVenv:
    """``python -m venv`` and ``pip install -c requirements.lock 'lockerfleet-….whl[agent]'``, as on a locker."""
    venv = LockerVenv(tmp_path_factory.mktemp("locker") / "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv.root], check=True)
    install: list[str | Path] = [sys.executable, "-m", "pip", "--python", venv.bin("python"), "install", "--quiet"]
    subprocess.run(
        [*install, "-c", ROOT / "requirements.lock", f"{wheel}[agent]"], check=True, capture_output=True, env=_env()
    )
    return venv


def test_the_wheel_carries_migrations_profiles_and_json_schemas(wheel: Path) -> None:
    """The image and the lockers install the package, not the source tree: everything they read must be in it."""
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {p.relative_to(ROOT).as_posix() for p in (ROOT / "controller/store/migrations/versions").glob("*.py")}
    assert revisions and revisions <= names
    assert "controller/store/migrations/env.py" in names
    profiles = {p.relative_to(ROOT).as_posix() for p in (ROOT / "node_agent/profiles").glob("*.toml")}
    assert profiles and profiles <= names
    assert {"schemas/json/status.schema.json", "schemas/json/telemetry.schema.json"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lockerfleet = controller.cli:main" in scripts
    assert "lockerfleet-agent = node_agent.cli:main" in scripts


@pytest.mark.integration
def test_a_locker_install_has_the_agent_and_no_controller_libraries(locker_venv: LockerVenv) -> None:
    found = locker_venv.python(
        "import importlib.util as u\n"
        f"for m in {(*CONTROLLER_ONLY, 'aiomqtt', 'gpiozero', 'node_agent')!r}:\n"
        "    s = u.find_spec(m)\n"
        "    print(m, s.origin if s else None)"
    )
    origins = dict(line.split(" ", 1) for line in found.splitlines())
    assert {module: origins[module] for module in CONTROLLER_ONLY} == dict.fromkeys(CONTROLLER_ONLY, "None")
    for module in ("aiomqtt", "gpiozero", "node_agent"):
        assert origins[module].startswith(str(locker_venv.root)), f"{module} from {origins[module]}"


@pytest.mark.integration
def test_a_locker_install_refuses_the_controller_naming_its_extra_and_forwards_agent(locker_venv: LockerVenv) -> None:
    run = subprocess.run(
        [locker_venv.bin("lockerfleet"), "controller"],
        capture_output=True,
        text=True,
        check=False,
        cwd=locker_venv.root,
        env=_env(),
    )
    assert run.returncode == 2
    assert run.stderr == "lockerfleet controller needs the controller extra: pip install 'lockerfleet[controller]'\n"
    assert run.stdout == ""
    forwarded = subprocess.run(
        [locker_venv.bin("lockerfleet"), "agent", "--node-id=a/b"],
        capture_output=True,
        text=True,
        check=False,
        cwd=locker_venv.root,
        env=_env(),
    )
    assert forwarded.returncode == 2
    assert forwarded.stderr.startswith("lockerfleet agent: invalid settings"), forwarded.stderr  # reached the agent


@pytest.fixture
def agent_process(locker_venv: LockerVenv, mosquitto: Mosquitto, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``lockerfleet-agent agent`` from the locker venv on the shipped simulated board, against the test broker."""
    profile = locker_venv.python(
        "import pathlib, node_agent; print(pathlib.Path(node_agent.__file__).parent / 'profiles' / 'sim-locker-8.toml')"
    )
    log = (tmp_path / "agent.log").open("wb")
    argv: list[str | Path] = [
        locker_venv.bin("lockerfleet-agent"),
        "agent",
        "--node-id=pkg-1",
        f"--board-profile={profile}",
        f"--mqtt-url={mosquitto.url}",
        f"--data-dir={tmp_path / 'data'}",
        "--telemetry-interval-s=0.2",
    ]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env())
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)
    log.close()


@pytest.mark.integration
def test_an_agent_from_the_locker_install_publishes_birth_and_telemetry(
    agent_process: subprocess.Popen[bytes], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    capture = Capture(mosquitto.url, "lockers/v1/pkg-1/#")
    try:

        def arrived(messages: list[Delivered]) -> bool:
            return {m.topic for m in messages} >= {topic("pkg-1", Channel.STATUS), topic("pkg-1", Channel.TELEMETRY)}

        messages = capture.wait_until(arrived, timeout_s=30)
    finally:
        capture.close()
    log = (tmp_path / "agent.log").read_text(errors="replace")
    decoded = [decode_message(m.topic, m.payload)[1] for m in messages]
    births = [m for m in decoded if isinstance(m, StatusBirth)]
    telemetry = [m for m in decoded if isinstance(m, Telemetry)]
    assert births and telemetry, log
    assert births[0].node_id == telemetry[0].node_id == "pkg-1"
    assert births[0].boot_id == telemetry[0].boot_id
    agent_process.send_signal(signal.SIGTERM)
    assert agent_process.wait(10) == 0, log
