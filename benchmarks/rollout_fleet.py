"""A rollout to a simulated fleet of real agents: dispatch rate, time from threshold breach to abort, controller cost.

A private mosquitto and influxd, one `lockerfleet controller` process and as many `lockerfleet-agent sim` processes as
the descriptor limit needs (`--per-process` nodes each, spread with `--node-offset`). Every node starts on 1.0.0 and
pins the release key; the rollout installs 1.1.0 (downloaded from the controller, verified, installed into a sim slot,
restarted in-process, health-checked, committed). A share of the last wave's nodes fails its trial starts
(`--ota-fail`), so that wave breaches its 1 % failure threshold and the rollout aborts. `mosquitto_sub` records when
every update command and every `ota` report crossed the broker.

Reference, measured in the same run on the same broker: publishing the same update command payload with
`mosquitto_pub`, once per invocation (a naive shell loop) and as a stream over one connection (`-l`). AWS IoT Jobs'
documented cap of 1,000 executions per minute (`maximumPerMinute`) is context, not a measurement.

    python -m benchmarks.rollout_fleet --nodes 10000
"""

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks._proc import Usage, usage
from benchmarks.ingest import start_controllers
from controller.devstack.services import Influxd, Mosquitto
from controller.releases import create_key, make_manifest, publish, sign
from controller.releases.keys import public_entry, write_trusted_keys
from controller.rollouts import NodeFacts, RolloutPolicy, Target
from controller.rollouts.targeting import select_targets
from node_agent.sim.fleet import node_capacity, raise_open_file_limit
from schemas.semver import SemVer

AWS_IOT_JOBS_PER_MIN = 1000
START, RELEASE, MODEL = "1.0.0", "1.1.0", "sim-locker-8"


@dataclass(frozen=True)
class Crossing:
    """One message as mosquitto_sub saw it: when (unix s), topic, payload."""

    at: float
    topic: str
    payload: dict[str, Any]


def main() -> None:
    """Run the rollout and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--per-process", type=int, default=0, help="nodes per sim process (default: as many as fit)")
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--fail-share", type=float, default=0.03, help="share of the last wave whose trials fail")
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds each sim process spreads its starts over")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--work-dir", default="", help="keep broker, stores and logs here (default: a temp dir)")
    args = parser.parse_args()
    per_process = args.per_process or node_capacity(raise_open_file_limit())
    sites = [f"s{i:03d}" for i in range(args.sites)]
    node_ids = [f"sim-{i:04d}" for i in range(args.nodes)]
    policy = RolloutPolicy(max_dispatch_per_minute=1_000_000, max_updating_per_site=math.ceil(args.nodes / args.sites))
    site_of = {n: sites[i * len(sites) // len(node_ids)] for i, n in enumerate(node_ids)}
    waves = wave_of(site_of, policy)
    last = [n for n in node_ids if waves[n] == max(waves.values())]
    failing = set(last[:: max(1, round(1 / args.fail_share))]) if args.fail_share else set()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="rollout-fleet-", dir="/dev/shm"))
    done = False
    try:
        with Mosquitto(work / "mq") as broker, Influxd(work / "ix") as influx:
            tmp = str(work)
            releases, keys = release(work)
            [(controller, api)] = start_controllers(1, broker, influx, tmp, releases_dir=str(releases))
            commands_log, events_log = work / "commands.log", work / "events.log"
            subs = [
                subscribe(broker, "lockers/v1/+/command", commands_log),
                subscribe(broker, "lockers/v1/+/event", events_log),
            ]
            sims: list[subprocess.Popen[bytes]] = []
            try:
                for offset in range(0, args.nodes, per_process):
                    count = min(per_process, args.nodes - offset)
                    own = sorted(n for n in failing if offset <= int(n.split("-")[1]) < offset + count)
                    # A sim gives its i-th node site[(offset + i) % len(site)]: a list in that rotation gives each
                    # node its block's site, so every wave (round robin over sites) spans every sim process.
                    rotated = [""] * count
                    for i in range(count):
                        rotated[(offset + i) % count] = site_of[node_ids[offset + i]]
                    sims.append(start_sim(broker, work, offset, count, rotated, keys, own, args.ramp))
                online_s = wait_online(api, [controller, *sims], args.nodes, args.timeout, tmp)
                time.sleep(5)  # let the births' provisioning commands settle
                run = follow(api, controller.pid, policy, args.timeout)
                time.sleep(3)  # reports and commands still crossing
                references = reference_rates(broker, commands_log)
            finally:
                stop([*sims, controller, *subs])
        report(args, len(sims), online_s, run, waves, read_log(commands_log), read_log(events_log), references)
        done = True
    finally:
        if done and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs and data kept in {work}", file=sys.stderr)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM everything, give it two minutes (a sim closes thousands of agents), then SIGKILL what is left."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + 120
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass(frozen=True)
class Run:
    """One rollout as the controller ran it, and what the controller process spent."""

    rollout_id: str
    view: dict[str, Any]
    created_at: float
    finished_at: float
    before: Usage
    after: Usage
    peak_rss_mib: float


def wait_online(
    api: httpx.Client, processes: list[subprocess.Popen[bytes]], nodes: int, timeout: float, tmp: str
) -> float:
    """Seconds until the controller sees every node online (the controller and the sims must keep running)."""
    started = time.monotonic()
    online = 0
    while online < nodes:
        if time.monotonic() - started > timeout or any(p.poll() is not None for p in processes):
            sys.exit(f"only {online} of {nodes} nodes came online (or a process exited); logs in {tmp}")
        time.sleep(2)
        online = len(get(api, "/v1/nodes", state="online"))
    return time.monotonic() - started


def get(api: httpx.Client, path: str, **params: str) -> Any:
    """GET ``path`` as JSON, asking again when a busy controller drops the connection (a keep-alive race)."""
    for _ in range(10):
        try:
            return api.get(path, params=params, timeout=60).json()
        except httpx.TransportError as exc:
            print(f"controller busy ({exc!r}); asking again", file=sys.stderr)
            time.sleep(1)
    sys.exit(f"the controller does not answer GET {path}")


def follow(api: httpx.Client, pid: int, policy: RolloutPolicy, timeout: float) -> Run:
    """Create the rollout and poll it until it finished, sampling the controller's memory every second."""
    before = usage(pid)
    created_at = time.time()
    created = api.post("/v1/rollouts", json={"release_version": RELEASE, "policy": policy.model_dump(mode="json")})
    if created.status_code != 201:
        sys.exit(f"rollout refused: {created.status_code} {created.text}")
    rid = created.json()["rollout_id"]
    peak = before.rss_mib
    while not (view := get(api, f"/v1/rollouts/{rid}"))["finished"]:
        if time.time() - created_at > timeout:
            sys.exit(f"rollout not finished after {timeout} s: {view['totals']}")
        peak = max(peak, usage(pid).rss_mib)
        time.sleep(1)
    return Run(rid, view, created_at, time.time(), before, usage(pid), max(peak, usage(pid).rss_mib))


