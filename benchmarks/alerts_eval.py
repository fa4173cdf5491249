"""Alert evaluation cost: every rule for 10,000 synthetic nodes, in process (the pure core, no I/O).

The fleet: N nodes in N/100 sites, 8 compartments each; every node has a full battery window (48 points, so the
Theil-Sen fit is warm), a trained temperature baseline, and one compartment in three with door history (jams,
switch latencies); a share of nodes drain toward a swap alert, run hot, or go silent. Measured with CPU time
(``time.process_time``): one telemetry sample per node through ``on_telemetry`` (a full fleet round at 10 s
telemetry), and ``tick`` (every rule for every node and site: what must fit in one evaluation period), over
``--ticks`` 10 s periods. References from the same run: the controller's evaluation period (``--alert-eval-s``,
15 s by default), which a tick must fit in, and a static threshold check over the same nodes (one dict read and one
comparison per node: the least any evaluator does). Peak RSS of the process is printed at the end, with the
controller's code imported before the fleet was built as the reference.

    python -m benchmarks.alerts_eval --nodes 10000 --ticks 12
"""

import argparse
import math
import platform
import random
import resource
import statistics
import time

import controller.service  # noqa: F401 - the controller's code, so the reference RSS is a controller's
from controller.alerts import AlertMonitor, CompartmentReading, DoorEdge, DoorOutcome, NodeInfo, TelemetrySample
from controller.settings import ControllerSettings

EVAL_PERIOD_S = ControllerSettings.model_fields["alert_eval_s"].default
COMPARTMENTS = tuple(f"C{i}" for i in range(8))
STEP_S = 450.0  # one battery point per window_h / max_points (6 h / 48)


def peak_rss_mib() -> float:
    """Peak resident set of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sample(node: str, site: str, t: float, rng: random.Random, drain: float, hot: bool) -> TelemetrySample:
    """A telemetry sample at ``t`` hours of drain ``drain`` %/h."""
    temp = 20 + 3 * math.sin(t / 20000) + rng.gauss(0, 0.3) + (25 if hot else 0)
    readings = tuple(CompartmentReading(c, door_open=False, locked=True) for c in COMPARTMENTS)
    return TelemetrySample(
        node_id=node,
        ts=t,
        received_at=t,
        soc_pct=max(0.0, 95 - drain * t / 3600 + rng.gauss(0, 0.2)),
        charging=False,
        power_source="battery",
        cycle_count=300,
        temp_c=temp,
        site_id=site,
        compartments=readings,
    )


def build(nodes: int, rng: random.Random) -> tuple[AlertMonitor, list[tuple[str, str, float, bool]], float]:
    """A monitor with ``nodes`` warmed nodes; returns it, the node list and the time reached."""
    mon = AlertMonitor()
    fleet = [(f"n{i:05d}", f"site-{i // 100:03d}", 8.0 if i % 10 == 0 else 1.0, i % 50 == 0) for i in range(nodes)]
    for node, site, _, _ in fleet:
        mon.set_node(NodeInfo(node, site), 0.0)
    t = 0.0
    for _ in range(48):  # a full battery window and a baseline for every node
        for node, site, drain, _ in fleet:
            mon.warm(sample(node, site, t, rng, drain, hot=False))
        t += STEP_S
    for index, (node, _, _, _) in enumerate(fleet):
        for compartment in COMPARTMENTS[: 1 + index % 3]:
            for k in range(25):
                mon.on_door_outcome(DoorOutcome(node, compartment, t + k, "opened", 100 + rng.randrange(20)), t + k)
            mon.on_door_edge(DoorEdge(node, compartment, t + 30, opened=False), t + 30)
        if index % 7 == 0:
            mon.on_door_outcome(DoorOutcome(node, COMPARTMENTS[0], t + 40, "jammed"), t + 40)
    return mon, fleet, t + 60


def threshold_loop(last_soc: dict[str, float], floor_pct: float = 20.0) -> tuple[float, int]:
    """The reference: a static threshold check over every node (one read, one comparison); CPU s and nodes low."""
    started = time.process_time()
    low = 0
    for soc in last_soc.values():
        if soc <= floor_pct:
            low += 1
    return time.process_time() - started, low


def main() -> None:
    """Build the fleet, time one telemetry round and ``--ticks`` ticks, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base_rss = peak_rss_mib()
    started = time.process_time()
    mon, fleet, t = build(args.nodes, rng)
    build_cpu = time.process_time() - started

    silent = {node for i, (node, *_) in enumerate(fleet) if i % 25 == 0}

    def telemetry_round(now: float) -> tuple[float, int]:
        started = time.process_time()
        count = 0
        for node, site, drain, hot in fleet:
            if node not in silent:
                count += len(mon.on_telemetry(sample(node, site, now, rng, drain, hot), now))
        return time.process_time() - started, count

    fit_cpu, notes = telemetry_round(t)  # a new battery point for every node: every node refits its slope
    rounds: list[tuple[float, float]] = []
    for k in range(args.ticks):  # 10 s periods: a telemetry round, then a tick; silent nodes go offline
        now = t + 10 * (k + 1)
        round_cpu, count = telemetry_round(now - 5)
        started = time.process_time()
        count += len(mon.tick(now))
        rounds.append((round_cpu, time.process_time() - started))
        notes += count

    last_soc = {node: 95.0 - drain for node, _, drain, _ in fleet}
    reference = statistics.median(threshold_loop(last_soc)[0] for _ in range(max(args.ticks, 5)))
    tick_cpu = statistics.median(k for _, k in rounds)
    open_alerts = len(mon.engine.open_records())
    print(f"alerts_eval: {args.nodes} nodes, {args.nodes // 100 or 1} sites, {len(COMPARTMENTS)} compartments each")
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu ?'}\n")
    rows = [
        ("build and warm the fleet (48 battery points each)", build_cpu),
        ("telemetry round, every node refits its slope (once per 450 s)", fit_cpu),
        (f"telemetry round, median of {len(rounds)} periods", statistics.median(r for r, _ in rounds)),
        (f"tick (every rule, node and site), median of {len(rounds)}", tick_cpu),
        ("tick, slowest", max(k for _, k in rounds)),
        ("reference: static threshold check over the same nodes, median", reference),
    ]
    print("| step | CPU s | per node µs |")
    print("|---|---|---|")
    for label, cpu in rows:
        print(f"| {label} | {cpu:.4f} | {1e6 * cpu / args.nodes:.2f} |")
    print(f"\nnotifications {notes}, open alerts {open_alerts}")
    slowest = max(k for _, k in rounds)
    print(
        f"tick / evaluation period ({EVAL_PERIOD_S:g} s): median {tick_cpu / EVAL_PERIOD_S:.4f}, "
        f"slowest {slowest / EVAL_PERIOD_S:.4f}; tick / threshold loop: {tick_cpu / max(reference, 1e-9):.0f}x"
    )
    print(f"peak RSS {peak_rss_mib():.0f} MiB (the controller's code imported, before the fleet: {base_rss:.0f} MiB)")


if __name__ == "__main__":
    main()
