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

from node_agent.ota.state import CANCELLABLE_PHASES, FINAL_PHASES, REPORTED_AS, Cause, OtaRecord, Phase, UpdateJob
from schemas.ota import MAY_HAVE_REASON, OtaReason, OtaState
from schemas.semver import SemVer


@dataclass(frozen=True)
class Policy:
    """Limits of the node's update procedure."""

    max_starts: int = 3
    """Trial starts of a new release before it is rolled back."""
    max_download_failures: int = 5
    """Transient download errors (each resumed where it stopped) before the update fails."""


@dataclass(frozen=True)
class Progress:
    """One progress report for the controller (the agent wraps it in an :class:`~schemas.OtaEvent`)."""

    command_id: str
    rollout_id: str
    state: OtaState
    to_version: str | None
    from_version: str | None
    reason: str | None = None
    """A snake_case code, only on states that may carry one (:data:`schemas.ota.MAY_HAVE_REASON`)."""
    detail: str = ""
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
    """The occupancy gate was evaluated: ``blocked`` is why to wait, or None when clear."""

    blocked: Cause | None


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

    detail: str
    retryable: bool


@dataclass(frozen=True)
class Verified:
    """Signature, hardware, floor, expiry, size and sha256 all hold."""


@dataclass(frozen=True)
class Refused:
    """The release or its artifact was refused (``reason`` names the check, a :class:`~schemas.RefusalReason`)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Installed:
    """The new slot is complete."""


@dataclass(frozen=True)
class InstallFailed:
    """Installing into the new slot failed; the running slot was never touched."""

    detail: str


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

    floor: SemVer | None


@dataclass(frozen=True)
class RolledBack:
    """The platform starts the previous slot again."""


@dataclass(frozen=True)
class Cancelled:
    """The controller withdrew the update ``command_id``."""

    command_id: str
    detail: str = "cancelled by the controller"


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


def action_for(state: OtaRecord) -> Action:
    """The action the driver performs in ``state``'s phase."""
    return _ACTIONS[state.phase]


@dataclass(frozen=True)
class Step:
    """The state after an event and the progress reports to emit once it is persisted."""

    state: OtaRecord
    reports: tuple[Progress, ...] = field(default=())


def progress(
    record: OtaRecord,
    *,
    reported: OtaState | None = None,
    cause: Cause | None = None,
    bytes_done: int | None = None,
    bytes_total: int | None = None,
) -> Progress:
    """The report of ``record`` as the controller sees it (``reported`` and ``cause`` override the record's)."""
    job = record.job
    assert job is not None, "an idle node has nothing to report"
    state = reported or REPORTED_AS[record.phase]
    why = cause or record.cause
    if state is OtaState.DOWNLOADING and job.release is not None:  # the contract wants both counts while downloading
        bytes_done, bytes_total = bytes_done or 0, job.release.manifest.size
    return Progress(
        command_id=job.command_id,
        rollout_id=job.rollout_id,
        state=state,
        to_version=job.version,
        from_version=record.from_version,
        reason=why.code if why and state in MAY_HAVE_REASON else None,
        detail=(why.detail or why.code) if why else "",
        bytes_done=bytes_done,
        bytes_total=bytes_total,
        attempts=record.attempts,
    )


def advance(record: OtaRecord, event: Event, now: datetime, policy: Policy = Policy()) -> Step:
    """The record after ``event`` at ``now``; an event that does not apply in the record's phase changes nothing."""
    if isinstance(event, Requested):
        return _requested(record, event, now)
    if isinstance(event, Booted):
        return _booted(record, event, now, policy)
    if isinstance(event, Cancelled) and record.phase in CANCELLABLE_PHASES and _is_current(record, event.command_id):
        return _to(record, Phase.CANCELLED, now, Cause(code=OtaReason.REQUESTED, detail=event.detail))
    if isinstance(event, Reported) and record.phase in FINAL_PHASES:
        return Step(OtaRecord(floor=record.floor, since=now))
    handler = _HANDLERS.get(record.phase)
    step = handler(record, event, now, policy) if handler else None
    return step or Step(record)


def _is_current(record: OtaRecord, command_id: str) -> bool:
    return record.job is not None and record.job.command_id == command_id


def _gate(record: OtaRecord, event: Event, now: datetime, _policy: Policy) -> Step | None:
    if not isinstance(event, GateChecked):
        return None
    if event.blocked is not None:
        waiting = record.model_copy(update={"cause": event.blocked})
        return Step(waiting, (progress(waiting, reported=OtaState.DEFERRED),))
    return _to(record, Phase.DOWNLOADING if record.phase is Phase.WAITING else Phase.SWITCHING, now)


def _download(record: OtaRecord, event: Event, now: datetime, policy: Policy) -> Step | None:
    match event:
        case DownloadProgressed(done=done):
            assert record.job is not None and record.job.release is not None
            return Step(record, (progress(record, bytes_done=done),))
        case Downloaded():
            return _to(record, Phase.VERIFYING, now)
        case DownloadFailed(detail=detail, retryable=retryable):
            cause = Cause(code=OtaReason.DOWNLOAD_FAILED, detail=detail)
            failures = record.download_failures + 1
            if retryable and failures < policy.max_download_failures:
                return Step(record.model_copy(update={"download_failures": failures, "cause": cause}))
            return _to(record, Phase.FAILED, now, cause)
    return None


