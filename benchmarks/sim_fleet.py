"""The fleet simulator at 500 nodes: how many come online, the publish rate they sustain, and its cost.

One `lockerfleet sim` process runs N real agents (each its own MQTT connection, journal and outbox) against a
private mosquitto; `mosquitto_sub` (the C client) counts what reaches the broker. The reference is the offered
load, N / telemetry interval, so the ratio says how much of it the simulator actually delivers.

    python -m benchmarks.sim_fleet --nodes 500 --interval 5 --seconds 60
"""

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._proc import usage
from controller.devstack.services import Mosquitto


def main() -> None:
    """Run the simulator, count deliveries, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--interval", type=float, default=5.0, help="telemetry seconds per node")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window after all nodes are online")
    parser.add_argument("--ramp", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        counts = Path(tmp) / "sub.log"
        with counts.open("wb") as out:
            sub = subprocess.Popen(
                ["mosquitto_sub", "-p", str(broker.port), "-t", "lockers/v1/+/+", "-F", "%t", "-q", "1"], stdout=out
            )
        sim = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from controller.cli import main; raise SystemExit(main())",
                "sim",
                f"--nodes={args.nodes}",
                f"--mqtt-url={broker.url}",
                f"--data-dir={Path(tmp) / 'sim'}",
                f"--telemetry-interval-s={args.interval}",
                f"--ramp-s={args.ramp}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + args.ramp + 60
            while _count(counts, "/status") < args.nodes and time.monotonic() < deadline:
                time.sleep(0.5)
            online = _count(counts, "/status")
            time.sleep(args.interval)  # let every node settle into its cadence
            t0, before, cpu0 = time.monotonic(), _count(counts, "/telemetry"), usage(sim.pid)
            time.sleep(args.seconds)
            t1, after, cpu1 = time.monotonic(), _count(counts, "/telemetry"), usage(sim.pid)
        finally:
            sim.terminate()
            sim.wait(30)
            sub.terminate()
    rate = (after - before) / (t1 - t0)
    offered = args.nodes / args.interval
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.nodes} nodes, {args.interval}s interval")
    print("| figure | measured | reference | ratio |")
    print("|---|---|---|---|")
    print(f"| nodes online (births seen) | {online} | {args.nodes} requested | {online / args.nodes:.2f} |")
    print(f"| telemetry delivered (msg/s) | {rate:.1f} | {offered:.1f} offered | {rate / offered:.3f} |")
    cpu_pct = 100 * (cpu1.cpu_s - cpu0.cpu_s) / (t1 - t0)
    print(f"| simulator CPU (% of one core) | {cpu_pct:.1f} | 100 | {cpu_pct / 100:.2f} |")
    print(f"| simulator resident memory (MiB) | {cpu1.rss_mib:.0f} | | |")


def _count(path: Path, suffix: str) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.endswith(suffix))


if __name__ == "__main__":
    main()
