"""The OTA state machine, sans I/O: events in, the next persisted state and progress reports out.

:func:`advance` never touches disk, network or the clock (``now`` is passed in). The driver performs what
:func:`action_for` names for the current phase, feeds the outcome back as an event, persists the new state *before*
acting on it, and emits the reports. A final outcome (succeeded, rolled back, failed, cancelled) is reported only by
the ``finish`` action of a final phase, i.e. after the commit or rollback is on disk.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from node_agent.ota.state import (
    CANCELLABLE_PHASES,
    FINAL_PHASES,
    REPORTED_AS,
    OtaState,
    Phase,
    ReportState,
    UpdateJob,
)


@dataclass(frozen=True)
class Policy:
    """Limits of the node's update procedure."""

    max_starts: int = 3
    """Trial starts of a new release before it is rolled back."""
    max_download_failures: int = 5
    """Transient download errors (each resumed where it stopped) before the update fails."""


@dataclass(frozen=True)
class Progress:
    """One progress report for the controller."""

    command_id: str
    state: ReportState
    version: str
    from_version: str | None
    reason: str = ""
    bytes_done: int | None = None
    bytes_total: int | None = None
    attempts: int = 0


# -- events ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    """An update command arrived (its release manifest already passed verification)."""

    job: UpdateJob
    running_version: str


@dataclass(frozen=True)
class GateChecked:
    """The occupancy gate was evaluated: ``blocked`` is the reason to wait, or None when clear."""

    blocked: str | None


@dataclass(frozen=True)
class DownloadProgressed:
    """Bytes of the artifact on disk so far."""

    done: int


@dataclass(frozen=True)
class Downloaded:
    """The whole artifact is on disk."""


@dataclass(frozen=True)
class DownloadFailed:
    """The download stopped; a retryable error resumes it, a permanent one (size cap, not found) fails it."""

    reason: str
    retryable: bool


@dataclass(frozen=True)
class Verified:
    """Signature, hardware, floor, expiry, size and sha256 all hold."""


@dataclass(frozen=True)
class Refused:
    """The release or its artifact was refused (the reason says which check)."""

    reason: str


@dataclass(frozen=True)
class Installed:
    """The new slot is complete."""


@dataclass(frozen=True)
class InstallFailed:
    """Installing into the new slot failed; the running slot was never touched."""

    reason: str


@dataclass(frozen=True)
class Switched:
    """The next start runs the new slot (which is now on trial)."""


@dataclass(frozen=True)
class Booted:
    """The agent started: what the platform will start (``current``) and the starts it counted on trial."""

    current: str | None
    platform_attempts: int = 0


@dataclass(frozen=True)
class HealthChecked:
    """The trial start's health check: ``problem`` is None when healthy."""

    problem: str | None


@dataclass(frozen=True)
class Committed:
    """The platform made the new slot permanent; ``floor`` is the node's new anti-rollback floor."""

    floor: str | None


@dataclass(frozen=True)
class RolledBack:
    """The platform starts the previous slot again."""


@dataclass(frozen=True)
class Cancelled:
    """The controller withdrew the update ``command_id``."""

    command_id: str
    reason: str = "cancelled by the controller"


@dataclass(frozen=True)
class Reported:
    """The final outcome was handed to the outbox."""


Event = (
    Requested
    | GateChecked
    | DownloadProgressed
    | Downloaded
    | DownloadFailed
    | Verified
    | Refused
    | Installed
    | InstallFailed
    | Switched
    | Booted
    | HealthChecked
    | Committed
    | RolledBack
    | Cancelled
    | Reported
)


# -- actions --------------------------------------------------------------------------------------------------


class Action(StrEnum):
    """What the driver does in each phase."""

    NONE = "none"
    CHECK_GATE = "check_gate"
    DOWNLOAD = "download"
    VERIFY = "verify"
    INSTALL = "install"
    SWITCH = "switch"
    RESTART = "restart"
    HEALTH_CHECK = "health_check"
    COMMIT = "commit"
    ROLL_BACK = "roll_back"
    FINISH = "finish"
    """Clean up what the update left (download, an unused slot) and report the final outcome."""


