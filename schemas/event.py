"""Events a node publishes the moment they happen (door edges first; more kinds join the union later)."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.envelope import ContractModel, NodeEnvelope
from schemas.ota import OtaEvent
from schemas.types import CommandId, CompartmentId, ReservationId, ShortText, Timestamp


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


class LedgerTransition(StrEnum):
    """A change of one compartment in the node's reservation ledger."""

    HELD = "held"
    CANCELLED = "cancelled"
    DEPOSITED = "deposited"
    PICKED_UP = "picked_up"
    HOLD_EXPIRED = "hold_expired"
    OUT_OF_SERVICE = "out_of_service"
    BACK_IN_SERVICE = "back_in_service"


class LedgerEvent(NodeEnvelope):
    """The node's ledger changed; the controller rebuilds its reservation view from these, in order."""

    kind: Literal["ledger"] = "ledger"
    compartment: CompartmentId
    transition: LedgerTransition
    reservation_id: ReservationId | None = None
    via: Literal["command", "code", "timer"]
    command_id: CommandId | None = None


class KeypadEvent(NodeEnvelope):
    """The keypad locked codes of one scope (their first digit) after wrong codes of that scope.

    The first lock follows several wrong codes within minutes and is short; each further wrong code of the scope
    before a quiet spell locks it again, twice as long (capped). Codes of other scopes keep working meanwhile.
    """

    kind: Literal["keypad"] = "keypad"
    action: Literal["locked"] = "locked"
    locked_until: Timestamp
    wrong_attempts: int = Field(ge=1, le=1000, description="Wrong codes of the scope that led to this lock.")
    scope: Annotated[str, Field(pattern=r"^[0-9]{0,8}$")] | None = Field(
        default=None,
        description="The codes that are locked: those starting with these digits (empty: typed input that does not "
        "start with a digit); absent: every code (the whole keypad).",
    )


Event = Annotated[DoorEvent | LedgerEvent | KeypadEvent | OtaEvent, Field(discriminator="kind")]
"""Every event kind a node can publish, told apart by ``kind``."""
