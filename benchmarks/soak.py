"""Soak: a simulated fleet under repeated broker restarts and InfluxDB pauses, a courier opening doors throughout.

A private mosquitto configured like the shipped ones (``deploy/mosquitto.conf``: persistence on, one million queued
messages; ``autosave_interval`` as in compose.yaml, 60 s, unless ``--autosave``), a private influxd, one
``lockerfleet controller`` process and one simulator process running N real agents (``benchmarks._counting_sim``,
which writes down every message an agent queues). Once the fleet is online, for ``--minutes``:

* the broker is restarted on the same port every ``--broker-restart-every`` minutes (SIGTERM, down for
  ``--broker-down-s``; the last ``--broker-kills`` restarts are SIGKILL instead, as a crash);
* InfluxDB is frozen (SIGSTOP) ``--influx-pauses`` times for ``--influx-pause-s``, between broker restarts;
* a courier opens a door every ``--open-every`` seconds through the HTTP API (``POST …/compartments/A1/open``, round
  robin over the nodes), each open timed to its HTTP answer;
* the controller's resident memory is sampled every 5 s.

Then telemetry stops (the simulator's ``stale`` fault on every node), the outboxes and the controller drain, and
every telemetry point and door event in InfluxDB is compared with what the agents generated, by (node, boot, seq):
lost, stored twice, stored but never generated. Opens are grouped by whether they overlapped a fault window (the
broker down until ``--fault-tail-s`` after it is back; InfluxDB frozen until ``--fault-tail-s`` after it resumes):
the opens outside every window are the reference for those during faults. Prints a Markdown section.

    python -m benchmarks.soak                          # 30 minutes, 500 nodes, restart every 5 min, 2 pauses
    python -m benchmarks.soak --minutes 3 --broker-restart-every 1 --influx-pauses 1 --influx-pause-s 30   # smoke

The header names the commit and how many source files in the checkout differ from it (the processes import what is
on disk). To measure exactly one commit, run it from an exported tree with the project's venv:
``git archive HEAD | tar -x -C /tmp/soak-src && cd /tmp/soak-src && /path/to/.venv/bin/python -m benchmarks.soak``.
"""

import argparse
import getpass
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from benchmarks._proc import usage
from benchmarks.ingest import start_controllers
from benchmarks.open_rtt import percentile
from controller.devstack.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parent.parent
RSS_EVERY_S = 5.0
COUNTED = {"telemetry": "Telemetry", "event": "DoorEvent", "command_result": "CommandResult"}
"""Influx measurement → the agent's message kind counted against it."""


@dataclass
class Window:
    """One fault: what, and when (monotonic and wall-clock seconds) it began and ended."""

    kind: str
    begin: float
    end: float = 0.0
    wall_begin: float = 0.0
    wall_end: float = 0.0


@dataclass
class Open:
    """One courier open: when it started (monotonic), how long it took, and its HTTP status (or error name)."""

    started: float
    seconds: float
    status: str


