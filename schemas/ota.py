"""OTA progress: the ``ota`` event a node publishes at every step of an update, and the per-node states it names.

The rollout engine (controller) and the agent's OTA state machine share :class:`OtaState`; a node reports
``succeeded`` only after it restarted into the new version, passed its health check and committed it.
"""

from enum import StrEnum
from typing import Annotated, Final, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from schemas.envelope import NodeEnvelope
from schemas.semver import SemVer
from schemas.types import CommandId, Detail, RolloutId, ShortText


class OtaState(StrEnum):
    """Where one node stands in one update, in the order a good update passes through them."""

    QUEUED = "queued"
    """Accepted by the node (or targeted by the controller), not started."""
    DEFERRED = "deferred"
    """Waiting for the locker to be idle (door open, command in flight, reservation due, battery…); ``reason``."""
    DOWNLOADING = "downloading"
    """Fetching the artifact; ``bytes_done`` of ``bytes_total``."""
    VERIFYING = "verifying"
    """Checking signature, hardware, floor, expiry, size and sha256."""
    INSTALLING = "installing"
    """Writing the new slot; the running slot is untouched."""
    RESTARTING = "restarting"
    """Switched to the new slot, restarting into it (trial start)."""
    TESTING = "testing"
    """Running the post-restart health check before committing."""
    SUCCEEDED = "succeeded"
    """Committed the new version after a healthy trial start. Final."""
    FAILED = "failed"
    """Stopped before switching slots; the running slot is unchanged; ``reason``. Final."""
    ROLLED_BACK = "rolled_back"
    """Back on the previous slot, after failed trial starts or on request; ``reason``. Final."""
    TIMED_OUT = "timed_out"
    """No progress within the step timeout (set by the controller). Final."""
    CANCELLED = "cancelled"
    """Withdrawn before the node switched slots (rollout aborted). Final."""


FINAL_STATES: Final = frozenset(
    {OtaState.SUCCEEDED, OtaState.FAILED, OtaState.ROLLED_BACK, OtaState.TIMED_OUT, OtaState.CANCELLED}
)
"""States after which nothing more happens for that update command."""

NEEDS_REASON: Final = frozenset({OtaState.DEFERRED, OtaState.FAILED, OtaState.ROLLED_BACK})
"""States that must say why."""

MAY_HAVE_REASON: Final = NEEDS_REASON | {OtaState.TIMED_OUT, OtaState.CANCELLED}

ReasonCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
"""A snake_case code; well-known ones are :class:`OtaReason` and :class:`schemas.release.RefusalReason`."""


class OtaReason(StrEnum):
    """Well-known reasons besides a release refusal (receivers accept any :data:`ReasonCode`)."""

    DOOR_OPEN = "door_open"
    COMMAND_IN_FLIGHT = "command_in_flight"
    RESERVATION_DUE = "reservation_due"
    BATTERY_LOW = "battery_low"
    OUTSIDE_MAINTENANCE_WINDOW = "outside_maintenance_window"
    DOWNLOAD_FAILED = "download_failed"
    INSTALL_FAILED = "install_failed"
    HEALTH_CHECK_FAILED = "health_check_failed"
    REQUESTED = "requested"
    """Rolled back because an operator asked (``update`` command with ``rollback: true``)."""
    NO_PREVIOUS_SLOT = "no_previous_slot"
    BUSY = "busy"
    """Another update is in progress on this node."""


class OtaEvent(NodeEnvelope):
    """One step of one update on this node (``kind: ota`` on the event channel)."""

    kind: Literal["ota"] = "ota"
    rollout_id: RolloutId
    command_id: CommandId
    state: OtaState
    reason: ReasonCode | None = None
    detail: Detail | None = None
    from_version: SemVer | None = Field(default=None, description="The version running when the update began.")
    to_version: SemVer | None = Field(default=None, description="The version being installed (or rolled back to).")
    slot: ShortText | None = Field(default=None, description="The slot being installed or now running.")
    bytes_done: int | None = Field(default=None, ge=0, lt=2**63)
    bytes_total: int | None = Field(default=None, ge=1, lt=2**63)

    @model_validator(mode="after")
    def _fields_fit_state(self) -> Self:
        if self.state in NEEDS_REASON and self.reason is None:
            raise ValueError(f"state {self.state} needs a reason")
        if self.reason is not None and self.state not in MAY_HAVE_REASON:
            raise ValueError(f"state {self.state} carries no reason")
        counts = (self.bytes_done, self.bytes_total)
        if (self.state is OtaState.DOWNLOADING) == (None in counts) or counts.count(None) == 1:
            raise ValueError("bytes_done and bytes_total are set exactly when the state is downloading")
        if self.bytes_done is not None and self.bytes_total is not None and self.bytes_done > self.bytes_total:
            raise ValueError(f"bytes_done {self.bytes_done} exceeds bytes_total {self.bytes_total}")
        return self

    @property
    def final(self) -> bool:
        """True when nothing more follows for this command."""
        return self.state in FINAL_STATES
