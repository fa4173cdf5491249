"""Events a node publishes the moment they happen (door edges first; more kinds join the union later)."""

from typing import Annotated, Literal

from pydantic import Field

from schemas.envelope import ContractModel, NodeEnvelope
from schemas.types import CommandId, CompartmentId, ShortText


class CommandCause(ContractModel):
    """The door moved because of a controller command."""

    type: Literal["command"] = "command"
    command_id: CommandId


class CodeCause(ContractModel):
    """The door moved because a valid code was typed at the locker."""

    type: Literal["code"] = "code"
    code_ref: ShortText | None = None


class NoCause(ContractModel):
    """Nothing authorised the movement: an opening with this cause is an uncommanded open."""

    type: Literal["none"] = "none"


Cause = Annotated[CommandCause | CodeCause | NoCause, Field(discriminator="type")]


class DoorEvent(NodeEnvelope):
    """A door switch edge of one compartment, with what caused it."""

    kind: Literal["door"] = "door"
    compartment: CompartmentId
    action: Literal["opened", "closed"]
    cause: Cause = Field(default_factory=NoCause)

    @property
    def uncommanded_open(self) -> bool:
        """True for an opening that no command and no code explains: a security event."""
        return self.action == "opened" and isinstance(self.cause, NoCause)


Event = DoorEvent
"""Every event kind a node can publish (a discriminated union on ``kind`` once there are several)."""
