"""The rollout engine, scenario by scenario: waves, thresholds, commit-only success, timeouts, retries, gates."""

import pytest

from controller.rollouts import (
    Aborted,
    Cancel,
    Completed,
    DispatchUpdate,
    IllegalReportError,
    MaintenanceWindow,
    NodeState,
    Phase,
    PhaseError,
    Rollback,
    RolloutPolicy,
    UnknownNodeError,
    WaveAdvanced,
    WaveRules,
)
from tests.controller.rollouts.fleet import at, commit, dispatched, facts, fleet_of, start

S = NodeState
FAST = RolloutPolicy(max_updating_per_site=100)


def test_canary_then_doubling_waves_to_completion() -> None:
    fleet = fleet_of(1, 7)
    rollout = start(fleet, FAST)
    waves: list[list[str]] = []
    actions = rollout.step(at(0), fleet)
    while not any(isinstance(a, Completed) for a in actions):
        sent = dispatched(actions)
        assert sent, actions
        waves.append(sent)
        actions = [a for node in sent for a in commit(rollout, node, at(1))]
        actions += rollout.step(at(2), fleet)
    assert [len(w) for w in waves] == [1, 2, 4]
    assert rollout.phase is Phase.COMPLETED
    assert actions[-1] == Completed(succeeded=7, failed=0)
    assert rollout.progress().totals[S.SUCCEEDED] == 7


def test_success_counts_only_after_commit() -> None:
    fleet = fleet_of(1, 3)
    rollout = start(fleet, FAST)
    (node,) = dispatched(rollout.step(at(0), fleet))
    for state in ("downloading", "verifying", "installing", "restarting", "testing"):
        assert rollout.on_report(node, state, None, at(1)) == []
        assert rollout.progress().totals[S.SUCCEEDED] == 0
        assert dispatched(rollout.step(at(2), fleet)) == []  # the next wave waits for the commit
    assert rollout.on_report(node, "succeeded", None, at(3)) == [WaveAdvanced(1, 2)]
    assert rollout.node(node).state is S.SUCCEEDED


def test_success_without_the_health_check_is_refused() -> None:
    fleet = fleet_of(1, 2)
    rollout = start(fleet, FAST)
    (node,) = dispatched(rollout.step(at(0), fleet))
    rollout.on_report(node, "restarting", None, at(1))
    with pytest.raises(IllegalReportError, match="'succeeded' is not legal from 'restarting'"):
        rollout.on_report(node, "succeeded", None, at(2))
    assert rollout.node(node).state is S.RESTARTING


def test_a_failed_canary_aborts_and_starts_nothing_else() -> None:
    fleet = fleet_of(2, 5)
    rollout = start(fleet, FAST)
    (canary,) = dispatched(rollout.step(at(0), fleet))
    actions = rollout.on_report(canary, "failed", "bad_signature", at(1))
    assert actions[0] == Aborted("canary: 1 of 1 nodes failed, above its failure threshold", "engine")
    assert rollout.phase is Phase.ABORTED
    assert dispatched(rollout.step(at(2), fleet)) == []
    assert rollout.progress().totals[S.CANCELLED] == 9
    assert rollout.progress().totals[S.FAILED] == 1


def test_a_rolled_back_canary_is_a_failure_and_is_not_retried() -> None:
    fleet = fleet_of(1, 3)
    rollout = start(fleet, FAST)
    (canary,) = dispatched(rollout.step(at(0), fleet))
    rollout.on_report(canary, "restarting", None, at(1))
    rollout.on_report(canary, "testing", None, at(2))
    actions = rollout.on_report(canary, "rolled_back", "health_check_failed", at(3))
    assert isinstance(actions[0], Aborted)
    assert rollout.node(canary).state is S.ROLLED_BACK
    assert rollout.retries == 0


