"""Commands the controller sends to one node (never retained; they expire)."""

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from schemas.envelope import Versioned
from schemas.types import CommandId, CompartmentId, NodeId, ReservationId, Timestamp


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
    """Pulse the lock relay of one compartment and report what the door did.

    With ``reservation_id`` it is that reservation's deposit (compartment held) or pickup (occupied), checked by the
    node's ledger; without, a service open, which the node only allows on a compartment nobody reserved.
    """

    type: Literal["open"] = "open"
    compartment: CompartmentId
    reservation_id: ReservationId | None = None


class ReserveCommand(CommandBase):
    """Hold a compartment for a reservation: deposit before ``hold_until``, pickup before ``pickup_until``.

    Deposit and pickup codes are valid from ``opens_at``; the node frees the hold by itself at ``hold_until``.
    """

    type: Literal["reserve"] = "reserve"
    reservation_id: ReservationId
    compartment: CompartmentId
    opens_at: Timestamp
    hold_until: Timestamp
    pickup_until: Timestamp

    @model_validator(mode="after")
    def _window_in_order(self) -> Self:
        if not self.opens_at < self.hold_until <= self.pickup_until:
            raise ValueError("need opens_at < hold_until <= pickup_until")
        return self


class CancelCommand(CommandBase):
    """Release a reservation's hold (refused once the parcel is in)."""

    type: Literal["cancel"] = "cancel"
    reservation_id: ReservationId


class ProvisionKeyCommand(CommandBase):
    """Give the node its own key for offline codes (32 bytes, hex); it replaces any earlier key."""

    type: Literal["provision_key"] = "provision_key"
    key_hex: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


Command = Annotated[OpenCommand | ReserveCommand | CancelCommand | ProvisionKeyCommand, Field(discriminator="type")]
"""Every command type, told apart by ``type``."""
