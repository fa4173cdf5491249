"""Commands the controller sends to one node (never retained; they expire)."""

from typing import Literal, Self

from pydantic import model_validator

from schemas.envelope import Versioned
from schemas.types import CommandId, CompartmentId, NodeId, Timestamp


class CommandBase(Versioned):
    """Fields every command carries: a unique id, its target and its validity window."""

    command_id: CommandId
    node_id: NodeId
    issued_at: Timestamp
    expires_at: Timestamp

    @model_validator(mode="after")
    def _expires_after_issue(self) -> Self:
        if self.expires_at <= self.issued_at:
            raise ValueError(
                f"expires_at {self.expires_at.isoformat()} must be later than issued_at {self.issued_at.isoformat()}"
            )
        return self


class OpenCommand(CommandBase):
    """Pulse the lock relay of one compartment and report what the door did."""

    type: Literal["open"] = "open"
    compartment: CompartmentId


Command = OpenCommand
"""Every command type (a discriminated union on ``type`` once there are several)."""
