"""What the OTA state machine remembers across restarts: one small document, persisted after every transition.

The phases are finer than what the controller sees (:class:`schemas.ota.OtaState`): the extra ones exist so that a
crash at any point resumes at a step that is safe to repeat (install into a fresh slot, switch once, commit once,
roll back once) and never leaves the node running a half-installed slot.
"""

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from schemas.ota import OtaState
from schemas.release import SignedRelease
from schemas.semver import SemVer

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


REPORTED_AS: Final[dict[Phase, OtaState]] = {
    Phase.WAITING: OtaState.DEFERRED,
    Phase.DOWNLOADING: OtaState.DOWNLOADING,
    Phase.VERIFYING: OtaState.VERIFYING,
    Phase.INSTALLING: OtaState.INSTALLING,
    Phase.STAGED: OtaState.INSTALLING,
    Phase.SWITCHING: OtaState.RESTARTING,
    Phase.RESTARTING: OtaState.RESTARTING,
    Phase.TESTING: OtaState.TESTING,
    Phase.COMMITTING: OtaState.TESTING,
    Phase.ROLLING_BACK: OtaState.TESTING,
    Phase.RESTORING: OtaState.TESTING,
    Phase.COMMITTED: OtaState.SUCCEEDED,
    Phase.ROLLED_BACK: OtaState.ROLLED_BACK,
    Phase.FAILED: OtaState.FAILED,
    Phase.CANCELLED: OtaState.CANCELLED,
}
"""What the controller is told for each phase (idle is never reported)."""


class Cause(BaseModel):
    """Why an update waits, failed or was rolled back: a snake_case code for counting, a detail for people."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


class UpdateJob(BaseModel):
    """One update as accepted from an :class:`~schemas.UpdateCommand` (install a release, or go back a slot)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str
    rollout_id: str
    release: SignedRelease | None = Field(default=None, description="Verified on request and again after download.")
    artifact_urls: tuple[str, ...] = ()
    rollback: bool = Field(default=False, description="Go back to the previous slot instead of installing.")

    @property
    def version(self) -> str | None:
        """The version being installed (None for a rollback)."""
        return str(self.release.manifest.version) if self.release else None


class OtaRecord(BaseModel):
    """The persisted state of the node's update (at most one at a time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = STATE_FORMAT
    phase: Phase = Phase.IDLE
    job: UpdateJob | None = None
    from_version: str | None = Field(default=None, description="What ran when the update was accepted.")
    attempts: int = Field(default=0, ge=0, description="Trial starts of the new release so far.")
    download_failures: int = Field(default=0, ge=0)
    cause: Cause | None = Field(default=None, description="Why it is deferred, failed or rolled back.")
    since: datetime | None = Field(default=None, description="When the current phase was entered.")
    floor: SemVer | None = Field(default=None, description="Anti-rollback floor: no release below it is accepted.")

    @property
    def target(self) -> str | None:
        """The version being installed, if any."""
        return self.job.version if self.job else None
