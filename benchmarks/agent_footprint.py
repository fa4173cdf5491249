"""Agent resident memory and CPU at 1 telemetry message/s, against a real mosquitto.

Targets (issue 3): <= 35 MiB RSS and <= 1 % of one core. The reference, measured in the same run the same way,
is a bare CPython interpreter idling (`python -c "import time; time.sleep(...)"`), so the ratio shows what the
agent costs on top of the interpreter on whatever machine runs it.

    python -m benchmarks.agent_footprint --seconds 60
"""

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._proc import Usage, usage
from controller.devstack.services import Mosquitto
from node_agent.board import shipped_profile


def _measure(argv: list[str], seconds: float, warmup_s: float) -> Usage:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(warmup_s)
        start = usage(proc.pid)
        time.sleep(seconds)
        end = usage(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return Usage(end.rss_mib, end.peak_rss_mib, end.cpu_s - start.cpu_s)


def main() -> None:
    """Run the agent and the reference; print a Markdown table row set."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window after warm-up")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        agent = _measure(
            [
                sys.executable,
                "-c",
                "from controller.cli import main; raise SystemExit(main())",
                "agent",
                "--node-id",
                "bench-1",
                "--mqtt-url",
                broker.url,
                "--data-dir",
                str(Path(tmp) / "agent"),
                "--board-profile",
                str(shipped_profile("sim-locker-8")),
                "--telemetry-interval-s",
                "1",
            ],
            args.seconds,
            args.warmup,
        )
        idle = _measure(
            [sys.executable, "-c", f"import time; time.sleep({args.seconds + args.warmup + 5})"],
            args.seconds,
            args.warmup,
        )
    cpu_pct = 100 * agent.cpu_s / args.seconds
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; window {args.seconds:.0f}s at 1 telemetry/s")
    print("| figure | agent | bare python (reference) | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| resident memory (MiB, peak) | {agent.peak_rss_mib:.1f} | {idle.peak_rss_mib:.1f} | "
        f"{agent.peak_rss_mib / idle.peak_rss_mib:.2f}x | <= 35 MiB |"
    )
    print(
        f"| CPU (% of one core) | {cpu_pct:.2f} | {100 * idle.cpu_s / args.seconds:.2f} | "
        f"{'n/a (reference ~0)' if idle.cpu_s == 0 else f'{agent.cpu_s / idle.cpu_s:.1f}x'} | <= 1 % |"
    )


if __name__ == "__main__":
    main()
