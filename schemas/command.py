"""Commands the controller sends to one node (never retained; they expire).

Each type bounds its own lifetime (``MAX_LIFETIME``); the types that change what a node trusts or runs
(``SIGNED``) carry the controller's signature. :mod:`schemas.command_trust` holds the checks a node runs.
"""

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import Field, model_validator

from schemas.envelope import ContractModel, Versioned
from schemas.release import PublicKeyB64, SignatureB64, SignedRelease
from schemas.types import CommandId, CompartmentId, NodeId, ReservationId, RolloutId, Timestamp

MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the node's future a command's ``issued_at`` may lie before the node refuses it (a clock is wrong)."""

ArtifactUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=1024)]


class CommandSignature(ContractModel):
    """Ed25519 signature over :func:`schemas.command_trust.command_bytes`, with the signer's raw public key."""

    public_key: PublicKeyB64
    sig: SignatureB64


class CommandBase(Versioned):
    """Fields every command carries: a unique id, its target, its validity window and, for some types, a signature."""

    MAX_LIFETIME: ClassVar[timedelta] = timedelta(hours=1)
    """Longest ``expires_at - issued_at`` a node accepts for this type."""
    SIGNED: ClassVar[bool] = False
    """Whether a node only accepts this type signed by the controller's command key."""

    command_id: CommandId
    node_id: NodeId
    issued_at: Timestamp
    expires_at: Timestamp
    signature: CommandSignature | None = Field(
        default=None, description="The controller's signature; required on provision_key and update."
    )

    @model_validator(mode="after")
    def _expires_after_issue(self) -> Self:
        if self.expires_at <= self.issued_at:
            raise ValueError(
                f"expires_at {self.expires_at.isoformat()} must be later than issued_at {self.issued_at.isoformat()}"
            )
        return self


class ReservationStep(StrEnum):
    """Which step of a reservation an open is for; a node never turns one into the other."""

    DEPOSIT = "deposit"
    """The courier puts the parcel in: the compartment must be held for the reservation."""
    PICKUP = "pickup"
    """The recipient takes it out: the compartment must hold the reservation's parcel."""


class OpenCommand(CommandBase):
    """Pulse the lock relay of one compartment and report what the door did.

    With ``reservation_id`` and ``step`` it is that reservation's deposit (compartment held) or pickup (occupied),
    checked by the node's ledger; a deposit open of a compartment already deposited is refused, never taken as the
    pickup. Without, a service open, which the node only allows on a compartment nobody reserved.
    """

    MAX_LIFETIME: ClassVar[timedelta] = timedelta(minutes=10)  # an open is waited for (at most 5 minutes)

    type: Literal["open"] = "open"
    compartment: CompartmentId
    reservation_id: ReservationId | None = None
    step: ReservationStep | None = Field(default=None, description="Required with reservation_id; absent otherwise.")

    @model_validator(mode="after")
    def _step_with_reservation(self) -> Self:
        if (self.reservation_id is None) != (self.step is None):
            raise ValueError("an open names both reservation_id and step (deposit or pickup), or neither")
        return self


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
    """Give the node its own key for offline codes (32 bytes, hex); it replaces any earlier key. Signed."""

    SIGNED: ClassVar[bool] = True

    type: Literal["provision_key"] = "provision_key"
    key_hex: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class UpdateCommand(CommandBase):
    """Install a signed release (or, with ``rollback``, go back to the previous slot); progress comes as ``ota`` events.

    The node tries ``artifact_urls`` in order, resuming with HTTP range requests, and checks everything with
    :func:`schemas.release.verify_release` and :func:`schemas.release.verify_artifact` before touching a slot.
    ``expires_at`` bounds when the node may start, not how long the update may take. Signed (a rollback too).
    """

    MAX_LIFETIME: ClassVar[timedelta] = timedelta(days=1)
    SIGNED: ClassVar[bool] = True

    type: Literal["update"] = "update"
    rollout_id: RolloutId
    release: SignedRelease | None = None
    artifact_urls: tuple[ArtifactUrl, ...] = Field(default=(), max_length=4)
    rollback: bool = False

    @model_validator(mode="after")
    def _install_or_rollback(self) -> Self:
        if self.rollback and (self.release is not None or self.artifact_urls):
            raise ValueError("a rollback carries no release and no artifact_urls: it returns to the previous slot")
        if not self.rollback and (self.release is None or not self.artifact_urls):
            raise ValueError("an update needs a release and at least one artifact URL (or rollback: true)")
        return self


class CancelUpdateCommand(CommandBase):
    """Withdraw ``update_command_id`` (a rollout paused, aborted, or took the node back): a node that has not
    switched slots yet stops and reports ``cancelled``; past the switch the update ends in commit or rollback as
    usual. Signed, like the update it withdraws.
    """

    MAX_LIFETIME: ClassVar[timedelta] = timedelta(hours=1)
    SIGNED: ClassVar[bool] = True

    type: Literal["cancel_update"] = "cancel_update"
    rollout_id: RolloutId
    update_command_id: CommandId


Command = Annotated[
    OpenCommand | ReserveCommand | CancelCommand | ProvisionKeyCommand | UpdateCommand | CancelUpdateCommand,
    Field(discriminator="type"),
]
"""Every command type, told apart by ``type``."""