def test_a_wave_failure_share_above_the_threshold_aborts_and_cancels_what_has_not_installed() -> None:
    fleet = fleet_of(1, 7)
    policy = RolloutPolicy(max_updating_per_site=100, waves=WaveRules(success_percent=100, failure_percent=30))
    rollout = start(fleet, policy)
    (canary,) = dispatched(rollout.step(at(0), fleet))
    commit(rollout, canary, at(1))
    first, second = dispatched(rollout.step(at(2), fleet))
    rollout.on_report(second, "restarting", None, at(3))
    actions = rollout.on_report(first, "failed", "disk_full", at(3))  # 1 of 2 = 50 % > 30 %
    assert actions == [Aborted("wave 1: 1 of 2 nodes failed, above its failure threshold", "engine")]
    assert rollout.node(second).state is S.RESTARTING  # past cancelling: left to finish
    assert rollout.on_report(second, "testing", None, at(4)) == []  # its reports still count
    assert rollout.progress().totals[S.CANCELLED] == 4  # the queued wave 2, never sent a command


def test_transient_failures_are_retried_a_bounded_number_of_times() -> None:
    fleet = fleet_of(1, 2)
    policy = RolloutPolicy(max_retries=2, retry_delay_s=30)
    rollout = start(fleet, policy)
    assert rollout.step(at(0), fleet) == [DispatchUpdate("n0-0", 1)]
    rollout.on_report("n0-0", "downloading", None, at(1))
    assert rollout.on_report("n0-0", "failed", "download_failed", at(2)) == []
    assert rollout.node("n0-0").state is S.QUEUED
    assert rollout.step(at(31), fleet) == []  # retry delay
    assert rollout.step(at(32), fleet) == [DispatchUpdate("n0-0", 2)]
    rollout.on_report("n0-0", "failed", "download_failed", at(33))
    assert rollout.step(at(63), fleet) == [DispatchUpdate("n0-0", 3)]
    actions = rollout.on_report("n0-0", "failed", "download_failed", at(64))
    assert isinstance(actions[0], Aborted)
    assert rollout.retries == 2


def test_a_report_from_an_older_attempt_is_ignored() -> None:
    fleet = fleet_of(1, 2)
    rollout = start(fleet, RolloutPolicy(retry_delay_s=0))
    rollout.step(at(0), fleet)
    rollout.on_report("n0-0", "failed", "download_failed", at(1), attempt=1)
    assert rollout.step(at(2), fleet) == [DispatchUpdate("n0-0", 2)]
    assert rollout.on_report("n0-0", "failed", "download_failed", at(3), attempt=1) == []
    assert rollout.node("n0-0").state is S.DISPATCHED


def test_step_timeout_fires_and_progress_resets_it() -> None:
    fleet = fleet_of(1, 2)
    rollout = start(fleet, RolloutPolicy(step_timeout_s=100, retry_timeouts=False))
    rollout.step(at(0), fleet)
    rollout.on_report("n0-0", "downloading", None, at(90))
    rollout.on_report("n0-0", "downloading", None, at(180))  # heartbeat
    assert rollout.step(at(279), fleet) == []
    assert rollout.node("n0-0").state is S.DOWNLOADING
    actions = rollout.step(at(280), fleet)
    assert rollout.node("n0-0").state is S.TIMED_OUT
    assert rollout.node("n0-0").reason == "no report for 100 s while downloading"
    assert actions[0] == Cancel("n0-0")  # it may be alive: withdraw the command
    assert isinstance(actions[1], Aborted)  # a timed-out canary is a failed canary
    assert rollout.on_report("n0-0", "cancelled", "requested", at(281)) == []  # its acknowledgement
    assert rollout.node("n0-0").state is S.TIMED_OUT


