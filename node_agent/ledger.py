"""The edge ledger: who may use each compartment of this node, decided here, with or without a network.

Pure: no I/O, the caller passes the time. Each compartment is ``free``, ``held`` (a reservation waits for its
deposit until ``hold_until``), ``occupied`` (a parcel waits for its pickup until ``pickup_until``) or
``out_of_service``. Every request returns a :class:`Decision`: the new ledger and either the transition made or
the reason it was refused. The ledger never double-books: a compartment holds at most one reservation and a
reservation at most one compartment. A hold that is not deposited in time frees itself at the node
(:meth:`Ledger.expire`), network or not.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from schemas.event import LedgerTransition


class SlotState(StrEnum):
    """What a compartment is doing."""

    FREE = "free"
    HELD = "held"
    OCCUPIED = "occupied"
    OUT_OF_SERVICE = "out_of_service"


class Refusal(StrEnum):
    """Why the ledger refused a request."""

    UNKNOWN_COMPARTMENT = "unknown_compartment"
    NOT_FREE = "not_free"
    """The compartment holds another reservation (or a parcel)."""
    OUT_OF_SERVICE = "out_of_service"
    ALREADY_PLACED = "already_placed"
    """The reservation already holds another compartment of this node."""
    UNKNOWN_RESERVATION = "unknown_reservation"
    HOLD_EXPIRED = "hold_expired"
    WRONG_STATE = "wrong_state"
    """The reservation exists but not in the state this step needs (e.g. pickup before deposit)."""
    BAD_WINDOW = "bad_window"


@dataclass(frozen=True, slots=True)
class Window:
    """A reservation's times, fixed when it is made: codes work from ``opens_at``; the parcel must be deposited
    before ``hold_until`` and picked up before ``pickup_until`` (so a pickup code can be issued before the node
    reports the deposit)."""

    opens_at: datetime
    hold_until: datetime
    pickup_until: datetime

    @property
    def valid(self) -> bool:
        """True when the times are in order."""
        return self.opens_at < self.hold_until <= self.pickup_until


@dataclass(frozen=True, slots=True)
class Slot:
    """One compartment's state and, when held or occupied, its reservation and that reservation's window."""

    state: SlotState = SlotState.FREE
    reservation_id: str | None = None
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One transition of one compartment."""

    transition: LedgerTransition
    compartment: str
    reservation_id: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The ledger after a request, the changes made, and why it was refused (None when accepted)."""

    ledger: "Ledger"
    changes: tuple[Change, ...] = ()
    refused: Refusal | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        """True when the request was carried out (or was already done: an idempotent repeat)."""
        return self.refused is None


@dataclass(frozen=True, slots=True)
class Ledger:
    """All compartments of a node, immutable; every request returns a new ledger in its :class:`Decision`."""

    slots: dict[str, Slot] = field(default_factory=dict)

    @classmethod
    def empty(cls, compartments: list[str]) -> "Ledger":
        """Every compartment free."""
        return cls({c: Slot() for c in compartments})

    def find(self, reservation_id: str) -> tuple[str, Slot] | None:
        """The compartment holding ``reservation_id``, if any."""
        for compartment, slot in self.slots.items():
            if slot.reservation_id == reservation_id:
                return compartment, slot
        return None

    def reserve(self, reservation_id: str, compartment: str, window: Window, now: datetime) -> Decision:
        """Hold ``compartment`` for ``reservation_id`` until ``window.hold_until``; a repeat is accepted."""
        if not window.valid or window.hold_until <= now:
            return self._refuse(Refusal.BAD_WINDOW, "need opens_at < hold_until <= pickup_until, hold_until ahead")
        placed = self.find(reservation_id)
        if placed is not None and placed[0] == compartment:
            return Decision(self)  # the same request again: already done
        if placed is not None:
            return self._refuse(Refusal.ALREADY_PLACED, f"{reservation_id} already holds {placed[0]}")
        blocked = self._unavailable(compartment)
        if blocked is not None:
            return blocked
        held = Slot(SlotState.HELD, reservation_id, window)
        return self._apply(compartment, held, LedgerTransition.HELD, reservation_id)

    def _unavailable(self, compartment: str) -> Decision | None:
        slot = self.slots.get(compartment)
        if slot is None:
            return self._refuse(Refusal.UNKNOWN_COMPARTMENT, f"no compartment {compartment!r}")
        if slot.state is SlotState.OUT_OF_SERVICE:
            return self._refuse(Refusal.OUT_OF_SERVICE, f"{compartment} is out of service")
        if slot.state is not SlotState.FREE:
            return self._refuse(Refusal.NOT_FREE, f"{compartment} is {slot.state.value}")
        return None

    def cancel(self, reservation_id: str) -> Decision:
        """Release a hold; a parcel already deposited can only be picked up."""
        placed = self.find(reservation_id)
        if placed is None:
            return self._refuse(Refusal.UNKNOWN_RESERVATION, f"{reservation_id} holds nothing here")
        compartment, slot = placed
        if slot.state is not SlotState.HELD:
            return self._refuse(Refusal.WRONG_STATE, f"{reservation_id} is {slot.state.value}: pick the parcel up")
        return self._apply(compartment, Slot(), LedgerTransition.CANCELLED, reservation_id)

    def deposit(self, reservation_id: str, now: datetime) -> Decision:
        """The courier put the parcel in: a live hold becomes occupied (until its window's ``pickup_until``).

        A second deposit is refused: a compartment already occupied opens only for its pickup.
        """
        placed = self.find(reservation_id)
        if placed is None:
            return self._refuse(Refusal.UNKNOWN_RESERVATION, f"{reservation_id} holds nothing here")
        compartment, slot = placed
        if slot.state is not SlotState.HELD:
            detail = f"{reservation_id} is {slot.state.value}: only its pickup opens it"
            return self._refuse(Refusal.WRONG_STATE, detail)
        assert slot.window is not None
        if slot.window.hold_until <= now:
            return self._refuse(Refusal.HOLD_EXPIRED, f"the hold of {reservation_id} ended {slot.window.hold_until}")
        occupied = replace(slot, state=SlotState.OCCUPIED)
        return self._apply(compartment, occupied, LedgerTransition.DEPOSITED, reservation_id)

    def pickup(self, reservation_id: str) -> Decision:
        """The recipient took the parcel: the compartment is free again."""
        placed = self.find(reservation_id)
        if placed is None:
            return self._refuse(Refusal.UNKNOWN_RESERVATION, f"{reservation_id} holds nothing here")
        compartment, slot = placed
        if slot.state is not SlotState.OCCUPIED:
            return self._refuse(Refusal.WRONG_STATE, f"{reservation_id} is {slot.state.value}: nothing to pick up")
        return self._apply(compartment, Slot(), LedgerTransition.PICKED_UP, reservation_id)

    def expire(self, now: datetime) -> Decision:
        """Free every hold whose deadline has passed (occupied compartments wait for their pickup)."""
        slots = dict(self.slots)
        changes = []
        for compartment, slot in self.slots.items():
            if slot.state is SlotState.HELD and slot.window is not None and slot.window.hold_until <= now:
                slots[compartment] = Slot()
                changes.append(Change(LedgerTransition.HOLD_EXPIRED, compartment, slot.reservation_id))
        return Decision(Ledger(slots), tuple(changes)) if changes else Decision(self)

    def set_out_of_service(self, compartment: str, out: bool) -> Decision:
        """Take a free compartment out of service, or put one back."""
        slot = self.slots.get(compartment)
        if slot is None:
            return self._refuse(Refusal.UNKNOWN_COMPARTMENT, f"no compartment {compartment!r}")
        if out:
            if slot.state is SlotState.OUT_OF_SERVICE:
                return Decision(self)
            if slot.state is not SlotState.FREE:
                return self._refuse(Refusal.NOT_FREE, f"{compartment} is {slot.state.value}")
            return self._apply(
                compartment, replace(slot, state=SlotState.OUT_OF_SERVICE), LedgerTransition.OUT_OF_SERVICE
            )
        if slot.state is not SlotState.OUT_OF_SERVICE:
            return Decision(self)
        return self._apply(compartment, Slot(), LedgerTransition.BACK_IN_SERVICE)

    def _apply(
        self, compartment: str, slot: Slot, transition: LedgerTransition, reservation_id: str | None = None
    ) -> Decision:
        slots = dict(self.slots)
        slots[compartment] = slot
        return Decision(Ledger(slots), (Change(transition, compartment, reservation_id),))

    def _refuse(self, why: Refusal, detail: str) -> Decision:
        return Decision(self, refused=why, detail=detail)