@dataclass
class Run:
    """What the soak recorded while it ran."""

    windows: list[Window] = field(default_factory=list)
    opens: list[Open] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)
    sim_rss: list[tuple[float, float]] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def broker_config(port: int, data: Path, autosave_s: int) -> str:
    """``deploy/mosquitto.conf`` on ``port`` with its data in ``data`` and the given autosave interval."""
    lines = []
    ours = {
        "listener": f"listener {port} 127.0.0.1",
        "persistence_location": f"persistence_location {data}/",
        "autosave_interval": f"autosave_interval {autosave_s}",
    }
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        lines.append(ours.get(key, line))
    lines.append(f"user {getpass.getuser()}")
    return "\n".join(lines) + "\n"


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    """(seconds into the soak, action) for every fault, in time order."""
    total = args.minutes * 60
    every = args.broker_restart_every * 60
    restarts = [every * k for k in range(1, int(total // every) + 1) if every * k < total] if every > 0 else []
    kills = set(restarts[len(restarts) - args.broker_kills :]) if args.broker_kills > 0 else set()
    events = [(t, "broker-kill" if t in kills else "broker-term") for t in restarts]
    slot = total / max(1, args.influx_pauses)
    events += [((k + 0.5) * slot - args.influx_pause_s / 2, "influx-pause") for k in range(args.influx_pauses)]
    return sorted(events)


class Sim:
    """The counting simulator process and its stdin/stdout command channel."""

    def __init__(self, argv: list[str], log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)

    def ask(self, command: str) -> str:
        """Send one command, return its one-line answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def wait_ready(self) -> None:
        """Return once the fleet is built."""
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit("the simulator did not start (its log is sim.log in the work directory)")

    def stop(self) -> None:
        """Quit and wait; SIGKILL when it does not stop within two minutes."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(120)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def courier(api: httpx.Client, nodes: int, every_s: float, stop: threading.Event, run: Run) -> None:
    """Open A1 of the next node every ``every_s`` seconds (a pool, so a slow open never delays the next)."""

    def one(node: str) -> None:
        started = time.monotonic()
        try:
            status = str(api.post(f"/v1/nodes/{node}/compartments/A1/open", timeout=30).status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        with run.lock:
            run.opens.append(Open(started, time.monotonic() - started, status))

    with ThreadPoolExecutor(max_workers=16) as pool:
        next_at, i = time.monotonic(), 0
        while not stop.is_set():
            pool.submit(one, f"sim-{i % nodes:04d}")
            i += 1
            next_at += every_s
            stop.wait(max(0.0, next_at - time.monotonic()))


def sampler(pids: tuple[int, int], stop: threading.Event, run: Run) -> None:
    """Controller and simulator resident memory and the load average, every :data:`RSS_EVERY_S`."""
    while not stop.is_set():
        now = time.monotonic()
        run.rss.append((now, usage(pids[0]).rss_mib))
        run.sim_rss.append((now, usage(pids[1]).rss_mib))
        run.load.append(os.getloadavg()[0])
        stop.wait(RSS_EVERY_S)


def faults(args: argparse.Namespace, broker: Mosquitto, influx: Influxd, t0: float, run: Run) -> None:
    """Carry out :func:`schedule` from ``t0``; return at the end of the soak."""
    for at, action in schedule(args):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        window = Window(action, time.monotonic(), wall_begin=time.time())
        if action == "influx-pause":
            influx.pause()
            time.sleep(args.influx_pause_s)
            influx.resume()
        else:
            if action == "broker-kill":
                broker.kill()
            else:
                broker.stop()
            time.sleep(args.broker_down_s)
            broker.start()
        window.end, window.wall_end = time.monotonic(), time.time()
        run.windows.append(window)
        print(f"soak: {action} at {at:.0f} s took {window.end - window.begin:.1f} s", file=sys.stderr)
    time.sleep(max(0.0, t0 + args.minutes * 60 - time.monotonic()))


def stored_keys(influx: Influxd, measurement: str) -> Counter[tuple[str, int, int]]:
    """How many points of ``measurement`` InfluxDB holds per (node, boot, seq)."""
    query = f'SELECT "boot_id","seq" FROM "{measurement}" GROUP BY "node"'  # noqa: S608 - names from COUNTED
    params = {"db": "bench", "q": query, "chunked": "true", "chunk_size": "20000"}
    keys: Counter[tuple[str, int, int]] = Counter()
    with httpx.stream("GET", f"{influx.url}/query", params=params, timeout=300) as response:
        for line in response.iter_lines():
            if not line.strip():
                continue
            for result in json.loads(line).get("results", []):
                for series in result.get("series", []):
                    node = series["tags"]["node"]
                    columns = series["columns"]
                    boot, seq = columns.index("boot_id"), columns.index("seq")
                    keys.update((node, int(v[boot]), int(v[seq])) for v in series["values"])
    return keys


def stored_count(influx: Influxd, measurement: str) -> int:
    """Points of ``measurement`` in InfluxDB."""
    query = {"db": "bench", "q": f'SELECT count("seq") FROM "{measurement}"'}  # noqa: S608 - names from COUNTED
    series = httpx.get(f"{influx.url}/query", params=query, timeout=120).json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def generated_keys(record: Path) -> dict[str, dict[tuple[str, int, int], float]]:
    """Per counted measurement, each generated (node, boot, seq) with its wall-clock time of generation."""
    wanted = {kind: measurement for measurement, kind in COUNTED.items()}
    out: dict[str, dict[tuple[str, int, int], float]] = {m: {} for m in COUNTED}
    for line in record.read_text().splitlines():
        _channel, kind, node, boot, seq, wall = line.split()
        if kind in wanted:
            out[wanted[kind]][(node, int(boot), int(seq))] = float(wall)
    return out


def wait_drained(args: argparse.Namespace, sim: Sim, influx: Influxd, record: Path) -> float:
    """Stop telemetry, wait for empty outboxes (receipts cover everything) and for InfluxDB to hold all or stop
    growing; seconds waited."""
    started = time.monotonic()
    sim.ask("stale")
    deadline = started + args.drain_timeout_s
    while time.monotonic() < deadline and sim.ask("outbox") != "outbox 0 0":
        time.sleep(2.0)
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        generated = sum(len(keys) for keys in generated_keys(record).values())
        stored = sum(stored_count(influx, m) for m in COUNTED)
        if stored >= generated:
            break
        if stored != last:
            last, still_since = stored, time.monotonic()
        elif time.monotonic() - still_since > args.settle_s:
            break
        time.sleep(3.0)
    return time.monotonic() - started


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of the controller's /metrics (0 when absent)."""
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def main() -> None:
    """Run the soak and print a Markdown section for BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the faulted window")
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--interval", type=float, default=5.0, help="telemetry seconds per node")
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds to start the nodes over")
    parser.add_argument("--broker-restart-every", type=float, default=5.0, help="minutes (0: never)")
    parser.add_argument("--broker-down-s", type=float, default=5.0, help="seconds the broker stays down")
    parser.add_argument("--broker-kills", type=int, default=1, help="how many of the last restarts are SIGKILL")
    parser.add_argument("--autosave", type=int, default=60, help="mosquitto autosave_interval (compose: 60)")
    parser.add_argument("--influx-pauses", type=int, default=2)
    parser.add_argument("--influx-pause-s", type=float, default=60.0)
    parser.add_argument("--open-every", type=float, default=2.0, help="seconds between courier opens")
    parser.add_argument("--fault-tail-s", type=float, default=15.0, help="a fault window lasts this long after")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    parser.add_argument("--settle-s", type=float, default=60.0, help="stop waiting once InfluxDB stays still")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one, removed)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        _soak(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            _soak(args, Path(tmp))


def source() -> str:
    """Which code runs: the checkout's commit and how many of its source files differ from it, or the directory
    (an exported tree, e.g. ``git archive <commit> | tar -x -C soak-src-<commit>``, run from there)."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %cs"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return f"tree {REPO.name}"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "controller", "node_agent", "schemas", "benchmarks"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return f"commit {head.stdout.strip()}" + (f" + {len(dirty)} uncommitted files" if dirty else "")


def _soak(args: argparse.Namespace, tmp: Path) -> None:
    commit = source()
    date = datetime.now(UTC)
    broker = Mosquitto(tmp / "mq")
    broker.config = broker_config(broker.port, tmp / "mq" / "data", args.autosave)
    record = tmp / "generated.txt"
    run = Run()
    with broker, Influxd(tmp / "ix") as influx:
        [(controller, api)] = start_controllers(1, broker, influx, str(tmp))
        with (tmp / "sim.log").open("wb") as sim_log:
            sim = Sim(
                [
                    *(sys.executable, "-m", "benchmarks._counting_sim", f"--record={record}"),
                    *(f"--nodes={args.nodes}", f"--mqtt-url={broker.url}", f"--data-dir={tmp / 'sim'}"),
                    *(f"--interval={args.interval}", f"--ramp={args.ramp}"),
                ],
                sim_log,
            )
        try:
            sim.wait_ready()
            deadline = time.monotonic() + args.ramp + 120
            while len(api.get("/v1/nodes", params={"state": "online"}).json()) < args.nodes:
                if time.monotonic() > deadline:
                    sys.exit(f"the fleet did not come online; logs in {tmp}")
                time.sleep(1.0)
            stop = threading.Event()
            threads = [
                threading.Thread(target=courier, args=(api, args.nodes, args.open_every, stop, run)),
                threading.Thread(target=sampler, args=((controller.pid, sim.proc.pid), stop, run)),
            ]
            t0 = time.monotonic()
            for thread in threads:
                thread.start()
            try:
                faults(args, broker, influx, t0, run)
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            t_end = time.monotonic()
            drained_s = wait_drained(args, sim, influx, record)
            stored = {m: stored_keys(influx, m) for m in COUNTED}
            generated = generated_keys(record)
            metrics = api.get("/metrics").text
        finally:
            sim.stop()
            controller.terminate()
            try:
                controller.wait(60)
            except subprocess.TimeoutExpired:
                print("soak: the controller did not stop within 60 s of SIGTERM; killed", file=sys.stderr)
                controller.kill()
                controller.wait()
            api.close()
        warnings = Counter(
            m.group(1)
            for line in (tmp / "controller-0.log").read_text(errors="replace").splitlines()
            if (m := re.search(r"level=(WARNING|ERROR|CRITICAL)", line))
        )
    write_samples(args, run, t0, tmp)
    report(args, date, commit, run, t0, t_end, drained_s, generated, stored, metrics, warnings)


def write_samples(args: argparse.Namespace, run: Run, t0: float, tmp: Path) -> None:
    """``rss.csv`` and ``opens.csv`` in the work directory, for a closer look (kept with ``--keep``)."""
    with (tmp / "rss.csv").open("w") as csv:
        csv.write("seconds,controller_mib,simulator_mib\n")
        for (t, mib), (_, sim_mib) in zip(run.rss, run.sim_rss, strict=False):
            csv.write(f"{t - t0:.1f},{mib:.2f},{sim_mib:.2f}\n")
    with (tmp / "opens.csv").open("w") as csv:
        csv.write("started_s,seconds,status,window\n")
        for o in run.opens:
            csv.write(f"{o.started - t0:.2f},{o.seconds:.3f},{o.status},{classify(args, run, o)}\n")


def classify(args: argparse.Namespace, run: Run, o: Open) -> str:
    """``broker``, ``influx`` or ``outside``: the fault window the open overlapped (broker first)."""
    kinds = [
        w.kind.split("-")[0]
        for w in run.windows
        if o.started < w.end + args.fault_tail_s and o.started + o.seconds > w.begin
    ]
    return "broker" if "broker" in kinds else "influx" if "influx" in kinds else "outside"


def nearest(samples: list[tuple[float, float]], when: float) -> float:
    """The sampled value closest in time to ``when``."""
    return min(samples, key=lambda sample: abs(sample[0] - when))[1]


def slope_mib_per_h(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (monotonic s, MiB) in MiB per hour."""
    if len(samples) < 3:
        return float("nan")
    xs, ys = [t for t, _ in samples], [m for _, m in samples]
    return statistics.linear_regression(xs, ys).slope * 3600


def report(
    args: argparse.Namespace,
    date: datetime,
    commit: str,
    run: Run,
    t0: float,
    t_end: float,
    drained_s: float,
    generated: dict[str, dict[tuple[str, int, int], float]],
    stored: dict[str, Counter[tuple[str, int, int]]],
    metrics: str,
    warnings: Counter[str],
) -> None:
    """Print the Markdown section."""
    cores = os.cpu_count()
    print(
        f"Machine: `{platform.node()}` {platform.machine()}, {cores} cores, Python {platform.python_version()}; ",
        end="",
    )
    print(f"{date:%Y-%m-%d %H:%M} UTC; {commit}")
    load = run.load or [0.0]
    print(f"Load average (1 min) in the soak: mean {statistics.mean(load):.1f}, max {max(load):.1f} on {cores} cores\n")
    kinds = Counter(w.kind for w in run.windows)
    print(
        f"{args.nodes} nodes, telemetry every {args.interval:g} s, {args.minutes:g} min faulted window; "
        f"broker restarts: {kinds['broker-term']} SIGTERM + {kinds['broker-kill']} SIGKILL "
        f"(down {args.broker_down_s:g} s each, autosave {args.autosave} s); "
        f"InfluxDB frozen {kinds['influx-pause']}x {args.influx_pause_s:g} s; "
        f"an open every {args.open_every:g} s; drained in {drained_s:.0f} s after the window\n"
    )
    report_counts(args, run, t0, generated, stored)
    telemetry_dup = metric(metrics, "lockerfleet_messages_duplicate_total", '{kind="telemetry"}')
    event_dup = metric(metrics, "lockerfleet_messages_duplicate_total", '{kind="event"}')
    print(
        f"\nController: redeliveries recognised and skipped {telemetry_dup:,.0f} telemetry, {event_dup:,.0f} events; "
        f"InfluxDB write retries {metric(metrics, 'lockerfleet_influx_write_retries_total'):,.0f}; "
        f"log lines {', '.join(f'{k} {v}' for k, v in sorted(warnings.items())) or 'no warnings'}\n"
    )
    report_opens(args, run)
    report_memory(run, t0, t_end)
    windows = sorted(run.windows, key=lambda w: w.begin)
    print("\nFault windows (s into the soak): ", end="")
    print(", ".join(f"{w.kind} {w.begin - t0:.0f} to {w.end - t0:.0f}" for w in windows))


def report_counts(
    args: argparse.Namespace,
    run: Run,
    t0: float,
    generated: dict[str, dict[tuple[str, int, int], float]],
    stored: dict[str, Counter[tuple[str, int, int]]],
) -> None:
    """Generated against stored, by (node, boot, seq); the lost ones by the fault that followed them."""
    print("| messages (by node, boot, seq) | generated | stored | lost | stored twice | stored, never generated |")
    print("|---|---|---|---|---|---|")
    lost_at: Counter[str] = Counter()
    windows = sorted(run.windows, key=lambda w: w.wall_begin)
    for measurement, kind in COUNTED.items():
        made, kept = generated[measurement], stored[measurement]
        lost = [key for key in made if key not in kept]
        twice = sum(1 for n in kept.values() if n > 1)
        extra = sum(1 for key in kept if key not in made)
        ratio = f" ({len(kept) / len(made):.4f})" if made else ""
        print(f"| {measurement} ({kind}) | {len(made):,} | {len(kept):,}{ratio} | {len(lost):,} | {twice} | {extra} |")
        for key in lost:
            when = made[key]
            after = next((w for w in windows if w.wall_end + args.fault_tail_s >= when), None)
            lost_at[f"{after.kind} at {after.begin - t0:.0f} s" if after else "after the last fault"] += 1
    if lost_at:
        print("\nLost messages by the first fault window ending after their generation: ", end="")
        print("; ".join(f"{where}: {n}" for where, n in sorted(lost_at.items())))


def report_opens(args: argparse.Namespace, run: Run) -> None:
    """Open latency during each kind of fault, with the opens outside faults as the reference."""
    print("| courier opens (HTTP answer) | opens | not 200 | p50 (ms) | p99 (ms) | p99 ratio to outside |")
    print("|---|---|---|---|---|---|")
    groups: dict[str, list[Open]] = {"outside": [], "influx": [], "broker": []}
    for o in run.opens:
        groups[classify(args, run, o)].append(o)
    ok_outside = [o.seconds for o in groups["outside"] if o.status == "200"]
    ref99 = percentile(ok_outside, 99) if ok_outside else float("nan")
    labels = {
        "outside": "outside faults (reference)",
        "influx": "InfluxDB frozen (+ tail)",
        "broker": "broker down (+ tail)",
    }
    for name, opens in groups.items():
        ok = [o.seconds for o in opens if o.status == "200"]
        bad = Counter(o.status for o in opens if o.status != "200")
        bad_text = f"{sum(bad.values())}" + (f" ({', '.join(f'{s}: {n}' for s, n in bad.items())})" if bad else "")
        p50 = f"{percentile(ok, 50) * 1000:.0f}" if ok else "-"
        p99 = f"{percentile(ok, 99) * 1000:.0f}" if ok else "-"
        ratio = f"{percentile(ok, 99) / ref99:.2f}x" if ok and ok_outside else "-"
        print(f"| {labels[name]} | {len(opens)} | {bad_text} | {p50} | {p99} | {ratio} |")


def report_memory(run: Run, t0: float, t_end: float) -> None:
    """Resident memory of the controller and the simulator: first and last minute, peak, slopes."""
    print("\n| resident memory | controller | simulator |")
    print("|---|---|---|")
    rows: list[list[str]] = [[], [], [], [], []]
    for samples in (run.rss, run.sim_rss):
        window = [(t, m) for t, m in samples if t0 <= t <= t_end]
        half = [(t, m) for t, m in window if t >= (t0 + t_end) / 2]
        first = statistics.mean([m for t, m in window if t < t0 + 60] or [float("nan")])
        last = statistics.mean([m for t, m in window if t > t_end - 60] or [float("nan")])
        rows[0].append(f"{first:.0f}")
        rows[1].append(f"{last:.0f} ({last / first:.2f}x)")
        rows[2].append(f"{max((m for _, m in window), default=0):.0f}")
        rows[3].append(f"{slope_mib_per_h(window):+.1f}")
        rows[4].append(f"{slope_mib_per_h(half):+.1f}")
    names = [
        "first minute (MiB, reference)",
        "last minute (MiB, ratio to first)",
        "peak (MiB)",
        "slope, whole window (MiB/h)",
        "slope, second half (MiB/h)",
    ]
    for name, row in zip(names, rows, strict=True):
        print(f"| {name} | {' | '.join(row)} |")
    marks = [t0 + k * (t_end - t0) / 6 for k in range(7)]
    at = [nearest(run.rss, m) for m in marks] if run.rss else []
    print("\nController resident memory at each sixth of the window (MiB): " + ", ".join(f"{m:.0f}" for m in at))


if __name__ == "__main__":
    main()
