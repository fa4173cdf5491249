"""The README's first command: the demo starts broker, InfluxDB, controller and a sited fleet, walks a parcel through
a reservation as a courier partner would, tells one battery swap from forecast to verified work order, keeps its keys
for the next run and stops cleanly on Ctrl-C."""

import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEMO = [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())", "demo", "--nodes=3"]


def without_venv_on_path() -> dict[str, str]:
    """This environment as after `make demo` in a fresh terminal: the venv's bin directory is not on the PATH."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not p.startswith(sys.prefix)]
    return os.environ | {"PATH": os.pathsep.join(path)}


def run_demo(run_dir: Path, duration_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, f"--run-dir={run_dir}", f"--duration-s={duration_s}", "--http-port=0"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=without_venv_on_path(),
    )


def key_id(output: str, label: str) -> str:
    found = re.search(rf"^{label} +key \S+\n +\(\S+; id ([0-9a-f]+); (.*?), in ", output, re.M)
    assert found, output
    return found[1]


def test_demo_walks_a_parcel_through_a_reservation_and_a_battery_swap_from_forecast_to_verified(tmp_path: Path) -> None:
    run = run_demo(tmp_path, duration_s=30)
    out = run.stdout
    assert run.returncode == 0, run.stderr
    assert "nodes online   3/3" in out, out
    assert "fleet       3 simulated lockers at centre, north, harbour" in out
    walk = out[out.index("courier     a partner's app reserves at 'centre'") :]
    created = re.search(r"POST /v1/reservations \{.*\"site\":\"centre\".*\}\n +-> 201 in \d+ ms .*state=pending", walk)
    assert created, walk
    assert re.search(r"GET /v1/reservations/(\S+)\n +-> 200 in \d+ ms +state=held +deposit_code=\d{8}", walk)
    deposit = r"POST /v1/reservations/\S+/open \{\"step\":\"deposit\"\}\n +-> 200 in \d+ ms .*result=opened"
    assert re.search(deposit, walk), walk
    pickup_code = re.search(r"-> 200 in \d+ ms +state=deposited +pickup_code=(\d{8})", walk)
    assert pickup_code, walk
    assert f"the recipient types the pickup code {pickup_code[1]} -> opens A1" in walk
    assert re.search(r"-> 200 in \d+ ms +state=picked_up\n", walk), walk
    assert "courier     walk done" in walk
    swap = re.findall(r"^swap +(.*)$", out, re.M)
    assert len(swap) == 5, out
    fired, opened, swapped, resolved, verified = (
        next(i for i, line in enumerate(swap) if re.fullmatch(pattern, line))
        for pattern in (
            r"alert battery_swap:sim-0001 firing \(warning\): empty in [\d.]+ h at 4\d% .*",
            r"work order wo-battery_swap:sim-0001 open: empty in [\d.]+ h at 4\d% .*",
            r"a technician swaps the pack of sim-0001 \(simulated\): 4\d% -> 100%, 0 cycles",
            r"alert battery_swap:sim-0001 resolved: the controller saw the new pack in sim-0001's telemetry",
            r"work order wo-battery_swap:sim-0001 verified: telemetry showed soc_jump, then 4 s healthy",
        )
    )
    assert fired < swapped < resolved < verified and fired < opened, swap
    assert key_id(out, "operator") and key_id(out, "partner")
    assert "`lockerfleet` is not on your PATH: `source .venv/bin/activate` (or `make shell`) puts it there" in out
    rows = [int(m) for m in re.findall(r"telemetry rows in InfluxDB (\d+)", out)]
    assert rows and rows[-1] > 0 and rows == sorted(rows)
    assert "no operator key" not in run.stderr  # the demo issues its key before the controller looks
    assert "pinned on first use" not in run.stderr  # the demo pins the controller's key as an installer would
    for kept in ("operator.key", "partner.key"):
        assert stat.S_IMODE((tmp_path / kept).stat().st_mode) == 0o600
    assert (tmp_path / "agents" / "sim-0000" / "journal.sqlite3").exists()
    assert (tmp_path / "influxdb" / "data").is_dir()
    assert out.rstrip().endswith("demo stopped")


def service_pids(run_dir: Path) -> dict[str, int]:
    """The demo's mosquitto and influxd, found by their config under ``run_dir``."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and any(str(run_dir).encode() in a for a in argv):
            for name in ("mosquitto", "influxd"):
                if argv[0].endswith(name.encode()):
                    found[name] = int(proc.name)
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_the_demo_and_its_services_without_a_traceback_and_the_next_run_reuses_its_keys(
    tmp_path: Path,
) -> None:
    first = run_demo(tmp_path, duration_s=1)
    assert first.returncode == 0, first.stderr
    demo = subprocess.Popen(
        [*DEMO, f"--run-dir={tmp_path}", "--http-port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal gives the command it runs
    )
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("courier     walk"):
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert up.wait(60), "".join(lines)
        services = service_pids(tmp_path)
        assert set(services) == {"mosquitto", "influxd"}
        assert all(os.getpgid(pid) != demo.pid for pid in services.values())  # out of reach of the terminal's ^C
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        returncode = demo.wait(timeout=15)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    reader.join(5)
    out = "".join(lines)
    assert returncode == 0, out
    assert "Traceback" not in out and "RetryError" not in out, out
    assert out.rstrip().endswith("demo stopped")
    assert not any(alive(pid) for pid in services.values())
    assert key_id(out, "operator") == key_id(first.stdout, "operator")
    assert key_id(out, "partner") == key_id(first.stdout, "partner")
    assert "kept from an earlier run" in out
