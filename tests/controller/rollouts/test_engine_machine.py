"""Any interleaving of clock steps, node reports, fleet changes and operator actions against the engine's promises.

Promises checked: K per site is never exceeded by a dispatch; nothing is dispatched while paused or after an abort;
a failed canary aborts and nothing starts after it; a node is succeeded only on its own commit report; no in-flight
node outlives its step timeout past a step; counts add up; and a rollout restored from its stored document makes
exactly the decisions of the original from then on.
"""

import json
from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from controller.rollouts import (
    Aborted,
    Action,
    DispatchUpdate,
    IllegalReportError,
    NodeState,
    Phase,
    PhaseError,
    Rollout,
    RolloutError,
    RolloutPolicy,
    WaveRules,
)
from controller.rollouts.states import FAILURES, IN_FLIGHT, REPORT_MOVES, REPORTED
from tests.controller.rollouts.fleet import T0, facts, fleet_of, start

REASONS = st.sampled_from([None, "download_error", "network_error", "disk_full", "door_open"])
OPERATOR = "ops@test"


class RolloutMachine(RuleBasedStateMachine):
    """Drives one rollout (and, once saved, its restored twin in lockstep)."""

    def __init__(self) -> None:
        super().__init__()
        self.rollout: Rollout
        self.twin: Rollout | None = None
        self.fleet = fleet_of(1, 1)
        self.policy = RolloutPolicy()
        self.now = T0
        self.last_report: dict[str, str] = {}
        self.canary_failed = False
        self.late: set[str] = set()

    @initialize(
        sites=st.integers(1, 3),
        per_site=st.integers(1, 4),
        canary=st.integers(1, 2),
        k=st.integers(1, 2),
        per_minute=st.integers(1, 6),
        retries=st.integers(0, 2),
        step_timeout=st.sampled_from([50.0, 120.0, 300.0]),
        growth=st.sampled_from([1.0, 2.0, 3.0]),
        wave_failure_percent=st.sampled_from([0.0, 30.0, 100.0]),
        success_percent=st.sampled_from([50.0, 100.0]),
    )
    def create(
        self,
        sites: int,
        per_site: int,
        canary: int,
        k: int,
        per_minute: int,
        retries: int,
        step_timeout: float,
        growth: float,
        wave_failure_percent: float,
        success_percent: float,
    ) -> None:
        self.fleet = fleet_of(sites, per_site)
        self.policy = RolloutPolicy(
            canary_count=canary,
            growth=growth,
            max_dispatch_per_minute=per_minute,
            max_updating_per_site=k,
            step_timeout_s=step_timeout,
            max_retries=retries,
            retry_delay_s=10,
            defer_retry_s=30,
            waves=WaveRules(success_percent=success_percent, failure_count=None, failure_percent=wave_failure_percent),
        )
        self.rollout = start(self.fleet, self.policy)

    # ----- driving both copies -----

    def both(self, call: str, *args: object, **kwargs: object) -> list[Action] | type[RolloutError]:
        """Call ``call`` on the rollout and its twin; both must answer the same (actions or error type)."""
        results = []
        for rollout in (self.rollout, self.twin):
            if rollout is None:
                continue
            try:
                results.append(getattr(rollout, call)(*args, **kwargs))
            except RolloutError as error:
                results.append(type(error))
        assert all(r == results[0] for r in results), results
        return results[0]  # type: ignore[no-any-return]

    def after(self) -> None:
        """Note a canary failure the moment it happens; the rollout must have stopped in the same call."""
        wave0 = [n for n in self.fleet if self.rollout.node(n).wave == 0]
        if any(self.rollout.node(n).state in FAILURES for n in wave0):
            self.canary_failed = True
        if self.canary_failed:
            assert self.rollout.phase not in (Phase.RUNNING, Phase.PAUSED)

    @rule(seconds=st.sampled_from([0.0, 1.0, 10.0, 31.0, 60.0, 130.0, 400.0]))
    def step(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        running = self.rollout.phase is Phase.RUNNING
        result = self.both("step", self.now, self.fleet)
        assert isinstance(result, list)
        sent = [a for a in result if isinstance(a, DispatchUpdate)]
        if not running or self.canary_failed:
            assert sent == []
        if any(isinstance(a, Aborted) for a in result):
            first_abort = next(i for i, a in enumerate(result) if isinstance(a, Aborted))
            assert not any(isinstance(a, DispatchUpdate) for a in result[first_abort:])
        self.late -= {a.node_id for a in sent}
        for action in sent:
            assert self.rollout.node(action.node_id).attempt <= self.policy.max_retries + 1
        self.after()

    @rule(data=st.data(), reason=REASONS, legal_only=st.booleans())
    def report(self, data: st.DataObject, reason: str | None, legal_only: bool) -> None:
        node = data.draw(st.sampled_from(sorted(self.fleet)))
        current = self.rollout.node(node).state
        choices = sorted(REPORT_MOVES[current] & REPORTED) if legal_only else []
        state = data.draw(st.sampled_from(choices or sorted(NodeState)))
        result = self.both("on_report", node, state.value, reason, self.now)
        if current in (NodeState.TIMED_OUT, NodeState.CANCELLED) and state in IN_FLIGHT and isinstance(result, list):
            self.late.add(node)  # the node's late word put it back in flight, past the engine's gate
        if result is IllegalReportError:
            assert self.rollout.node(node).state is current
        elif isinstance(result, list):
            view = self.rollout.node(node)
            # applied; or a retry/take-back (queued); or an acknowledgement that changes nothing
            assert view.state in (state, NodeState.QUEUED, current)
            if view.state is state:
                self.last_report[node] = state.value
            if view.state is not current or state in IN_FLIGHT:  # a move, or a progress heartbeat
                assert view.since == self.now
        self.after()

    @rule(data=st.data())
    def flip_online(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(sorted(self.fleet)))
        old = self.fleet[node]
        self.fleet[node] = facts(node, old.site, online=not old.online)

    @rule(action=st.sampled_from(["pause", "resume", "abort", "rollback"]))
    def operator(self, action: str) -> None:
        was = self.rollout.phase
        result = self.both(action, self.now, OPERATOR)
        allowed = {
            "pause": {Phase.RUNNING},
            "resume": {Phase.PAUSED},
            "abort": {Phase.RUNNING, Phase.PAUSED},
            "rollback": set(Phase) - {Phase.ROLLED_BACK},
        }
        assert (result is PhaseError) == (was not in allowed[action])
        if isinstance(result, list):
            assert not any(isinstance(a, DispatchUpdate) for a in result)
            if action == "pause":
                assert was is Phase.RUNNING
        self.after()

    @precondition(lambda self: self.twin is None)
    @rule()
    def save_and_restore(self) -> None:
        stored = json.loads(json.dumps(self.rollout.to_dict()))
        self.twin = Rollout.from_dict(stored)

    # ----- invariants -----

    @invariant()
    def k_per_site_is_never_exceeded(self) -> None:
        for site in {f.site for f in self.fleet.values()}:
            nodes = [n for n in self.fleet if self.fleet[n].site == site and n not in self.late]
            in_flight = sum(1 for n in nodes if self.rollout.node(n).state in IN_FLIGHT)
            assert in_flight <= self.policy.site_limit(site)

    @invariant()
    def succeeded_only_on_the_nodes_own_commit(self) -> None:
        for node in self.fleet:
            if self.rollout.node(node).state is NodeState.SUCCEEDED:
                assert self.last_report.get(node) == "succeeded"

    @invariant()
    def no_in_flight_node_outlives_its_step_timeout(self) -> None:
        limit = timedelta(seconds=self.policy.step_timeout_s)
        for node in self.fleet:
            view = self.rollout.node(node)
            if view.state in IN_FLIGHT:  # the clock only moves in step(), which expires what is due
                assert self.now - view.since < limit

    @invariant()
    def counts_add_up(self) -> None:
        progress = self.rollout.progress()
        assert sum(progress.totals.values()) == len(self.fleet)
        for wave in progress.waves:
            assert sum(wave.counts.values()) == wave.size

    @invariant()
    def twin_is_identical(self) -> None:
        if self.twin is not None:
            assert self.twin.to_dict() == self.rollout.to_dict()


RolloutMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRolloutMachine = RolloutMachine.TestCase