def test_a_timed_out_node_is_retried_and_its_late_truth_is_accepted() -> None:
    fleet = fleet_of(1, 2)
    rollout = start(fleet, RolloutPolicy(step_timeout_s=100, retry_delay_s=0, max_retries=1))
    rollout.step(at(0), fleet)
    assert rollout.step(at(100), fleet) == [Cancel("n0-0"), DispatchUpdate("n0-0", 2)]
    rollout.on_report("n0-0", "restarting", None, at(150))  # past cancelling: no Cancel on its timeout
    actions = rollout.step(at(250), fleet)
    assert isinstance(actions[0], Aborted)
    assert rollout.node("n0-0").state is S.TIMED_OUT
    rollout.on_report("n0-0", "testing", None, at(201))  # it was alive after all
    rollout.on_report("n0-0", "succeeded", None, at(202))
    assert rollout.node("n0-0").state is S.SUCCEEDED


def test_the_rollout_timeout_aborts() -> None:
    fleet = fleet_of(1, 3)
    fleet["n0-0"] = facts("n0-0", "s0", online=False)
    rollout = start(fleet, RolloutPolicy(rollout_timeout_s=3600))
    assert rollout.step(at(0), fleet) == []
    assert rollout.node("n0-0").reason == "offline"
    actions = rollout.step(at(3600), fleet)
    assert actions[0] == Aborted("the rollout did not finish within 1 h", "engine")
    assert rollout.progress().totals[S.CANCELLED] == 3


def test_k_per_site_and_a_node_deferral_frees_the_slot() -> None:
    fleet = fleet_of(2, 4)
    policy = RolloutPolicy(canary_count=8, max_updating_per_site=2, defer_retry_s=60)
    rollout = start(fleet, policy)
    assert sorted(dispatched(rollout.step(at(0), fleet))) == ["n0-0", "n0-1", "n1-0", "n1-1"]
    assert rollout.step(at(1), fleet) == []
    rollout.on_report("n0-0", "deferred", "door_open", at(2))
    assert rollout.node("n0-0").reason == "door_open"
    assert dispatched(rollout.step(at(3), fleet)) == ["n0-2"]
    rollout.on_report("n0-0", "deferred", "door_open", at(30))  # still busy: a heartbeat, no new command
    assert rollout.step(at(31), fleet) == []
    commit(rollout, "n0-1", at(40))
    assert rollout.on_report("n0-0", "downloading", None, at(41)) == []  # idle now, goes on into the free slot
    assert sorted(rollout.updating_nodes()) == ["n0-0", "n0-2", "n1-0", "n1-1"]


def test_a_node_going_on_into_a_full_site_is_taken_back() -> None:
    fleet = fleet_of(1, 3)
    rollout = start(fleet, RolloutPolicy(canary_count=3, max_updating_per_site=1, defer_retry_s=60))
    rollout.step(at(0), fleet)
    rollout.on_report("n0-0", "deferred", "reservation_due", at(1))
    assert dispatched(rollout.step(at(2), fleet)) == ["n0-1"]
    assert rollout.on_report("n0-0", "downloading", None, at(3)) == [Cancel("n0-0")]
    assert (rollout.node("n0-0").state, rollout.node("n0-0").reason) == (S.QUEUED, "site_busy")
    assert rollout.on_report("n0-0", "cancelled", "requested", at(4)) == []  # the node confirms
    commit(rollout, "n0-1", at(10))
    assert rollout.step(at(11), fleet) == [DispatchUpdate("n0-2", 1)]
    commit(rollout, "n0-2", at(20))
    assert rollout.step(at(63), fleet) == [DispatchUpdate("n0-0", 2)]  # a new command; not counted as a retry
    assert rollout.node("n0-0").retries == 0


def test_a_deferred_node_going_on_while_paused_is_taken_back() -> None:
    fleet = fleet_of(2, 1)
    rollout = start(fleet, RolloutPolicy(canary_count=2))
    rollout.step(at(0), fleet)
    rollout.on_report("n0-0", "deferred", "battery_low", at(1))
    rollout.pause(at(2), "ops")
    assert rollout.on_report("n0-0", "downloading", None, at(3)) == [Cancel("n0-0")]
    assert rollout.node("n0-0").reason == "paused"


