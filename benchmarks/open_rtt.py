"""Courier open round trip with 500 simulated lockers online and telemetry flowing.

A private mosquitto and influxd, one `lockerfleet controller` process, one `lockerfleet sim` process with N nodes
(no jammed doors). The same open command is timed two ways in the same run, each on its own set of nodes:

* reference: `mosquitto_rr` (the C request/response client) publishes the command on the node's command topic
  and waits for the node's first answer on its result topic (the journaled ``accepted``), timed as a process;
* lockerfleet: `POST /v1/nodes/{id}/compartments/A1/open` until the HTTP response with the door's outcome.

The HTTP figure includes the physical open (relay pulse, door switch), which the reference's first answer does
not. So the table gives the raw HTTP round trip and, for the ratio, the HTTP round trip minus the node's own
execution time (its ``done`` timestamp minus its ``accepted`` timestamp, read back from InfluxDB).

    python -m benchmarks.open_rtt --nodes 500 --samples 100
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from benchmarks.ingest import start_controllers
from controller.devstack.services import Influxd, Mosquitto
from schemas import Channel, OpenCommand, encode, topic


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def mosquitto_rr(broker: Mosquitto, node_id: str) -> float:
    """Seconds for one mosquitto_rr open → first answer."""
    now = datetime.now(UTC)
    command = OpenCommand(
        command_id=f"rr-{node_id}-{time.monotonic_ns()}",
        node_id=node_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=30),
        compartment="A1",
    )
    argv = ["mosquitto_rr", "-p", str(broker.port), "-q", "1", "-W", "10"]
    argv += [
        "-t",
        topic(node_id, Channel.COMMAND),
        "-e",
        topic(node_id, Channel.RESULT),
        "-m",
        encode(command).decode(),
    ]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def node_execution_s(influx: Influxd, command_ids: list[str]) -> list[float]:
    """Per command, the node's ``done`` minus ``accepted`` timestamps, from InfluxDB."""
    rows = httpx.get(
        f"{influx.url}/query",
        params={"db": "bench", "q": 'SELECT command_id, "status" FROM command_result', "epoch": "ns"},
        timeout=60,
    ).json()["results"][0]["series"][0]
    columns = rows["columns"]
    times: dict[tuple[str, str], int] = {}
    for values in rows["values"]:
        row = dict(zip(columns, values, strict=True))
        times[(row["command_id"], row["status"])] = row["time"]
    return [(times[(c, "done")] - times[(c, "accepted")]) / 1e9 for c in command_ids]


def main() -> None:
    """Run both measurements and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--interval", type=float, default=5.0, help="telemetry seconds per node")
    parser.add_argument("--ramp", type=float, default=20.0)
    args = parser.parse_args()
    if args.nodes < 2 * args.samples:
        sys.exit("need at least two nodes per sample (each node is opened once by each method)")
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "mq") as broker, Influxd(Path(tmp) / "ix") as ix:
        [(controller, api)] = start_controllers(1, broker, ix, tmp)
        sim = subprocess.Popen(
            [
                *(sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())", "sim"),
                *(f"--nodes={args.nodes}", f"--mqtt-url={broker.url}", f"--data-dir={Path(tmp) / 'sim'}"),
                *(f"--telemetry-interval-s={args.interval}", f"--ramp-s={args.ramp}", "--jam-share=0"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + args.ramp + 60
            while len(api.get("/v1/nodes", params={"state": "online"}).json()) < args.nodes:
                if time.monotonic() > deadline:
                    sys.exit("the fleet did not come online")
                time.sleep(0.5)
            time.sleep(args.interval)  # telemetry of every node flowing
            nodes = [f"sim-{i:04d}" for i in range(args.nodes)]
            reference = [mosquitto_rr(broker, n) for n in nodes[: args.samples]]
            http: list[float] = []
            command_ids: list[str] = []
            for node in nodes[args.samples : 2 * args.samples]:
                started = time.perf_counter()
                response = api.post(f"/v1/nodes/{node}/compartments/A1/open")
                http.append(time.perf_counter() - started)
                if response.status_code != 200:
                    sys.exit(f"open of {node} failed: {response.status_code} {response.text}")
                command_ids.append(response.json()["command_id"])
            time.sleep(1.0)  # let the last results reach InfluxDB
            executing = node_execution_s(ix, command_ids)
        finally:
            sim.terminate()
            sim.wait(60)
            controller.terminate()
            controller.wait(30)
            api.close()
    net = [h - e for h, e in zip(http, executing, strict=True)]
    report(args, reference, http, executing, net)


def report(
    args: argparse.Namespace, reference: list[float], http: list[float], executing: list[float], net: list[float]
) -> None:
    """Print the Markdown table for BENCHMARKS.md."""
    ms = 1000.0
    print(
        f"Machine: `{platform.node()}` {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.nodes} nodes online, {args.samples} samples each\n")
    print("| figure (ms) | p50 | p99 | p99 ratio to mosquitto_rr | target |")
    print("|---|---|---|---|---|")
    rr50, rr99 = percentile(reference, 50) * ms, percentile(reference, 99) * ms
    print(f"| mosquitto_rr open → first answer (reference) | {rr50:.1f} | {rr99:.1f} | 1.00x | |")
    for label, values, target in (
        ("HTTP open → outcome, raw (includes relay pulse and door)", http, ""),
        ("node execution (done - accepted, node clock)", executing, ""),
        ("HTTP open → outcome, minus node execution", net, "<= 10x"),
    ):
        p50, p99 = percentile(values, 50) * ms, percentile(values, 99) * ms
        print(f"| {label} | {p50:.1f} | {p99:.1f} | {p99 / rr99:.2f}x | {target} |")
    print(f"| mean HTTP open (ms) | {statistics.mean(http) * ms:.1f} | | | |")


if __name__ == "__main__":
    main()