def wave_of(site_of: dict[str, str], policy: RolloutPolicy) -> dict[str, int]:
    """The wave the controller puts each node in (its own targeting code, on the fleet the sims will report)."""
    fleet = [NodeFacts(n, site, MODEL, START, {}) for n, site in site_of.items()]
    ordered = select_targets(Target(), fleet, SemVer.parse(RELEASE))
    sizes = policy.wave_sizes(len(ordered))
    numbers = [w for w, size in enumerate(sizes) for _ in range(size)]
    return {node.node_id: w for node, w in zip(ordered, numbers, strict=True)}


def release(tmp: Path) -> tuple[Path, Path]:
    """Publish RELEASE (a small tar) signed by a fresh key; return the releases dir and the nodes' trusted keys."""
    payload = tmp / "VERSION"
    payload.write_text(RELEASE)
    artifact = tmp / f"lockerfleet-{RELEASE}.tar"
    with tarfile.open(artifact, "w") as tar:
        tar.add(payload, arcname="VERSION")
    key = tmp / "release.key"
    create_key(key)
    manifest = make_manifest(
        artifact,
        version=SemVer.parse(RELEASE),
        hardware_models=[MODEL],
        min_version=SemVer.parse(START),
        now=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
        valid_for=timedelta(days=1),
    )
    releases = tmp / "releases"
    publish(sign(manifest, key), artifact, releases)
    keys = tmp / "trusted_keys.json"
    write_trusted_keys(keys, [public_entry(key)])
    return releases, keys


def subscribe(broker: Mosquitto, topic_filter: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["mosquitto_sub", "-p", str(broker.port), "-t", topic_filter, "-F", "%U %t %p", "-q", "1"], stdout=out
        )


def start_sim(
    broker: Mosquitto, tmp: Path, offset: int, count: int, sites: list[str], keys: Path, failing: list[str], ramp: float
) -> subprocess.Popen[bytes]:
    with Path(tmp, f"sim-{offset}.log").open("wb") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-c", "from node_agent.cli import main; raise SystemExit(main())", "sim"),
                *(f"--nodes={count}", f"--node-offset={offset}", f"--mqtt-url={broker.url}"),
                *(f"--data-dir={tmp / 'sim'}", "--telemetry-interval-s=600", f"--ramp-s={ramp}", "--jam-share=0"),
                *(f"--sites={json.dumps(sites)}", f"--trusted-keys-file={keys}", f"--ota-fail={json.dumps(failing)}"),
                f"--firmware-version={START}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def read_log(path: Path) -> list[Crossing]:
    crossings = []
    for line in path.read_text().splitlines():
        at, topic, payload = line.split(" ", 2)
        crossings.append(Crossing(float(at), topic, json.loads(payload)))
    return crossings