def test_agent_specific_moves() -> None:
    fleet = fleet_of(4, 1)
    rollout = start(fleet, RolloutPolicy(canary_count=4, canary=WaveRules(failure_count=9)))
    rollout.step(at(0), fleet)
    assert rollout.on_report("n0-0", "queued", None, at(1)) == []  # accepted: a heartbeat
    assert rollout.node("n0-0").state is S.DISPATCHED
    rollout.on_report("n1-0", "succeeded", None, at(1))  # already on the release, committed
    for state in ("installing", "deferred"):  # staged, waiting for the locker to be idle
        rollout.on_report("n2-0", state, "door_open" if state == "deferred" else None, at(1))
    assert rollout.node("n2-0").state is S.DEFERRED
    for state in ("restarting", "testing", "restarting", "testing", "succeeded"):  # a second trial start
        rollout.on_report("n3-0", state, None, at(2))
    assert rollout.node("n3-0").state is S.SUCCEEDED
    with pytest.raises(IllegalReportError):
        rollout.on_report("n2-0", "timed_out", None, at(3))


def test_per_site_limit_override_and_other_rollouts_count() -> None:
    fleet = fleet_of(2, 3)
    fleet["n1-2"] = facts("n1-2", "s1", updating=True)
    policy = RolloutPolicy(canary_count=6, max_updating_per_site=1, site_limits={"s0": 3})
    rollout = start(fleet, policy)
    assert sorted(dispatched(rollout.step(at(0), fleet))) == ["n0-0", "n0-1", "n0-2"]
    assert rollout.node("n1-0").state is S.QUEUED  # s1's one slot is taken by another rollout


def test_gates_defer_with_a_reason_until_they_clear() -> None:
    fleet = {
        "a": facts("a", "s1", online=False),
        "b": facts("b", "s2", maintenance=True),
        "c": facts("c", "s3"),
    }
    window = MaintenanceWindow(daily="04:00-05:00", tz="UTC")  # T0 is 03:00 UTC
    rollout = start(fleet, RolloutPolicy(canary_count=3, maintenance_windows={"s3": window}))
    assert rollout.step(at(0), fleet) == []
    assert {n: rollout.node(n).reason for n in "abc"} == {
        "a": "offline",
        "b": "maintenance",
        "c": "outside_maintenance_window",
    }
    fleet["a"] = facts("a", "s1")
    assert dispatched(rollout.step(at(1), fleet)) == ["a"]
    assert dispatched(rollout.step(at(3600), fleet)) == ["c"]


def test_dispatch_rate_is_capped_per_minute() -> None:
    fleet = fleet_of(10, 1)
    rollout = start(fleet, RolloutPolicy(canary_count=10, max_dispatch_per_minute=4))
    assert len(dispatched(rollout.step(at(0), fleet))) == 4
    assert dispatched(rollout.step(at(59), fleet)) == []
    assert len(dispatched(rollout.step(at(60), fleet))) == 4
    assert len(dispatched(rollout.step(at(120), fleet))) == 2


def test_pause_resume_abort() -> None:
    fleet = fleet_of(3, 1)
    rollout = start(fleet, RolloutPolicy(canary_count=1))
    rollout.step(at(0), fleet)
    rollout.pause(at(1), "ops@x")
    commit(rollout, "n0-0", at(2))
    assert rollout.step(at(3), fleet) == []
    with pytest.raises(PhaseError, match="pause needs it running"):
        rollout.pause(at(3), "ops@x")
    rollout.resume(at(4), "ops@x")
    assert sorted(dispatched(rollout.step(at(5), fleet))) == ["n1-0", "n2-0"]
    actions = rollout.abort(at(6), "ops@x")
    assert actions == [Aborted("aborted by an operator", "ops@x"), Cancel("n1-0"), Cancel("n2-0")]
    assert [h["event"] for h in rollout.history] == ["pause", "resume", "abort"]
    with pytest.raises(PhaseError):
        rollout.abort(at(7), "ops@x")