_ACTIONS = {
    Phase.IDLE: Action.NONE,
    Phase.WAITING: Action.CHECK_GATE,
    Phase.DOWNLOADING: Action.DOWNLOAD,
    Phase.VERIFYING: Action.VERIFY,
    Phase.INSTALLING: Action.INSTALL,
    Phase.STAGED: Action.CHECK_GATE,
    Phase.SWITCHING: Action.SWITCH,
    Phase.RESTARTING: Action.RESTART,
    Phase.TESTING: Action.HEALTH_CHECK,
    Phase.COMMITTING: Action.COMMIT,
    Phase.ROLLING_BACK: Action.ROLL_BACK,
    Phase.RESTORING: Action.RESTART,
    **{final: Action.FINISH for final in FINAL_PHASES},
}


def action_for(state: OtaState) -> Action:
    """The action the driver performs in ``state``'s phase."""
    return _ACTIONS[state.phase]


@dataclass(frozen=True)
class Step:
    """The state after an event and the progress reports to emit once it is persisted."""

    state: OtaState
    reports: tuple[Progress, ...] = field(default=())


def progress(
    state: OtaState,
    *,
    reported: ReportState | None = None,
    reason: str | None = None,
    bytes_done: int | None = None,
    bytes_total: int | None = None,
) -> Progress:
    """The report of ``state`` as the controller sees it (``reported`` and ``reason`` override the phase's)."""
    assert state.job is not None, "an idle node has nothing to report"
    return Progress(
        command_id=state.job.command_id,
        state=reported or REPORTED_AS[state.phase],
        version=state.job.version,
        from_version=state.from_version,
        reason=state.reason if reason is None else reason,
        bytes_done=bytes_done,
        bytes_total=bytes_total,
        attempts=state.attempts,
    )


def advance(state: OtaState, event: Event, now: datetime, policy: Policy = Policy()) -> Step:
    """The next state after ``event`` in ``state`` at ``now``; an event that does not apply changes nothing."""
    if isinstance(event, Requested):
        return _requested(state, event, now)
    if isinstance(event, Booted):
        return _booted(state, event, now, policy)
    if isinstance(event, Cancelled) and state.phase in CANCELLABLE_PHASES and _is_current(state, event.command_id):
        return _to(state, Phase.CANCELLED, now, reason=event.reason)
    if isinstance(event, Reported) and state.phase in FINAL_PHASES:
        return Step(OtaState(floor=state.floor, since=now))
    handler = _HANDLERS.get(state.phase)
    step = handler(state, event, now, policy) if handler else None
    return step or Step(state)


def _is_current(state: OtaState, command_id: str) -> bool:
    return state.job is not None and state.job.command_id == command_id


def _gate(state: OtaState, event: Event, now: datetime, _policy: Policy) -> Step | None:
    if not isinstance(event, GateChecked):
        return None
    if event.blocked is not None:
        waiting = state.model_copy(update={"reason": event.blocked})
        return Step(waiting, (progress(waiting, reported=ReportState.DEFERRED),))
    return _to(state, Phase.DOWNLOADING if state.phase is Phase.WAITING else Phase.SWITCHING, now)


def _download(state: OtaState, event: Event, now: datetime, policy: Policy) -> Step | None:
    match event:
        case DownloadProgressed(done=done):
            assert state.job is not None
            return Step(state, (progress(state, bytes_done=done, bytes_total=state.job.size),))
        case Downloaded():
            return _to(state, Phase.VERIFYING, now)
        case DownloadFailed(reason=reason, retryable=retryable):
            failures = state.download_failures + 1
            if retryable and failures < policy.max_download_failures:
                return Step(state.model_copy(update={"download_failures": failures, "reason": reason}))
            return _to(state, Phase.FAILED, now, reason=f"download: {reason}")
    return None


def _verify(state: OtaState, event: Event, now: datetime, _policy: Policy) -> Step | None:
    match event:
        case Verified():
            return _to(state, Phase.INSTALLING, now)
        case Refused(reason=reason):
            return _to(state, Phase.FAILED, now, reason=f"refused: {reason}")
    return None


def _install(state: OtaState, event: Event, now: datetime, _policy: Policy) -> Step | None:
    match event:
        case Installed():
            return _to(state, Phase.STAGED, now)
        case InstallFailed(reason=reason):
            return _to(state, Phase.FAILED, now, reason=f"install: {reason}")
    return None


