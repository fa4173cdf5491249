"""The pure OTA state machine: every path to a final outcome, and properties over any order of events."""

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from node_agent.ota.machine import (
    Action,
    Booted,
    Cancelled,
    Committed,
    Downloaded,
    DownloadFailed,
    DownloadProgressed,
    Event,
    GateChecked,
    HealthChecked,
    Installed,
    InstallFailed,
    Policy,
    Refused,
    Reported,
    Requested,
    RolledBack,
    Step,
    Switched,
    Verified,
    action_for,
    advance,
    final_report,
)
from node_agent.ota.state import FINAL_PHASES, TRIAL_PHASES, Cause, OtaRecord, Phase, UpdateJob
from schemas.ota import OtaState
from schemas.semver import SemVer
from tests.agent.ota.releases import T0, artifact, signed

JOB = UpdateJob(
    command_id="up-1", rollout_id="ro-1", release=signed("1.1.0", artifact("1.1.0")), artifact_urls=("http://x/a",)
)
SIZE = len(artifact("1.1.0"))
DOOR = Cause(code="door_open", detail="door open: A1")
POLICY = Policy(max_starts=3, max_download_failures=2)


def run(state: OtaRecord, *events: Event) -> tuple[OtaRecord, list[Step]]:
    steps = []
    for event in events:
        step = advance(state, event, T0, POLICY)
        steps.append(step)
        state = step.state
    return state, steps


def reported(steps: list[Step]) -> list[OtaState]:
    return [r.state for s in steps for r in s.reports]


def staged() -> OtaRecord:
    state, _ = run(OtaRecord(), Requested(JOB, "1.0.0"), GateChecked(None), Downloaded(), Verified(), Installed())
    return state


def test_happy_path_reports_each_step_and_success_only_after_commit() -> None:
    state, steps = run(
        OtaRecord(),
        Requested(JOB, "1.0.0"),
        GateChecked(DOOR),
        GateChecked(None),
        DownloadProgressed(5),
        Downloaded(),
        Verified(),
        Installed(),
        GateChecked(None),
        Switched(),
        Booted("1.1.0"),
        HealthChecked(None),
    )
    assert state.phase is Phase.COMMITTING and action_for(state) is Action.COMMIT
    assert reported(steps) == [
        OtaState.DEFERRED,
        OtaState.DOWNLOADING,
        OtaState.DOWNLOADING,
        OtaState.VERIFYING,
        OtaState.INSTALLING,
        OtaState.INSTALLING,
        OtaState.RESTARTING,
        OtaState.RESTARTING,
        OtaState.TESTING,
        OtaState.TESTING,
    ]
    assert (steps[1].reports[0].reason, steps[1].reports[0].detail) == ("door_open", "door open: A1")
    assert steps[2].reports[0].reason is None, "the wait is over"
    assert steps[3].reports[0].bytes_done == 5 and steps[3].reports[0].bytes_total == SIZE
    done, more = run(state, Committed(SemVer.parse("1.0.0")))
    assert done.phase is Phase.COMMITTED and not reported(more), "success is reported by finish, not on entry"
    assert final_report(done).state is OtaState.SUCCEEDED and final_report(done).from_version == "1.0.0"
    idle, _ = run(done, Reported())
    assert idle.phase is Phase.IDLE and idle.job is None and idle.floor == SemVer.parse("1.0.0")


def test_n_failed_health_checks_roll_back_then_report_rolled_back() -> None:
    state, _ = run(staged(), GateChecked(None), Switched())
    for attempt in range(1, 4):
        state, _ = run(state, Booted("1.1.0"))
        assert state.phase is Phase.TESTING and state.attempts == attempt
        state, _ = run(state, HealthChecked("broker round trip timed out"))
    assert state.phase is Phase.ROLLING_BACK and state.cause is not None
    assert state.cause.code == "health_check_failed"
    assert "3 starts" in state.cause.detail and "broker round trip" in state.cause.detail
    state, _ = run(state, RolledBack())
    assert state.phase is Phase.RESTORING and action_for(state) is Action.RESTART
    state, _ = run(state, Booted("1.0.0"))
    assert state.phase is Phase.ROLLED_BACK
    report = final_report(state)
    assert (report.state, report.reason) == (OtaState.ROLLED_BACK, "health_check_failed")


def test_starts_that_never_reach_the_health_check_count_too() -> None:
    state, _ = run(staged(), GateChecked(None), Switched())
    state, _ = run(state, Booted("1.1.0"), Booted("1.1.0"), Booted("1.1.0"))
    assert state.phase is Phase.TESTING and state.attempts == 3
    state, _ = run(state, Booted("1.1.0"))
    assert state.phase is Phase.ROLLING_BACK


def test_the_platform_count_wins_when_it_is_ahead() -> None:
    state, _ = run(staged(), GateChecked(None), Switched(), Booted("1.1.0", platform_attempts=4))
    assert state.phase is Phase.ROLLING_BACK and state.attempts == 4


def test_a_platform_that_went_back_by_itself_is_reported_rolled_back() -> None:
    state, _ = run(staged(), GateChecked(None), Switched(), Booted("1.1.0"), Booted("1.0.0", platform_attempts=3))
    assert state.phase is Phase.ROLLED_BACK and state.cause is not None and "went back to 1.0.0" in state.cause.detail