def _verify(record: OtaRecord, event: Event, now: datetime, _policy: Policy) -> Step | None:
    match event:
        case Verified():
            return _to(record, Phase.INSTALLING, now)
        case Refused(reason=reason, detail=detail):
            return _to(record, Phase.FAILED, now, Cause(code=reason, detail=detail))
    return None


def _install(record: OtaRecord, event: Event, now: datetime, _policy: Policy) -> Step | None:
    match event:
        case Installed():
            return _to(record, Phase.STAGED, now)
        case InstallFailed(detail=detail):
            return _to(record, Phase.FAILED, now, Cause(code=OtaReason.INSTALL_FAILED, detail=detail))
    return None


def _switch(record: OtaRecord, event: Event, now: datetime, _policy: Policy) -> Step | None:
    return _to(record, Phase.RESTARTING, now) if isinstance(event, Switched) else None


def _test(record: OtaRecord, event: Event, now: datetime, policy: Policy) -> Step | None:
    if not isinstance(event, HealthChecked):
        return None
    if event.problem is None:
        return _to(record, Phase.COMMITTING, now)
    if record.attempts >= policy.max_starts:
        detail = f"failed on {record.attempts} starts, last: {event.problem}"
        return _to(record, Phase.ROLLING_BACK, now, Cause(code=OtaReason.HEALTH_CHECK_FAILED, detail=detail))
    return _to(record, Phase.RESTARTING, now, Cause(code=OtaReason.HEALTH_CHECK_FAILED, detail=event.problem))


def _commit(record: OtaRecord, event: Event, now: datetime, _policy: Policy) -> Step | None:
    if not isinstance(event, Committed):
        return None
    return _to(record.model_copy(update={"floor": event.floor}), Phase.COMMITTED, now)


def _roll_back(record: OtaRecord, event: Event, now: datetime, _policy: Policy) -> Step | None:
    return _to(record, Phase.RESTORING, now, record.cause) if isinstance(event, RolledBack) else None


_Handler = Callable[[OtaRecord, Event, datetime, Policy], Step | None]
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


def _requested(record: OtaRecord, event: Requested, now: datetime) -> Step:
    job = event.job
    if _is_current(record, job.command_id):
        return Step(record)  # a repeat of the command in progress
    if record.phase is not Phase.IDLE:
        busy = OtaRecord(phase=Phase.FAILED, job=job, from_version=event.running_version)
        detail = f"update {record.job.command_id if record.job else '?'} is in progress; send this one after it ends"
        return Step(record, (progress(busy, cause=Cause(code=OtaReason.BUSY, detail=detail)),))
    accepted = OtaRecord(job=job, from_version=event.running_version, floor=record.floor, since=now)
    if job.rollback:
        return _to(accepted, Phase.ROLLING_BACK, now, Cause(code=OtaReason.REQUESTED, detail="rollback requested"))
    if job.version == event.running_version:
        return Step(accepted.model_copy(update={"phase": Phase.COMMITTED}))
    # The gate check that follows reports deferred or downloading.
    return Step(accepted.model_copy(update={"phase": Phase.WAITING}))


def _booted(record: OtaRecord, event: Booted, now: datetime, policy: Policy) -> Step:
    """A start: in a trial it counts as one more attempt; elsewhere the step in progress is simply repeated."""
    if record.phase is Phase.RESTORING:
        return _to(record, Phase.ROLLED_BACK, now, record.cause)
    if record.phase not in {Phase.RESTARTING, Phase.TESTING, Phase.COMMITTING}:
        return Step(record)  # SWITCHING included: the switch is idempotent and is done again
    if event.current != record.target:
        detail = f"the platform went back to {event.current}: the new release did not start cleanly"
        return _to(record, Phase.ROLLED_BACK, now, Cause(code=OtaReason.HEALTH_CHECK_FAILED, detail=detail))
    if record.phase is Phase.COMMITTING:
        return Step(record)  # the health check passed; the commit is done again
    attempts = max(record.attempts + 1, event.platform_attempts)
    tried = record.model_copy(update={"attempts": attempts})
    if attempts <= policy.max_starts:
        return _to(tried, Phase.TESTING, now, record.cause)
    detail = f"not healthy in {policy.max_starts} starts"
    if record.cause:
        detail += f", last: {record.cause.detail}"
    return _to(tried, Phase.ROLLING_BACK, now, Cause(code=OtaReason.HEALTH_CHECK_FAILED, detail=detail))


def _to(record: OtaRecord, phase: Phase, now: datetime, cause: Cause | None = None) -> Step:
    """Enter ``phase``; every entered phase is reported except the final ones (reported by ``finish``)."""
    moved = record.model_copy(update={"phase": phase, "since": now, "cause": cause})
    if phase in FINAL_PHASES:
        return Step(moved)
    return Step(moved, (progress(moved),))


def final_report(record: OtaRecord) -> Progress:
    """The final outcome of a finished update (only for a final phase)."""
    assert record.phase in FINAL_PHASES, f"{record.phase} is not final"
    return progress(record)
