"""What the OTA state machine remembers across restarts: one small document, persisted after every transition.

The phases are finer than what the controller sees (:class:`ReportState`): the extra ones exist so that a crash at
any point resumes at a step that is safe to repeat (install into a fresh slot, switch once, commit once, roll back
once) and never leaves the node running a half-installed slot.
"""

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

STATE_FORMAT: Final = 1
"""Version of the persisted document; every release must read the format of the release it replaces."""


class Phase(StrEnum):
    """Where an update stands on this node."""

    IDLE = "idle"
    WAITING = "waiting"
    """Accepted; waits for the occupancy gate before downloading."""
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    """Installing into a new slot; a crash here discards the slot and installs again."""
    STAGED = "staged"
    """Installed; waits for the occupancy gate before switching."""
    SWITCHING = "switching"
    RESTARTING = "restarting"
    TESTING = "testing"
    """Trial start: the new release runs and checks its health."""
    COMMITTING = "committing"
    ROLLING_BACK = "rolling_back"
    RESTORING = "restoring"
    """Switched back; restarting into the previous release."""
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_PHASES: Final = frozenset({Phase.COMMITTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.CANCELLED})
"""Done: cleaned up and reported, then back to idle."""
CANCELLABLE_PHASES: Final = frozenset(
    {Phase.WAITING, Phase.DOWNLOADING, Phase.VERIFYING, Phase.INSTALLING, Phase.STAGED}
)
"""Before the switch: the running slot was never touched, so an update can still be dropped."""
TRIAL_PHASES: Final = frozenset({Phase.SWITCHING, Phase.RESTARTING, Phase.TESTING, Phase.COMMITTING})
"""The new release is (or may be) what the node starts."""


class ReportState(StrEnum):
    """Per-node update state as the controller sees it (the rollout engine's vocabulary)."""

    DEFERRED = "deferred"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    RESTARTING = "restarting"
    TESTING = "testing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"


REPORTED_AS: Final[dict[Phase, ReportState]] = {
    Phase.WAITING: ReportState.DEFERRED,
    Phase.DOWNLOADING: ReportState.DOWNLOADING,
    Phase.VERIFYING: ReportState.VERIFYING,
    Phase.INSTALLING: ReportState.INSTALLING,
    Phase.STAGED: ReportState.INSTALLING,
    Phase.SWITCHING: ReportState.RESTARTING,
    Phase.RESTARTING: ReportState.RESTARTING,
    Phase.TESTING: ReportState.TESTING,
    Phase.COMMITTING: ReportState.TESTING,
    Phase.ROLLING_BACK: ReportState.TESTING,
    Phase.RESTORING: ReportState.TESTING,
    Phase.COMMITTED: ReportState.SUCCEEDED,
    Phase.ROLLED_BACK: ReportState.ROLLED_BACK,
    Phase.FAILED: ReportState.FAILED,
    Phase.CANCELLED: ReportState.CANCELLED,
}
"""What the controller is told for each phase (idle is never reported)."""


class UpdateJob(BaseModel):
    """One update as accepted from an update command, with the facts of its verified release manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str
    version: str
    artifact_url: str
    release: str = Field(description="The signed release document as received; verified again before installing.")
    size: int = Field(ge=0, description="Artifact bytes, from the verified manifest.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    min_version: str | None = Field(default=None, description="The manifest's anti-rollback floor.")


class OtaState(BaseModel):
    """The persisted state of the node's update (at most one at a time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = STATE_FORMAT
    phase: Phase = Phase.IDLE
    job: UpdateJob | None = None
    from_version: str | None = Field(default=None, description="What ran when the update was accepted.")
    attempts: int = Field(default=0, ge=0, description="Trial starts of the new release so far.")
    download_failures: int = Field(default=0, ge=0)
    reason: str = Field(default="", description="Why it is deferred, failed or rolled back.")
    since: datetime | None = Field(default=None, description="When the current phase was entered.")
    floor: str | None = Field(default=None, description="Anti-rollback floor: no release below it is accepted.")

    @property
    def target(self) -> str | None:
        """The version being installed, if any."""
        return self.job.version if self.job else None