def reference_rates(broker: Mosquitto, commands_log: Path) -> tuple[float, float]:
    """Update commands per minute with mosquitto_pub: one invocation per command (200 runs), and one stream (-l)."""
    updates = [c for c in read_log(commands_log) if c.payload.get("type") == "update"]
    payload = json.dumps(updates[-1].payload, separators=(",", ":"))
    base = ["mosquitto_pub", "-p", str(broker.port), "-q", "1"]
    runs = 200
    started = time.perf_counter()
    for i in range(runs):
        subprocess.run([*base, "-t", f"bench/ref/{i}", "-m", payload], check=True)
    naive = runs / (time.perf_counter() - started) * 60
    lines = 10_000
    started = time.perf_counter()
    subprocess.run([*base, "-t", "bench/ref/stream", "-l"], input=(payload + "\n") * lines, text=True, check=True)
    stream = lines / (time.perf_counter() - started) * 60
    return naive, stream


def report(
    args: argparse.Namespace,
    processes: int,
    online_s: float,
    run: Run,
    waves: dict[str, int],
    commands: list[Crossing],
    events: list[Crossing],
    references: tuple[float, float],
) -> None:
    """Print the figures as a Markdown table."""
    rid, view, created_at = run.rollout_id, run.view, run.created_at
    naive, stream = references
    updates = [c for c in commands if c.payload.get("type") == "update" and c.payload.get("rollout_id") == rid]
    first, last = updates[0].at, updates[-1].at
    overall = len(updates) / max(last - first, 1e-9) * 60
    per_wave: dict[int, list[float]] = {}
    for command in updates:
        per_wave.setdefault(waves[command.payload["node_id"]], []).append(command.at)
    big = max(per_wave, key=lambda w: len(per_wave[w]))
    big_spread = max(per_wave[big]) - min(per_wave[big])
    peak = len(per_wave[big]) / max(big_spread, 1e-3) * 60
    ota = [e.payload for e in events if e.payload.get("kind") == "ota" and e.payload.get("rollout_id") == rid]
    succeeded = [datetime.fromisoformat(e["ts"]).timestamp() for e in ota if e["state"] == "succeeded"]
    aborts = [datetime.fromisoformat(h["at"]).timestamp() for h in view["history"] if h["event"] == "abort"]
    abort_line = "| breach → abort (s) | not aborted | | |"
    after_abort = 0
    if aborts:
        aborted = aborts[0]
        failures = [
            datetime.fromisoformat(e["ts"]).timestamp()
            for e in ota
            if e["state"] in {"failed", "rolled_back", "timed_out"}
            and datetime.fromisoformat(e["ts"]).timestamp() <= aborted
        ]
        breach = max(failures)
        abort_line = (
            f"| breach → abort (s): breaching report made → abort decided | {aborted - breach:.3f} | ≤ 1 s target | |"
        )
        after_abort = sum(1 for c in updates if c.at > aborted + 0.001)
    cpu_s = run.after.cpu_s - run.before.cpu_s
    span = run.finished_at - created_at
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"{args.nodes} nodes in {processes} sim processes, {args.sites} sites; online after {online_s:.0f} s; "
        f"rollout {view['phase']} in {span:.0f} s; waves {[w['size'] for w in view['waves']]}; totals "
        f"{ {k: v for k, v in view['totals'].items() if v} }"
    )
    print("| figure | measured | reference | ratio |")
    print("|---|---|---|---|")
    print(f"| update commands dispatched | {len(updates)} | {args.nodes} targets | {len(updates) / args.nodes:.2f} |")
    print(
        f"| dispatch rate, largest wave ({len(per_wave[big])} commands in {big_spread:.2f} s, per min) | {peak:,.0f} "
        f"| {stream:,.0f} mosquitto_pub -l stream | {peak / stream:.2f} |"
    )
    print(
        f"| dispatch rate, first to last command (per min, waves waiting on the previous included) | {overall:,.0f} "
        f"| {naive:,.0f} mosquitto_pub per invocation | {overall / naive:.2f} |"
    )
    aws = AWS_IOT_JOBS_PER_MIN
    print(f"| … against AWS IoT Jobs' documented cap (per min) | {overall:,.0f} | {aws:,} | {overall / aws:.1f} |")
    if succeeded:
        throughput = len(succeeded) / max(max(succeeded) - created_at, 1e-9) * 60
        print(
            f"| nodes committed per min, end to end | {throughput:,.0f} | {aws:,} (AWS cap) | {throughput / aws:.1f} |"
        )
    print(abort_line)
    print(f"| update commands after the abort | {after_abort} | 0 | |")
    print(
        f"| controller CPU during the rollout (% of one core) | {100 * cpu_s / span:.1f} | 100 | {cpu_s / span:.2f} |"
    )
    rss = f"{run.after.rss_mib:.0f} / {run.peak_rss_mib:.0f}"
    print(f"| controller resident memory (MiB, at the end / peak during the rollout) | {rss} | | |")


if __name__ == "__main__":
    main()
