"""Rollout engine decision cost: a staged rollout to 10,000 simulated nodes, in process (the pure core, no I/O).

The fleet: N nodes in N/10 sites. Simulated nodes walk downloading → … → testing → succeeded ``--update-s`` seconds
after their update command; the simulated clock moves 1 s per ``step``. Measured with CPU time
(``time.process_time``) inside the engine only: ``step`` (timeouts, thresholds, gates and dispatch over the whole
fleet snapshot) and ``on_report`` (six reports per node). Printed: dispatch decisions per minute of engine CPU, the
simulated duration under the policy's rate limit, the cost of one ``step``, the wall time from the report that
breaches a failure threshold to ``Aborted`` (the abort cancels every queued node in the same call), and the store
round trip of a 10,000-node rollout. No assertions: figures for BENCHMARKS.md.

    python -m benchmarks.rollout_engine --nodes 10000
"""

import argparse
import json
import platform
import resource
import time
from datetime import UTC, datetime, timedelta

from controller.rollouts import (
    Aborted,
    Action,
    Completed,
    DispatchUpdate,
    NodeFacts,
    NodeState,
    Rollout,
    RolloutPolicy,
    Target,
    WaveRules,
)

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
PROGRESS = ("downloading", "verifying", "installing", "restarting", "testing", "succeeded")


def fleet_of(nodes: int) -> dict[str, NodeFacts]:
    """``nodes`` nodes on 1.3.0, ten per site."""
    return {
        f"n{i:05d}": NodeFacts(f"n{i:05d}", f"site{i // 10:04d}", "pi4-locker", "1.3.0", {"ring": "stable"})
        for i in range(nodes)
    }


class Run:
    """One simulated rollout with CPU time kept per engine call kind."""

    def __init__(self, fleet: dict[str, NodeFacts], policy: RolloutPolicy) -> None:
        self.fleet = fleet
        self.rollout = Rollout.create("bench", "1.4.0", Target(version="<1.4.0"), policy, fleet.values(), T0)
        self.step_cpu = self.report_cpu = 0.0
        self.steps = self.dispatched = 0
        self.slowest_step = 0.0
        self.due: dict[int, list[str]] = {}

    def step(self, t: int) -> list[Action]:
        """One engine step at T0 + t seconds."""
        now = T0 + timedelta(seconds=t)
        started = time.process_time()
        actions = self.rollout.step(now, self.fleet)
        spent = time.process_time() - started
        self.step_cpu += spent
        self.slowest_step = max(self.slowest_step, spent)
        self.steps += 1
        return actions

    def report_all(self, node: str, t: int) -> list[Action]:
        """Walk ``node`` to its commit at T0 + t seconds."""
        now = T0 + timedelta(seconds=t)
        started = time.process_time()
        actions = [a for state in PROGRESS for a in self.rollout.on_report(node, state, None, now)]
        self.report_cpu += time.process_time() - started
        return actions

    def until_done(self, update_s: int, limit_s: int = 30 * 86400) -> int:
        """Run to Completed or Aborted; the simulated seconds it took."""
        for t in range(limit_s):
            actions = self.step(t)
            for node in self.due.pop(t, []):
                actions += self.report_all(node, t)
            for action in actions:
                if isinstance(action, DispatchUpdate):
                    self.dispatched += 1
                    self.due.setdefault(t + update_s, []).append(action.node_id)
                if isinstance(action, Completed | Aborted):
                    return t
        return limit_s


def breach_to_abort(fleet: dict[str, NodeFacts], update_s: int) -> tuple[float, int, int]:
    """Wall seconds of the report that breaches a wave's threshold, with the wave's size and nodes it cancelled."""
    policy = RolloutPolicy(
        canary_count=len(fleet) // 100,
        max_dispatch_per_minute=100_000,
        max_updating_per_site=10,
        waves=WaveRules(success_percent=95, failure_count=5, failure_percent=None),
    )
    run = Run(fleet, policy)
    for t in range(10 * update_s):
        actions = run.step(t)
        sent = [a.node_id for a in actions if isinstance(a, DispatchUpdate)]
        if run.rollout.current_wave >= 3 and sent:  # a big wave just went out: fail six of it
            now = T0 + timedelta(seconds=t + 1)
            queued_before = run.rollout.progress().totals
            for node in sent[:5]:
                run.rollout.on_report(node, "failed", "disk_full", now)
            started = time.perf_counter()
            result = run.rollout.on_report(sent[5], "failed", "disk_full", now)
            wall = time.perf_counter() - started
            assert isinstance(result[0], Aborted), result[:1]
            cancelled = run.rollout.progress().totals[NodeState.CANCELLED] - queued_before[NodeState.CANCELLED]
            return wall, len(sent), cancelled
        for node in run.due.pop(t, []):
            run.report_all(node, t)
        for node in sent:
            run.due.setdefault(t + update_s, []).append(node)
    raise RuntimeError("the rollout never reached wave 3")


def main() -> None:
    """Run the scenarios and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--update-s", type=int, default=120, help="Simulated seconds from command to commit.")
    args = parser.parse_args()
    fleet = fleet_of(args.nodes)

    print(f"rollout_engine: {args.nodes} nodes in {args.nodes // 10} sites; commit {args.update_s} s after dispatch")
    print(f"python {platform.python_version()} on {platform.machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(
        "| scenario | dispatches | engine CPU s (step + reports) | dispatch decisions / CPU min | slowest step ms "
        "| simulated duration |"
    )
    print("|---|---|---|---|---|---|")
    scenarios = {
        "uncapped, K=10 (whole site)": RolloutPolicy(
            canary_count=100, max_dispatch_per_minute=1_000_000, max_updating_per_site=10
        ),
        "10,000/min cap, K=2": RolloutPolicy(canary_count=100, max_dispatch_per_minute=10_000, max_updating_per_site=2),
        "defaults (1 canary, 1,000/min, K=1)": RolloutPolicy(),
    }
    for name, policy in scenarios.items():
        run = Run(fleet, policy)
        took = run.until_done(args.update_s)
        cpu = run.step_cpu + run.report_cpu
        per_min = run.dispatched / cpu * 60 if cpu else float("inf")
        print(
            f"| {name} | {run.dispatched} | {run.step_cpu:.2f} + {run.report_cpu:.2f} | {per_min:,.0f} "
            f"| {1000 * run.slowest_step:.1f} | {took / 60:.1f} min ({run.steps} steps) |"
        )

    wall, wave, cancelled = breach_to_abort(fleet, args.update_s)
    print(
        f"\nbreach → Aborted: {1000 * wall:.2f} ms wall for the breaching on_report "
        f"(wave of {wave} in flight, {cancelled} nodes cancelled in the same call)"
    )

    rollout = Run(fleet, RolloutPolicy()).rollout
    started = time.perf_counter()
    text = json.dumps(rollout.to_dict())
    dumped = time.perf_counter() - started
    started = time.perf_counter()
    Rollout.from_dict(json.loads(text))
    loaded = time.perf_counter() - started
    print(
        f"store round trip: to_dict+json {1000 * dumped:.1f} ms, json+from_dict {1000 * loaded:.1f} ms, "
        f"{len(text) / 1024:.0f} KiB"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