def test_a_crash_in_switching_repeats_the_switch_and_a_crash_in_committing_repeats_the_commit() -> None:
    state, _ = run(staged(), GateChecked(None), Booted("1.1.0"))
    assert state.phase is Phase.SWITCHING
    state, _ = run(state, Switched(), Booted("1.1.0"), HealthChecked(None), Booted("1.1.0"))
    assert state.phase is Phase.COMMITTING


def test_refusals_and_install_errors_fail_the_update() -> None:
    refused = Refused("bad_signature", "by x")
    state, _ = run(OtaRecord(), Requested(JOB, "1.0.0"), GateChecked(None), Downloaded(), refused)
    report = final_report(state)
    assert (report.state, report.reason, report.detail) == (OtaState.FAILED, "bad_signature", "by x")
    state, _ = run(staged().model_copy(update={"phase": Phase.INSTALLING}), InstallFailed("pip: no wheel"))
    assert state.phase is Phase.FAILED and state.cause == Cause(code="install_failed", detail="pip: no wheel")


def test_download_errors_are_retried_up_to_the_policy_then_fail() -> None:
    state, _ = run(OtaRecord(), Requested(JOB, "1.0.0"), GateChecked(None), DownloadFailed("reset", retryable=True))
    assert state.phase is Phase.DOWNLOADING and state.download_failures == 1
    state, _ = run(state, DownloadFailed("reset", retryable=True))
    assert state.phase is Phase.FAILED and state.cause == Cause(code="download_failed", detail="reset")
    state, _ = run(OtaRecord(), Requested(JOB, "1.0.0"), GateChecked(None), DownloadFailed("too big", False))
    assert state.phase is Phase.FAILED


def test_a_second_update_is_refused_while_one_runs_and_a_repeat_is_ignored() -> None:
    state, _ = run(OtaRecord(), Requested(JOB, "1.0.0"))
    again, steps = run(state, Requested(JOB, "1.0.0"))
    assert again == state and not reported(steps)
    other = JOB.model_copy(update={"command_id": "up-2"})
    kept, steps = run(state, Requested(other, "1.0.0"))
    assert kept == state
    assert [(r.command_id, r.state, r.reason) for s in steps for r in s.reports] == [("up-2", OtaState.FAILED, "busy")]


def test_the_running_version_is_already_a_success() -> None:
    state, _ = run(OtaRecord(), Requested(JOB, "1.1.0"))
    assert state.phase is Phase.COMMITTED and final_report(state).state is OtaState.SUCCEEDED


def test_a_requested_rollback_goes_back_a_slot_and_reports_rolled_back() -> None:
    job = UpdateJob(command_id="rb-1", rollout_id="ro-1", rollback=True)
    state, _ = run(OtaRecord(), Requested(job, "1.1.0"), RolledBack(), Booted("1.0.0"))
    assert state.phase is Phase.ROLLED_BACK
    report = final_report(state)
    assert (report.state, report.reason, report.to_version) == (OtaState.ROLLED_BACK, "requested", None)


def test_cancel_only_before_the_switch() -> None:
    state, _ = run(OtaRecord(), Requested(JOB, "1.0.0"), Cancelled("up-1"))
    assert state.phase is Phase.CANCELLED
    wrong, _ = run(staged(), Cancelled("up-9"))
    assert wrong.phase is Phase.STAGED
    late, _ = run(staged(), GateChecked(None), Switched(), Cancelled("up-1"))
    assert late.phase is Phase.RESTARTING


EVENTS = st.sampled_from(
    [
        Requested(JOB, "1.0.0"),
        GateChecked(None),
        GateChecked(DOOR),
        DownloadProgressed(3),
        Downloaded(),
        DownloadFailed("reset", retryable=True),
        Verified(),
        Refused("expired", ""),
        Installed(),
        InstallFailed("disk full"),
        Switched(),
        Booted("1.1.0"),
        Booted("1.0.0"),
        Booted("1.1.0", platform_attempts=2),
        HealthChecked(None),
        HealthChecked("self-test"),
        Committed(SemVer.parse("1.0.0")),
        RolledBack(),
        Cancelled("up-1"),
        Reported(),
    ]
)


@given(st.lists(EVENTS, max_size=40))
def test_any_order_of_events_keeps_the_invariants(events: list[Event]) -> None:
    state = OtaRecord()
    for event in events:
        before = state
        step = advance(state, event, T0 + timedelta(seconds=1), POLICY)
        state = step.state
        for report in step.reports:
            assert report.state not in {OtaState.SUCCEEDED, OtaState.ROLLED_BACK}, "only finish reports these"
        if state.phase is Phase.COMMITTED and before.phase is not Phase.COMMITTED:
            assert before.phase in {Phase.COMMITTING, Phase.IDLE}, "commit follows a passed health check"
        if state.phase is Phase.CANCELLED and before.phase is not Phase.CANCELLED:
            assert before.phase not in {Phase.SWITCHING, Phase.RESTARTING, Phase.TESTING}
        assert state.attempts <= POLICY.max_starts + 2
        assert (state.phase is Phase.IDLE) == (state.job is None)
        if state.phase in TRIAL_PHASES and before.phase not in TRIAL_PHASES:
            assert before.phase is Phase.STAGED, "only a complete, installed slot is switched to"
        if before.phase in TRIAL_PHASES and state.phase in FINAL_PHASES:
            assert state.phase in {Phase.COMMITTED, Phase.ROLLED_BACK}, "after the switch: commit or roll back"
