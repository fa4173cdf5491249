"""Reconciliation: the controller's view of a reservation follows what its node reports, in the node's order.

Pure. The node is authoritative for its compartments: its ledger events (replayed in order after a partition)
and its refusal of a hold decide the state, whatever the controller believed meanwhile (a cancel sent while a
courier deposited offline, a hold that expired at the node, a pickup with a code). Each change that a courier
partner cares about yields one notification; a repeated or older report yields none.
"""

from dataclasses import dataclass

from controller.store.reservations import ReservationState
from schemas import LedgerTransition

_STATE_AFTER = {
    LedgerTransition.HELD: ReservationState.HELD,
    LedgerTransition.DEPOSITED: ReservationState.DEPOSITED,
    LedgerTransition.PICKED_UP: ReservationState.PICKED_UP,
    LedgerTransition.HOLD_EXPIRED: ReservationState.EXPIRED,
    LedgerTransition.CANCELLED: ReservationState.CANCELLED,
}
NOTIFIED = frozenset(
    {
        ReservationState.HELD,
        ReservationState.DEPOSITED,
        ReservationState.PICKED_UP,
        ReservationState.EXPIRED,
        ReservationState.REFUSED,
    }
)
"""States a courier partner's webhook hears about."""


@dataclass(frozen=True, slots=True)
class Report:
    """One thing a node said about a reservation, with its place in the node's message order."""

    boot_id: int
    seq: int
    transition: LedgerTransition | None
    """None: the node refused the hold."""


@dataclass(frozen=True, slots=True)
class View:
    """The controller's view of one reservation and the position of the last report applied."""

    state: ReservationState
    last: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The view after a report, and the webhook event to send (None: nothing new to tell)."""

    view: View
    notify: ReservationState | None


def apply(view: View, report: Report) -> Outcome:
    """Settle ``view`` to what the node reported, ignoring repeats and reports older than the last one applied."""
    position = (report.boot_id, report.seq)
    if view.last is not None and position <= view.last:
        return Outcome(view, None)
    if report.transition is None:
        state = ReservationState.REFUSED
    else:
        after = _STATE_AFTER.get(report.transition)
        if after is None:
            return Outcome(View(view.state, position), None)  # out/back in service: not about this reservation
        state = after
    changed = state is not view.state
    return Outcome(View(state, position), state if changed and state in NOTIFIED else None)