def test_rollback_sends_rollback_to_committed_nodes_including_late_ones() -> None:
    fleet = fleet_of(3, 1)
    rollout = start(fleet, RolloutPolicy(canary_count=1))
    rollout.step(at(0), fleet)
    commit(rollout, "n0-0", at(1))
    rollout.step(at(2), fleet)
    rollout.on_report("n1-0", "restarting", None, at(3))
    actions = rollout.rollback(at(4), "ops@x")
    assert actions == [Aborted("rollback requested by ops@x", "ops@x"), Cancel("n2-0"), Rollback("n0-0")]
    rollout.on_report("n1-0", "testing", None, at(5))
    assert rollout.on_report("n1-0", "succeeded", None, at(5)) == [Rollback("n1-0")]
    assert rollout.on_report("n0-0", "testing", None, at(6)) == []  # the agent reports its way back as testing
    assert (rollout.node("n0-0").state, rollout.node("n0-0").reason) == (S.SUCCEEDED, "rollback testing")
    rollout.on_report("n0-0", "rolled_back", "requested", at(6))
    assert rollout.node("n0-0").state is S.ROLLED_BACK
    with pytest.raises(PhaseError):
        rollout.rollback(at(7), "ops@x")


def test_a_completed_rollout_can_be_rolled_back() -> None:
    fleet = fleet_of(1, 1)
    rollout = start(fleet)
    rollout.step(at(0), fleet)
    assert commit(rollout, "n0-0", at(1))[-1] == Completed(1, 0)
    assert rollout.rollback(at(2), "ops@x") == [Rollback("n0-0")]


def test_a_succeeded_node_cannot_roll_back_unless_asked() -> None:
    fleet = fleet_of(1, 2)
    rollout = start(fleet)
    rollout.step(at(0), fleet)
    commit(rollout, "n0-0", at(1))
    with pytest.raises(IllegalReportError):
        rollout.on_report("n0-0", "rolled_back", None, at(2))


@pytest.mark.parametrize("state", ["dispatched", "timed_out", "bogus", "rolled_back"])
def test_states_a_node_cannot_report(state: str) -> None:
    fleet = fleet_of(1, 2)
    rollout = start(fleet)
    rollout.step(at(0), fleet)
    with pytest.raises(IllegalReportError):
        rollout.on_report("n0-0", state, None, at(1))
    with pytest.raises(IllegalReportError):  # never sent a command
        rollout.on_report("n0-1", "downloading", None, at(1))
    with pytest.raises(UnknownNodeError):
        rollout.on_report("zz", "downloading", None, at(1))


def test_a_wave_that_finishes_below_its_success_threshold_aborts() -> None:
    fleet = fleet_of(1, 3)
    policy = RolloutPolicy(canary_count=3, max_updating_per_site=3, canary=WaveRules(failure_count=5))
    rollout = start(fleet, policy)
    rollout.step(at(0), fleet)
    commit(rollout, "n0-0", at(1))
    commit(rollout, "n0-1", at(1))
    actions = rollout.on_report("n0-2", "failed", "disk_full", at(2))
    assert actions == [Aborted("wave 0 ended with 2 of 3 succeeded, 3 needed", "engine")]


def test_naive_datetimes_are_refused() -> None:
    fleet = fleet_of(1, 1)
    rollout = start(fleet)
    with pytest.raises(ValueError, match="aware datetime"):
        rollout.step(at(0).replace(tzinfo=None), fleet)


def test_updating_nodes_is_the_in_flight_set() -> None:
    fleet = fleet_of(2, 2)
    rollout = start(fleet, RolloutPolicy(canary_count=4, max_updating_per_site=2))
    rollout.step(at(0), fleet)
    rollout.on_report("n1-0", "deferred", "battery_low", at(1))
    assert rollout.updating_nodes() == ["n0-0", "n0-1", "n1-1"]
