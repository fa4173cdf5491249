"""A node's answer to a command: what happened to the command and, for door commands, to the door."""

from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from schemas.envelope import ContractModel, NodeEnvelope
from schemas.types import CommandId, CompartmentId, Detail, DurationMs


class CommandStatus(StrEnum):
    """Lifecycle status of a command at the node."""

    ACCEPTED = "accepted"
    """Received, journaled and being executed; a final status follows."""
    REJECTED = "rejected"
    """Refused without acting (bad compartment, not allowed now); ``detail`` says why."""
    DUPLICATE = "duplicate"
    """This command id was seen before; the result carries the original outcome."""
    EXPIRED = "expired"
    """Arrived after ``expires_at``; never executed."""
    DONE = "done"
    """Executed; for door commands ``outcome`` tells what the door did."""
    FAILED = "failed"
    """Could not be executed (hardware fault); ``detail`` says what failed."""
    UNKNOWN = "unknown"
    """The node crashed while executing; it will not be retried."""


class DoorResult(StrEnum):
    """Physical outcome of a door command."""

    OPENED = "opened"
    ALREADY_OPEN = "already_open"
    JAMMED = "jammed"


class DoorOutcome(ContractModel):
    """What the door did after the relay pulse, with timings."""

    compartment: CompartmentId
    result: DoorResult
    pulse_ms: DurationMs = Field(description="How long the relay was energised; 0 when it was not fired.")
    switch_latency_ms: DurationMs | None = Field(
        default=None, description="Relay start to door switch change; set only when the door opened."
    )


class CommandResult(NodeEnvelope):
    """The node's report on one command."""

    command_id: CommandId
    status: CommandStatus
    outcome: DoorOutcome | None = None
    detail: Detail | None = None

    @model_validator(mode="after")
    def _outcome_only_when_executed(self) -> Self:
        if self.outcome is not None and self.status not in (CommandStatus.DONE, CommandStatus.DUPLICATE):
            raise ValueError(f"a door outcome is only reported with status done or duplicate, not {self.status}")
        return self
