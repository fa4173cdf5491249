"""Cancelling a reservation: whether it is too late, and what the node said to the latest cancel. Pure.

The controller refuses a cancel itself when its view already shows it is too late (409 with the reason). Otherwise
the node decides: its refusal (a courier deposited meanwhile) is kept in the audit trail, from which the
partner's view of the reservation reads it.
"""

from collections.abc import Iterable

from controller.store.reservations import ReservationState
from schemas import CommandStatus

CANCEL_REQUESTED = "cancel_requested"
"""Audit action of a cancel sent to the node (its detail is the command id)."""
CANCEL_REFUSED = "cancel_refused"
"""Audit action of a node's refusal of a cancel (its detail is the node's reason); also the webhook event."""

NOT_DONE = frozenset({CommandStatus.REJECTED, CommandStatus.EXPIRED, CommandStatus.FAILED, CommandStatus.UNKNOWN})
"""Final results of a cancel that did not release the hold."""

_TOO_LATE = {
    ReservationState.DEPOSITED: "the parcel is in the compartment, so it can only be picked up",
    ReservationState.PICKED_UP: "the parcel was picked up",
    ReservationState.CANCELLED: "it is cancelled already",
    ReservationState.EXPIRED: "it expired; nothing is held",
    ReservationState.REFUSED: "the locker refused the hold; nothing is held",
}


class NotCancellableError(Exception):
    """The reservation is past the point of a cancel (the API answers 409 with the message)."""


def too_late(reservation_id: str, state: ReservationState) -> str | None:
    """Why a reservation in ``state`` can no longer be cancelled, or None while it can."""
    why = _TOO_LATE.get(state)
    return None if why is None else f"reservation {reservation_id} is {state.value}: {why}; nothing was cancelled"


def refused_cancel(trail: Iterable[tuple[str, str, str]]) -> str | None:
    """The node's reason for refusing the latest cancel, from an audit trail of (actor, action, detail)."""
    refusal = None
    for _actor, action, detail in trail:
        if action == CANCEL_REQUESTED:
            refusal = None
        elif action == CANCEL_REFUSED:
            refusal = detail
    return refusal


def awaited_cancel(trail: Iterable[tuple[str, str, str]]) -> str | None:
    """The command id of the latest cancel whose refusal may still come (none refused it yet), from an audit trail."""
    command_id = None
    for _actor, action, detail in trail:
        if action == CANCEL_REQUESTED:
            command_id = detail or None  # lines from before ids were kept have none
        elif action == CANCEL_REFUSED:
            command_id = None
    return command_id