def _switch(state: OtaState, event: Event, now: datetime, _policy: Policy) -> Step | None:
    return _to(state, Phase.RESTARTING, now) if isinstance(event, Switched) else None


def _test(state: OtaState, event: Event, now: datetime, policy: Policy) -> Step | None:
    if not isinstance(event, HealthChecked):
        return None
    if event.problem is None:
        return _to(state, Phase.COMMITTING, now)
    if state.attempts >= policy.max_starts:
        reason = f"health check failed on {state.attempts} starts, last: {event.problem}"
        return _to(state, Phase.ROLLING_BACK, now, reason=reason)
    return _to(state, Phase.RESTARTING, now, reason=f"health check: {event.problem}")


def _commit(state: OtaState, event: Event, now: datetime, _policy: Policy) -> Step | None:
    if not isinstance(event, Committed):
        return None
    return _to(state.model_copy(update={"floor": event.floor}), Phase.COMMITTED, now)


def _roll_back(state: OtaState, event: Event, now: datetime, _policy: Policy) -> Step | None:
    return _to(state, Phase.RESTORING, now) if isinstance(event, RolledBack) else None


_Handler = Callable[[OtaState, Event, datetime, Policy], Step | None]
_HANDLERS: dict[Phase, _Handler] = {
    Phase.WAITING: _gate,
    Phase.STAGED: _gate,
    Phase.DOWNLOADING: _download,
    Phase.VERIFYING: _verify,
    Phase.INSTALLING: _install,
    Phase.SWITCHING: _switch,
    Phase.TESTING: _test,
    Phase.COMMITTING: _commit,
    Phase.ROLLING_BACK: _roll_back,
}


def _requested(state: OtaState, event: Requested, now: datetime) -> Step:
    job = event.job
    if _is_current(state, job.command_id):
        return Step(state)  # a repeat of the command in progress
    if state.phase is not Phase.IDLE:
        busy = OtaState(phase=Phase.FAILED, job=job, from_version=event.running_version)
        reason = f"update {state.job.command_id if state.job else '?'} is in progress; send this one after it ends"
        return Step(state, (progress(busy, reason=reason),))
    accepted = OtaState(phase=Phase.WAITING, job=job, from_version=event.running_version, floor=state.floor, since=now)
    if job.version == event.running_version:
        return Step(accepted.model_copy(update={"phase": Phase.COMMITTED, "reason": "already running this version"}))
    return Step(accepted)  # the gate check that follows reports deferred or downloading


def _booted(state: OtaState, event: Booted, now: datetime, policy: Policy) -> Step:
    """A start: in a trial it counts as one more attempt; elsewhere the step in progress is simply repeated."""
    if state.phase is Phase.RESTORING:
        return _to(state, Phase.ROLLED_BACK, now)
    if state.phase not in {Phase.RESTARTING, Phase.TESTING, Phase.COMMITTING}:
        return Step(state)  # SWITCHING included: the switch is idempotent and is done again
    if event.current != state.target:
        reason = f"the platform went back to {event.current} after {event.platform_attempts} failed starts"
        return _to(state, Phase.ROLLED_BACK, now, reason=reason)
    if state.phase is Phase.COMMITTING:
        return Step(state)  # the health check passed; the commit is done again
    attempts = max(state.attempts + 1, event.platform_attempts)
    tried = state.model_copy(update={"attempts": attempts})
    if attempts <= policy.max_starts:
        return _to(tried, Phase.TESTING, now)
    reason = f"the new release did not pass its health check in {policy.max_starts} starts"
    return _to(tried, Phase.ROLLING_BACK, now, reason=f"{reason}, last: {state.reason}" if state.reason else reason)


def _to(state: OtaState, phase: Phase, now: datetime, *, reason: str = "") -> Step:
    """Enter ``phase``; every entered phase is reported except the final ones (reported by ``finish``)."""
    moved = state.model_copy(update={"phase": phase, "since": now, "reason": reason})
    if phase in FINAL_PHASES:
        return Step(moved)
    return Step(moved, (progress(moved),))


def final_report(state: OtaState) -> Progress:
    """The final outcome of a finished update (only for a final phase)."""
    assert state.phase in FINAL_PHASES, f"{state.phase} is not final"
    return progress(state)
